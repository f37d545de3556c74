"""``manage.py ensure_schedules``."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand

from connections.schedules import NAME_PREFIX, PURGE_NAME, SCHEDULE_FUNC, reconcile


class Command(BaseCommand):
    help = (
        f"Make the task queue's schedules match the connections: one {NAME_PREFIX}<id> "
        f"schedule calling {SCHEDULE_FUNC} every interval_minutes for each active "
        "connection, none for paused ones or those needing re-authorization or in error, "
        f"none for deleted connections; and the daily {PURGE_NAME} schedule that applies "
        "the webhook inbox's retention. Safe to run any time (idempotent); run it after a "
        "restore or a bulk import, which bypass the signals that normally keep them in step."
    )

    def handle(self, *args: Any, **options: Any) -> None:
        counts = reconcile()
        self.stdout.write(
            "Schedules: "
            + ", ".join(f"{counts[key]} {key}" for key in ("created", "updated", "removed"))
            + f", {counts['unchanged']} already right."
        )
