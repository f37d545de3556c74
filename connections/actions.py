"""Every change of a connection's or an account's state, in one place.

The admin, the engine, the management commands, the accounts code and the
OAuth callback all call these functions rather than setting ``state`` or
``status`` themselves. Each one (after zulip's ``zerver/actions``):

- takes the acting user (``None`` when driftsync itself acts: a run found a
  revoked token, the app refused the configuration),
- changes the row in one transaction, with a conditional UPDATE where a run
  may be racing it,
- writes an admin log entry (the connection's or account's History page),
  attributed to the user, or to no one when driftsync acted,
- and does its side effects: the connection's owners are alerted
  (``alerts``: it needs re-authorization, it errors, it recovered), the
  connection's django-q2 schedule follows its state (``schedules.sync_schedule``, in the
  same transaction: the schedule is a row of the same database), and a
  queued run can be enqueued only after the rows it reads are committed.

A function returns whether it changed anything, so callers can tell the
person "already paused" without reading the row again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import models, transaction
from django.utils import timezone

from . import alerts, schedules
from .models import Account, Connection, ContactLink, SyncRun

State = Connection.State

#: the states of a connection that was started (every state but a draft)
STARTED = tuple(s for s in State if s != State.DRAFT)

#: how long a stored reason may be (the model's text fields are unbounded,
#: but a reason is read by a person in a list)
REASON_LIMIT = 2000


def _log(user: Any, obj: models.Model, message: str) -> None:
    """An admin History row; driftsync's own changes have no user, so they
    are attributed to the first superuser (the admin log needs one) and say
    so in the message."""
    user_id = getattr(user, "pk", None)
    if user_id is None:
        from django.contrib.auth import get_user_model

        first = get_user_model().objects.filter(is_superuser=True).order_by("pk").first()
        if first is None:
            return
        user_id = first.pk
        message = f"{message} (by driftsync)"
    LogEntry.objects.log_actions(
        user_id=user_id,
        queryset=[obj],
        action_flag=CHANGE,
        change_message=message,
        single_object=True,
    )


def _follow_schedule(connection: Connection) -> None:
    """The schedule row lives in the same database: changing it inside the
    transaction makes it atomic with the state change (nothing to do on
    commit, nothing left half-done by a crash)."""
    schedules.sync_schedule(connection)


def _set_state(
    connection: Connection,
    state: str,
    reason: str,
    *,
    user: Any,
    only_from: tuple[str, ...] | None = None,
) -> bool:
    reason = (reason or "")[:REASON_LIMIT]
    with transaction.atomic():
        rows = Connection.objects.filter(pk=connection.pk)
        if only_from is not None:
            rows = rows.filter(state__in=only_from)
        changed = (
            rows.exclude(state=state, state_reason=reason).update(
                state=state, state_reason=reason, updated_at=timezone.now()
            )
            > 0
        )
        if not changed:
            connection.refresh_from_db(fields=["state", "state_reason"])
            return False
        before = connection.get_state_display().lower()
        connection.state, connection.state_reason = state, reason
        after = connection.get_state_display().lower()
        message = f"State changed from {before} to {after}."
        if reason and user is None:
            message = f"{message} {reason}"
        _log(user, connection, message)
        _follow_schedule(connection)
        alerts.state_changed(connection, state)
    return True


class NotReady(Exception):
    """Start refused: what is still missing, one reason per item."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__(" ".join(problems))
        self.problems = problems


def start(connection: Connection, user: Any = None) -> bool:
    """Start a draft: check that nothing required is missing (raises
    ``NotReady`` with the reasons), make it active, ask for the initial full
    sync and queue it once committed; the schedule follows (its first
    scheduled run one interval after the initial sync). False if the
    connection was not a draft (already started)."""
    from django_q.models import Schedule

    from .models import SyncRun
    from .readiness import start_problems

    connection.refresh_from_db()
    if connection.state != State.DRAFT:
        return False
    problems = start_problems(connection)
    if problems:
        raise NotReady(problems)
    with transaction.atomic():
        if not _set_state(connection, State.ACTIVE, "", user=user, only_from=(State.DRAFT,)):
            return False
        Connection.request_full_sync(connection.pk)
        connection.needs_full_sync, connection.full_sync_started = True, False
        # the initial sync is queued below; the schedule takes over after it
        Schedule.objects.filter(name=schedules.schedule_name(connection.pk)).update(
            next_run=timezone.now() + dt.timedelta(minutes=max(1, connection.interval_minutes))
        )
        enqueue(connection, trigger=SyncRun.Trigger.INITIAL, user=user, full=True, on_commit=True)
    return True


