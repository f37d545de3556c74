"""django-q2 task functions: plain functions named by dotted path that take
ids and re-fetch their rows.

Which connections run: only ``active`` ones. A paused connection never runs,
whatever the trigger; one that needs re-authorization or is in error does
not run either until a person sets it active again in the admin. Their
schedules are removed (``connections.schedules``), and because the engine
changes ``state`` with ``queryset.update`` (no signal), this module also
refuses to run them and drops the stale schedule when it finds one.

Coalescing (see ``connections.locking``): a trigger that arrives while the
connection runs sets ``run_requested_at`` and the holder runs once more when
it finishes, recorded with the holder's trigger and user. A coalesced
``full`` request sets ``needs_full_sync``, which the follow-up run (or the
next) honours. A dry run is never coalesced: it writes nothing, so when the
connection is busy it is skipped (the task returns None). A trigger that
arrives during a dry run is not turned into a second dry run: the dry run
releases the claim and queues a real run (trigger ``schedule``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib.auth import get_user_model
from django.utils import timezone
from django_q.tasks import async_task

from . import locking, schedules, webhooks
from .engine.run import run_connection
from .models import Connection, SyncRun

log = logging.getLogger(__name__)

RUN_SYNC = "connections.tasks.run_sync"


class ConnectionBusy(Exception):
    """Another run holds the connection's claim."""


class ConnectionNotActive(Exception):
    """The connection is paused, needs re-authorization or is in error."""


def run_claimed(
    connection_id: int,
    claimed: locking.Claim,
    *,
    trigger: str,
    user: Any = None,
    dry_run: bool = False,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
) -> list[SyncRun]:
    """Run while holding ``claimed``, again for every trigger that came in
    meanwhile, then release. Returns the runs made (in order)."""
    runs: list[SyncRun] = []
    holder: locking.Claim | None = claimed

    def heartbeat(side: str, n: int) -> None:
        claimed.renew()
        if progress is not None:
            progress(side, n)

    try:
        with claimed.keep_alive():
            while True:
                conn = (
                    Connection.objects.select_related("account_a", "account_b")
                    .filter(pk=connection_id)
                    .first()
                )
                if conn is None or not may_run(conn.state, dry_run=dry_run):
                    break
                run = run_connection(
                    conn,
                    trigger=trigger,
                    user=user,
                    dry_run=dry_run,
                    full=full,
                    progress=heartbeat,
                    claim=claimed,
                )
                runs.append(run)
                webhooks.mark_read(run)
                # the follow-up run covers what arrived during this one, with the same
                # trigger and user; ``full`` was for this run only (a coalesced full
                # request went into needs_full_sync)
                full = False
                if not claimed.release_or_continue():
                    holder = None
                    break
                if dry_run:
                    # a trigger that came in during a dry run asked for a real run,
                    # which this process was not asked to make: hand it to the queue
                    claimed.release()
                    holder = None
                    enqueue_sync(conn, trigger=SyncRun.Trigger.SCHEDULE)
                    break
    except BaseException as exc:
        if holder is not None:
            holder.release()
            SyncRun.objects.filter(
                connection_id=connection_id,
                status=SyncRun.Status.RUNNING,
                started_at__gte=holder.since,
            ).update(
                status=SyncRun.Status.FAILED,
                finished_at=timezone.now(),
                error=f"The run crashed: {type(exc).__name__}: {exc}"[:5000],
            )
        raise
    else:
        if holder is not None:  # left the loop because the connection is gone or inactive
            claimed.release()
    _drop_schedule_if_inactive(connection_id)
    return runs


#: a dry run writes nothing: it may preview a connection not started yet, or paused
DRY_RUN_STATES = (Connection.State.ACTIVE, Connection.State.DRAFT, Connection.State.PAUSED)


def may_run(state: str, *, dry_run: bool = False) -> bool:
    return state in DRY_RUN_STATES if dry_run else state == Connection.State.ACTIVE


def sync_connection(
    connection_id: int,
    *,
    trigger: str,
    user: Any = None,
    dry_run: bool = False,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
    coalesce: bool = True,
) -> list[SyncRun]:
    """Claim the connection and run it. Raises ``ConnectionNotActive`` or
    ``ConnectionBusy`` (after coalescing the trigger when ``coalesce``)."""
    conn = Connection.objects.filter(pk=connection_id).values("state").first()
    if conn is None:
        raise Connection.DoesNotExist(f"connection {connection_id} does not exist")
    if not may_run(conn["state"], dry_run=dry_run):
        _drop_schedule_if_inactive(connection_id)
        raise ConnectionNotActive(f"connection {connection_id} is {conn['state']}: not run")
    if coalesce and not dry_run:
        claimed = locking.claim_or_request(connection_id, full=full)
    else:
        claimed = locking.claim(connection_id)
    if claimed is None:
        raise ConnectionBusy(f"connection {connection_id} is already running")
    return run_claimed(
        connection_id,
        claimed,
        trigger=trigger,
        user=user,
        dry_run=dry_run,
        full=full,
        progress=progress,
    )


def run_sync(
    connection_id: int,
    trigger: str = SyncRun.Trigger.SCHEDULE,
    user_id: int | None = None,
    dry_run: bool = False,
    full: bool = False,
) -> int | None:
    """The queued task. Returns the id of the (last) run, or None when
    nothing ran: connection gone or not active, or busy (the trigger was
    then coalesced into the run in progress, or skipped for a dry run)."""
    user = get_user_model().objects.filter(pk=user_id).first() if user_id else None
    try:
        runs = sync_connection(
            connection_id, trigger=trigger, user=user, dry_run=dry_run, full=full
        )
    except Connection.DoesNotExist:
        log.info("connection %s no longer exists; %s sync dropped", connection_id, trigger)
        schedules.remove_schedule(connection_id)
        return None
    except ConnectionNotActive as exc:
        log.info("%s; %s sync dropped", exc, trigger)
        return None
    except ConnectionBusy:
        if dry_run:
            log.info("connection %s is running; dry run skipped", connection_id)
        else:
            log.info("connection %s is running; %s trigger coalesced", connection_id, trigger)
        return None
    return runs[-1].pk if runs else None


def scheduled_sync(connection_id: int) -> int | None:
    """What each connection's django-q2 schedule calls."""
    return run_sync(connection_id, trigger=SyncRun.Trigger.SCHEDULE)


def enqueue_sync(
    connection: Connection,
    *,
    trigger: str,
    user: Any = None,
    dry_run: bool = False,
    full: bool = False,
) -> str:
    """Queue a run for the workers (the admin and the webhooks call this;
    a sync never runs inside a request). Returns the task id, or "" when a
    webhook's trigger was coalesced into the run in progress (no task)."""
    coalescible = trigger == SyncRun.Trigger.WEBHOOK and not (dry_run or full or user)
    if coalescible and locking.request_live_run(connection.pk):
        return ""
    return async_task(
        RUN_SYNC,
        connection.pk,
        trigger=trigger,
        user_id=getattr(user, "pk", None),
        dry_run=dry_run,
        full=full,
        task_name=f"sync {connection.pk} ({trigger})",
        group=f"driftsync-connection-{connection.pk}",
    )


def _drop_schedule_if_inactive(connection_id: int) -> None:
    conn = Connection.objects.filter(pk=connection_id).first()
    if conn is None:
        schedules.remove_schedule(connection_id)
    elif conn.state != Connection.State.ACTIVE:
        schedules.sync_schedule(conn)
