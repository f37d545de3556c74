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

from typing import Any

from django.contrib.admin.models import CHANGE, LogEntry
from django.db import models, transaction
from django.utils import timezone

from . import alerts, schedules
from .models import Account, Connection

State = Connection.State

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


def pause(connection: Connection, *, user: Any = None, reason: str = "") -> bool:
    """Stop syncing until resumed. Its schedule is removed."""
    if connection.state == State.PAUSED:
        return False
    who = user.get_username() if user is not None else "driftsync"
    return _set_state(connection, State.PAUSED, reason or f"Paused by {who}.", user=user)


def resume(connection: Connection, *, user: Any = None) -> bool:
    """Sync again on the schedule, from now (also clears "needs
    re-authorization" and "error" once the person has fixed the cause)."""
    return _set_state(connection, State.ACTIVE, "", user=user)


def mark_needs_reauth(connection: Connection, reason: str, *, user: Any = None) -> bool:
    """An account of this connection refused its credentials. The connection
    stops until a person re-authorizes the account and resumes it."""
    return _set_state(connection, State.NEEDS_REAUTH, reason, user=user)


def mark_error(connection: Connection, reason: str, *, user: Any = None) -> bool:
    """The app refused the connection's configuration (a missing audience, a
    field that cannot be written). It stops until a person fixes it."""
    return _set_state(connection, State.ERROR, reason, user=user)


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


__all__ = [
    "account_recovered",
    "enqueue",
    "mark_account_needs_reauth",
    "mark_error",
    "mark_needs_reauth",
    "pause",
    "request_full_sync",
    "resume",
]