def pause(connection: Connection, *, user: Any = None, reason: str = "") -> bool:
    """Stop syncing until resumed. Its schedule is removed."""
    if connection.state in (State.PAUSED, State.DRAFT):
        return False  # a draft does not run either, and starts only through ``start``
    who = user.get_username() if user is not None else "driftsync"
    return _set_state(connection, State.PAUSED, reason or f"Paused by {who}.", user=user)


def resume(connection: Connection, *, user: Any = None) -> bool:
    """Sync again on the schedule, from now (also clears "needs
    re-authorization" and "error" once the person has fixed the cause).
    Never a draft: that one starts through ``start`` and its checks."""
    stopped = (State.PAUSED, State.NEEDS_REAUTH, State.ERROR)
    return _set_state(connection, State.ACTIVE, "", user=user, only_from=stopped)


def mark_needs_reauth(connection: Connection, reason: str, *, user: Any = None) -> bool:
    """An account of this connection refused its credentials. The connection
    stops until a person re-authorizes the account and resumes it. A draft
    (a dry run found it) stays a draft: its checklist shows the account's state."""
    return _set_state(connection, State.NEEDS_REAUTH, reason, user=user, only_from=STARTED)


def mark_error(connection: Connection, reason: str, *, user: Any = None) -> bool:
    """The app refused the connection's configuration (a missing audience, a
    field that cannot be written). It stops until a person fixes it. A draft
    stays a draft."""
    return _set_state(connection, State.ERROR, reason, user=user, only_from=STARTED)


def mark_account_needs_reauth(account: Account, reason: str) -> bool:
    """The app refused the account's credentials (a revoked token, an
    ``invalid_grant`` on refresh). Only driftsync sets this."""
    reason = (reason or "")[:REASON_LIMIT]
    with transaction.atomic():
        changed = (
            Account.objects.filter(pk=account.pk)
            .exclude(status=Account.Status.NEEDS_REAUTH, status_reason=reason)
            .update(status=Account.Status.NEEDS_REAUTH, status_reason=reason)
        )
        account.status, account.status_reason = Account.Status.NEEDS_REAUTH, reason
        if changed:
            _log(None, account, f"Needs re-authorization: {reason}")
    return bool(changed)


def record_account_check(
    account: Account,
    status: str,
    reason: str = "",
    *,
    user: Any = None,
    checked_at: dt.datetime | None = None,
    **values: Any,
) -> bool:
    """The result of "Test connection" (or of a run's check): the account
    works (``Account.Status.OK``) or its app failed (``ERROR``, with the
    reason). A refused credential goes through ``mark_account_needs_reauth``.
    ``values`` (what the check read: ``remote_id``, ``schema``, ``options``)
    are written in the same UPDATE, so a unique clash raises before anything
    is stored. A change of status is written to the account's History.
    Returns whether the status changed."""
    if status not in (Account.Status.OK, Account.Status.ERROR):
        raise ValueError(f"record_account_check: {status!r} is not a test result")
    reason = (reason or "")[:REASON_LIMIT] if status == Account.Status.ERROR else ""
    checked_at = checked_at or timezone.now()
    before = account.status
    with transaction.atomic():
        Account.objects.filter(pk=account.pk).update(
            status=status, status_reason=reason, checked_at=checked_at, **values
        )
        account.status, account.status_reason, account.checked_at = status, reason, checked_at
        for key, value in values.items():
            setattr(account, key, value)
        changed = before != status
        if changed:
            what = "Tested: it works." if status == Account.Status.OK else f"Test failed: {reason}"
            _log(user, account, what)
    return changed


def credentials_replaced(account: Account) -> None:
    """A person pasted a new token or key: whether it works is unknown until
    it is tested. Sets the status on the row being saved (the admin form
    saves it and writes its History)."""
    account.status, account.status_reason = Account.Status.UNCHECKED, ""


