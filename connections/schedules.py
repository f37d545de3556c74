"""Each active connection has one django-q2 ``Schedule`` row (visible and
editable in the admin under the task queue), named
``driftsync-connection-<id>``, calling ``connections.tasks.scheduled_sync``
with the connection's id every ``interval_minutes``.

A connection that is not active (paused, needs re-authorization, error) has
no schedule. ``sync_schedule`` is called from the connection's save and
delete signals, from ``manage.py ensure_schedules`` (which reconciles them
all) and by the task itself when it finds its connection inactive. Schedule
rows live in the same database, so a change is atomic with the save that
caused it.

One more schedule, ``driftsync-webhook-purge``, runs
``connections.webhooks.purge_inbox`` daily (the inbox's retention);
``reconcile`` (so ``ensure_schedules``) creates it when it is missing.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from django.db import transaction
from django.utils import timezone
from django_q.models import Schedule

from .models import Connection

SCHEDULE_FUNC = "connections.tasks.scheduled_sync"
NAME_PREFIX = "driftsync-connection-"
#: django-q2 keeps ``minutes`` in a small integer
MAX_MINUTES = 32767

PURGE_NAME = "driftsync-webhook-purge"
PURGE_FUNC = "connections.webhooks.purge_inbox"

Outcome = Literal["created", "updated", "removed", "unchanged"]


def schedule_name(connection_id: int) -> str:
    return f"{NAME_PREFIX}{connection_id}"


def wants_schedule(connection: Connection) -> bool:
    return connection.state == Connection.State.ACTIVE


def sync_schedule(connection: Connection) -> Outcome:
    """Create, change or remove the connection's schedule to match it."""
    name = schedule_name(connection.pk)
    with transaction.atomic():
        rows = list(Schedule.objects.select_for_update().filter(name=name).order_by("pk"))
        if not wants_schedule(connection):
            if rows:
                Schedule.objects.filter(pk__in=[s.pk for s in rows]).delete()
                return "removed"
            return "unchanged"
        minutes = max(1, min(int(connection.interval_minutes or 1), MAX_MINUTES))
        now = timezone.now()
        if not rows:
            # the first run comes at once: a new or re-activated connection
            # starts with its initial sync
            Schedule.objects.create(
                name=name,
                func=SCHEDULE_FUNC,
                args=repr((connection.pk,)),
                kwargs=None,
                schedule_type=Schedule.MINUTES,
                minutes=minutes,
                repeats=-1,
                next_run=now,
            )
            return "created"
        schedule, extra = rows[0], rows[1:]
        if extra:
            Schedule.objects.filter(pk__in=[s.pk for s in extra]).delete()
        wanted = {
            "func": SCHEDULE_FUNC,
            "args": repr((connection.pk,)),
            "schedule_type": Schedule.MINUTES,
            "minutes": minutes,
            "repeats": -1,
        }
        changed = [key for key, value in wanted.items() if getattr(schedule, key) != value]
        if schedule.kwargs:
            changed.append("kwargs")
            schedule.kwargs = None
        if not changed and not extra:
            return "unchanged"
        for key in changed:
            if key != "kwargs":
                setattr(schedule, key, wanted[key])
        if "minutes" in changed:
            # a shorter interval takes effect now, not after the old one ran out
            soonest = now + dt.timedelta(minutes=minutes)
            if schedule.next_run is None or schedule.next_run > soonest:
                schedule.next_run = soonest
                changed.append("next_run")
        schedule.save(update_fields=changed or None)
        return "updated"


def remove_schedule(connection_id: int) -> bool:
    deleted, _ = Schedule.objects.filter(name=schedule_name(connection_id)).delete()
    return bool(deleted)


def sync_purge_schedule() -> Outcome:
    """The daily purge of the webhook inbox: created when missing, its
    function put right; its timing is the admin's to change."""
    with transaction.atomic():
        rows = list(Schedule.objects.select_for_update().filter(name=PURGE_NAME).order_by("pk"))
        if not rows:
            Schedule.objects.create(
                name=PURGE_NAME,
                func=PURGE_FUNC,
                schedule_type=Schedule.DAILY,
                repeats=-1,
                next_run=timezone.now(),
            )
            return "created"
        schedule, extra = rows[0], rows[1:]
        if extra:
            Schedule.objects.filter(pk__in=[s.pk for s in extra]).delete()
        if schedule.func == PURGE_FUNC and schedule.repeats == -1 and not extra:
            return "unchanged"
        schedule.func, schedule.repeats = PURGE_FUNC, -1
        schedule.save(update_fields=["func", "repeats"])
        return "updated"


def reconcile() -> dict[str, int]:
    """Bring every connection's schedule in line; remove schedules of
    connections that no longer exist; make sure the inbox purge is
    scheduled. Idempotent. The counts are the connections'."""
    sync_purge_schedule()
    counts = {"created": 0, "updated": 0, "removed": 0, "unchanged": 0}
    known: set[str] = set()
    for connection in Connection.objects.order_by("pk"):
        known.add(schedule_name(connection.pk))
        counts[sync_schedule(connection)] += 1
    orphans = Schedule.objects.filter(name__startswith=NAME_PREFIX).exclude(name__in=known)
    orphans_by_func = Schedule.objects.filter(func=SCHEDULE_FUNC).exclude(name__in=known)
    for queryset in (orphans, orphans_by_func):
        deleted, _ = queryset.delete()
        counts["removed"] += deleted
    return counts
