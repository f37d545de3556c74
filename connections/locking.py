"""One sync per connection at a time, enforced in the database.

The claim is the connection row's ``running_since``: a worker takes it with a
conditional UPDATE, which the database runs atomically, so it holds with any
number of workers on any number of machines (SQLite, PostgreSQL). The holder
beats a heartbeat (``heartbeat_at``) every ``HEARTBEAT_EVERY`` from a thread
of its own, whatever the run is waiting on; a claim whose heartbeat is older
than ``stale_after()`` (two minutes by default) belongs to a worker that
died (``kill -9``, a lost machine) and may be taken over. ``running_since``
is never moved while a run holds it: it is the claim's fencing token. Every
commit of a run checks it (``Claim.fence``) inside its transaction, so a
worker that stalled past its heartbeat and wakes up after another took over
cannot commit over the new run: its transaction is rolled back.

A trigger that finds the claim held records itself in ``run_requested_at``
(coalesced: many triggers, one follow-up run) and returns. The holder checks
that column under ``select_for_update`` before it lets go, and runs again
while it is set, so a trigger is never lost between "busy" and "released".
"""

from __future__ import annotations

import contextlib
import datetime as dt
import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from .models import Connection, SyncRun

log = logging.getLogger(__name__)

#: how often a holder proves it is alive
HEARTBEAT_EVERY = dt.timedelta(seconds=20)


class ClaimLost(Exception):
    """Another worker took the claim over: this run must not commit."""


def stale_after() -> dt.timedelta:
    """How long a claim survives without a heartbeat
    (``DRIFTSYNC_CLAIM_STALE_SECONDS``, 120 by default)."""
    return dt.timedelta(seconds=int(getattr(settings, "DRIFTSYNC_CLAIM_STALE_SECONDS", 120)))


def lease() -> dt.timedelta:
    """How long ``manage.py sync --wait`` waits at most for a busy connection:
    django-q2 kills a task after ``Q_TIMEOUT``."""
    timeout = getattr(settings, "Q_TIMEOUT", None) or settings.Q_CLUSTER.get("timeout") or 1800
    return dt.timedelta(seconds=int(timeout)) + dt.timedelta(seconds=60)


def stale_q(now: dt.datetime) -> Q:
    """Claims whose holder stopped beating."""
    before = now - stale_after()
    return Q(running_since__isnull=False) & (
        Q(heartbeat_at__lt=before) | Q(heartbeat_at__isnull=True, running_since__lt=before)
    )


def is_held(running_since: dt.datetime | None, heartbeat_at: dt.datetime | None, now=None) -> bool:
    """Is a live worker holding this claim (for the health display)?"""
    if running_since is None:
        return False
    now = now or timezone.now()
    return (heartbeat_at or running_since) >= now - stale_after()


@dataclass
class Claim:
    """The right to run one connection; ``since`` is the value we wrote, so
    every later write can check that the claim is still ours."""

    connection_id: int
    since: dt.datetime
    last_beat: dt.datetime | None = None
    _stop: threading.Event = field(default_factory=threading.Event, repr=False)

    def renew(self) -> bool:
        """Beat the heartbeat if the last one is older than
        ``HEARTBEAT_EVERY``; cheap no-op otherwise. False: the claim is lost."""
        now = timezone.now()
        if self.last_beat is not None and now - self.last_beat < HEARTBEAT_EVERY:
            return True
        updated = Connection.objects.filter(pk=self.connection_id, running_since=self.since).update(
            heartbeat_at=now
        )
        if updated:
            self.last_beat = now
        return bool(updated)

    @contextlib.contextmanager
    def keep_alive(self) -> Iterator[None]:
        """Beat from a thread of our own while the body runs, so a run that
        waits a long time on one request (a rate limit, a slow app) keeps its
        claim, and a dead process stops beating at once."""
        from django.db import connection as db_connection

        self._stop.clear()

        def beat() -> None:
            try:
                while not self._stop.wait(HEARTBEAT_EVERY.total_seconds()):
                    try:
                        if not self.renew():
                            return
                    except Exception:  # the database is away; try at the next beat
                        log.warning("connection %s: heartbeat failed", self.connection_id)
            finally:
                db_connection.close()

        thread = threading.Thread(
            target=beat, name=f"driftsync-heartbeat-{self.connection_id}", daemon=True
        )
        thread.start()
        try:
            yield
        finally:
            self._stop.set()
            thread.join(timeout=5)

    def fence(self) -> None:
        """Inside a run's commit: raise ``ClaimLost`` (rolling the commit
        back) when another worker has taken the claim over meanwhile."""
        rows = Connection.objects.filter(pk=self.connection_id)
        if transaction.get_connection().features.has_select_for_update:
            rows = rows.select_for_update()
        if rows.values_list("running_since", flat=True).first() != self.since:
            raise ClaimLost(f"connection {self.connection_id}: another worker took over the run")

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
                    run_requested_at=None, running_since=now, heartbeat_at=now
                )
                self.since, self.last_beat = now, now
                return True
            Connection.objects.filter(pk=self.connection_id).update(
                running_since=None, heartbeat_at=None
            )
            return False

    def release(self) -> None:
        """Let go without looking at pending requests (after a crash: the
        next trigger's run covers them)."""
        Connection.objects.filter(pk=self.connection_id, running_since=self.since).update(
            running_since=None, heartbeat_at=None
        )


def claim(connection_id: int) -> Claim | None:
    """Take the connection's run, or None when another run holds it.

    A fresh claim clears ``run_requested_at``: the run about to start covers
    every trigger that came before it."""
    now = timezone.now()
    free = Q(running_since__isnull=True) | stale_q(now)
    stale = (
        Connection.objects.filter(pk=connection_id)
        .filter(stale_q(now))
        .values_list("running_since", flat=True)
        .first()
    )
    taken = (
        Connection.objects.filter(pk=connection_id)
        .filter(free)
        .update(running_since=now, heartbeat_at=now, run_requested_at=None)
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
            error="The worker running this sync stopped without finishing (its heartbeat stopped).",
        )
    return Claim(connection_id, now, last_beat=now)


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


def request_live_run(connection_id: int) -> bool:
    """Coalesce a trigger into the run in progress before any task is queued
    for it (a webhook stream: one queued task per delivery would each start a
    run of its own after it). Only a live claim takes it: a stale one's
    holder is dead and would never run again. The holder's
    ``release_or_continue`` reads ``run_requested_at`` under the row lock, so
    either it sees this request, or the claim is gone and this returns False
    (the caller queues a task)."""
    now = timezone.now()
    return bool(
        Connection.objects.filter(pk=connection_id, running_since__isnull=False)
        .exclude(stale_q(now))
        .update(run_requested_at=now)
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