def account_recovered(account: Account, *, user: Any = None) -> list[Connection]:
    """The account works again (re-authorized with OAuth, or a new token
    passed "Test connection"): resume the connections that stopped because
    an account needed re-authorization, where the other account is not
    broken too. Returns the connections resumed."""
    waiting = (
        Connection.objects.filter(models.Q(account_a=account) | models.Q(account_b=account))
        .filter(state=State.NEEDS_REAUTH)
        .select_related("account_a", "account_b")
    )
    broken = (Account.Status.NEEDS_REAUTH, Account.Status.ERROR)
    resumed = []
    for connection in waiting:
        a_is_it = connection.account_a_id == account.pk
        other = connection.account_b if a_is_it else connection.account_a
        if other.pk != account.pk and other.status in broken:
            continue
        if _set_state(connection, State.ACTIVE, "", user=user, only_from=(State.NEEDS_REAUTH,)):
            resumed.append(connection)
    return resumed


def request_full_sync(connection: Connection, *, user: Any = None, why: str = "") -> bool:
    """Ask for a full read on the next run (activation, widened scope, "Full
    resync"). Safe while a run is going: that run will not clear it."""
    changed = Connection.request_full_sync(connection.pk) > 0
    connection.needs_full_sync, connection.full_sync_started = True, False
    if changed and (user is not None or why):
        _log(user, connection, why or "Full resync requested.")
    return changed


def enqueue(
    connection: Connection,
    *,
    trigger: str,
    user: Any = None,
    dry_run: bool = False,
    full: bool = False,
    on_commit: bool = False,
    message: str = "",
) -> str | None:
    """Queue a run for the workers; a sync never runs inside a request.

    Returns the task id, or None with ``on_commit`` (the run is queued once
    the current transaction commits, so the worker sees what it stored).
    A person's request is logged on the connection's History (``message``
    replaces the default "Sync queued.").
    """
    from .tasks import enqueue_sync

    if on_commit:
        transaction.on_commit(
            lambda: enqueue_sync(connection, trigger=trigger, user=user, dry_run=dry_run, full=full)
        )
        return None
    task_id = enqueue_sync(connection, trigger=trigger, user=user, dry_run=dry_run, full=full)
    if user is not None:
        what = "Dry run" if dry_run else ("Full resync" if full else "Sync")
        _log(user, connection, message or f"{what} queued.")
    return task_id


FOLLOW_UP_PREFIX = "driftsync-follow-up-"


def schedule_follow_up(connection: Connection, when: dt.datetime) -> None:
    """One more run of the connection at ``when`` (webhook deliveries a run
    read too early to pass its cursor over; see ``engine.read``).

    One django-q2 schedule row per connection, run once and then removed by
    the scheduler: a second request moves it to the later time rather than
    adding a row, so follow-ups never pile up.
    """
    from django_q.models import Schedule

    from .tasks import RUN_SYNC

    name = f"{FOLLOW_UP_PREFIX}{connection.pk}"
    with transaction.atomic():
        row = Schedule.objects.select_for_update().filter(name=name).first()
        if row is None:
            Schedule.objects.create(
                name=name,
                func=RUN_SYNC,
                args=repr((connection.pk, SyncRun.Trigger.WEBHOOK.value)),
                schedule_type=Schedule.ONCE,
                repeats=-1,
                next_run=when,
            )
        elif row.next_run is None or row.next_run < when:
            row.next_run = when
            row.save(update_fields=["next_run"])


def send_held_trash_tags(links: Iterable[ContactLink], *, user: Any) -> int:
    """A person confirms the trash tags the mass-deletion guard (or a failing
    app) held back: the next run sends them, past the guard, and one is
    queued now. Returns how many tags were confirmed."""
    ids = [link.pk for link in links if link.trash_pending]
    if not ids:
        return 0
    with transaction.atomic():
        rows = ContactLink.objects.filter(pk__in=ids).exclude(trash_pending="")
        by_connection: dict[int, int] = {}
        for conn_id in rows.values_list("connection_id", flat=True):
            by_connection[conn_id] = by_connection.get(conn_id, 0) + 1
        confirmed = rows.update(trash_confirmed=True, trash_retry_after=None)
        for connection in Connection.objects.filter(pk__in=list(by_connection)):
            n = by_connection[connection.pk]
            enqueue(
                connection,
                trigger=SyncRun.Trigger.MANUAL,
                user=user,
                on_commit=True,
            )
            _log(user, connection, f"Confirmed {n} held trash tag(s); sync queued.")
    return confirmed


__all__ = [
    "NotReady",
    "account_recovered",
    "credentials_replaced",
    "enqueue",
    "mark_account_needs_reauth",
    "mark_error",
    "mark_needs_reauth",
    "pause",
    "record_account_check",
    "request_full_sync",
    "resume",
    "schedule_follow_up",
    "send_held_trash_tags",
    "start",
]
