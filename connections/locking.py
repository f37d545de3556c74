"""One sync per connection at a time, enforced in the database.

The claim is the connection row's ``running_since``: a worker takes it with a
conditional UPDATE, which the database runs atomically, so it holds with any
number of workers on any number of machines (SQLite, PostgreSQL). A claim
older than the lease (``Q_TIMEOUT`` plus a margin: django-q2 kills a task
after ``Q_TIMEOUT``) is taken to be a dead worker's and may be taken over.

A trigger that finds the claim held records itself in ``run_requested_at``
(coalesced: many triggers, one follow-up run) and returns. The holder checks
that column under ``select_for_update`` before it lets go, and runs again
while it is set, so a trigger is never lost between "busy" and "released".
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import Connection, SyncRun

log = logging.getLogger(__name__)

#: added to Q_TIMEOUT: a claim older than that belongs to a worker that died
LEASE_MARGIN = dt.timedelta(seconds=60)


def lease() -> dt.timedelta:
    timeout = getattr(settings, "Q_TIMEOUT", None) or settings.Q_CLUSTER.get("timeout") or 1800
    return dt.timedelta(seconds=int(timeout)) + LEASE_MARGIN


@dataclass
class Claim:
    """The right to run one connection; ``since`` is the value we wrote, so
    every later write can check that the claim is still ours."""

    connection_id: int
    since: dt.datetime

    def renew(self) -> bool:
        """Push the lease forward for a run that lasts longer than half of
        it (a long inline command run); cheap no-op otherwise."""
        now = timezone.now()
        if now - self.since < lease() / 2:
            return True
        updated = Connection.objects.filter(pk=self.connection_id, running_since=self.since).update(
            running_since=now
        )
        if updated:
            self.since = now
        return bool(updated)

    def release_or_continue(self) -> bool:
        """True: a trigger came in while we ran; the claim is kept (renewed)
        and the caller runs again. False: the claim is released."""
        with transaction.atomic():
            row = (
                Connection.objects.select_for_update()
                .filter(pk=self.connection_id)
                .values("running_since", "run_requested_at")
                .first()
            )
            if row is None:  # the connection was deleted while it ran
                return False
            if row["running_since"] != self.since:
                # our lease expired and another worker took over: it owns the request now
                log.warning("connection %s: claim lost while running", self.connection_id)
                return False
            if row["run_requested_at"] is not None:
                now = timezone.now()
                Connection.objects.filter(pk=self.connection_id).update(
                    run_requested_at=None, running_since=now
                )
                self.since = now
                return True
            Connection.objects.filter(pk=self.connection_id).update(running_since=None)
            return False

    def release(self) -> None:
        """Let go without looking at pending requests (after a crash: the
        next trigger's run covers them)."""
        Connection.objects.filter(pk=self.connection_id, running_since=self.since).update(
            running_since=None
        )


def claim(connection_id: int) -> Claim | None:
    """Take the connection's run, or None when another run holds it.

    A fresh claim clears ``run_requested_at``: the run about to start covers
    every trigger that came before it."""
    now = timezone.now()
    stale_before = now - lease()
    free = Q(running_since__isnull=True) | Q(running_since__lt=stale_before)
    stale = (
        Connection.objects.filter(pk=connection_id, running_since__lt=stale_before)
        .values_list("running_since", flat=True)
        .first()
    )
    taken = (
        Connection.objects.filter(pk=connection_id)
        .filter(free)
        .update(running_since=now, run_requested_at=None)
    )
    if not taken:
        return None
    if stale is not None:
        # the runs of the worker that died stay "running" in the audit otherwise
        log.warning("connection %s: took over a claim held since %s", connection_id, stale)
        SyncRun.objects.filter(
            connection_id=connection_id, status=SyncRun.Status.RUNNING, started_at__lt=now
        ).update(
            status=SyncRun.Status.FAILED,
            finished_at=now,
            error="The worker running this sync stopped without finishing (lease expired).",
        )
    return Claim(connection_id, now)


def request_run(connection_id: int, *, full: bool = False) -> bool:
    """Record a trigger for the run in progress. False when no run holds the
    claim any more (it was released in between): the caller tries to claim."""
    updates: dict[str, object] = {"run_requested_at": timezone.now()}
    if full:
        updates["needs_full_sync"] = True
        updates["full_sync_started"] = False  # start over, even mid full sync
    return bool(
        Connection.objects.filter(pk=connection_id, running_since__isnull=False).update(**updates)
    )


def claim_or_request(connection_id: int, *, full: bool = False) -> Claim | None:
    """Claim the run, or coalesce this trigger into the one in progress.

    The two conditional UPDATEs cannot both miss for long: one of them
    matches unless the row's claim flips between them, and then we retry."""
    for _ in range(20):
        held = claim(connection_id)
        if held is not None:
            return held
        if request_run(connection_id, full=full):
            return None
    # the claim flipped twenty times in a row: someone else is clearly running it
    return None
