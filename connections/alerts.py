"""Mail the people who own a connection when it needs them, and when it recovers.

An incident (``models.Alert``) is one problem of one connection, of one kind:
it needs re-authorization, it stopped on an error, or contacts keep failing
past their retries. Its owners (``Connection.owners``; nobody chosen: every
superuser) get one mail when it opens, a reminder at most once a day while
it lasts and is seen again, and one mail when it recovers. A problem that
comes back within a day of its recovery mail reopens the same incident, so
a flapping connection never mails more than that either.

Called where the state changes, nowhere else: ``actions`` (a connection's
state) and the end of a run (``engine.run``, for failing contacts). The mails
go once the transaction commits; a mail server that refuses is logged and
changes nothing else (the next occasion tries again).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils import timezone

from .models import Alert, Connection, ContactLink, LinkStatus, SyncRun

log = logging.getLogger(__name__)

Kind = Alert.Kind
#: no more than one mail about one incident's problem in this long
QUIET_PERIOD = dt.timedelta(days=1)
#: a contact counts as "keeps failing" once it failed this many runs in a row
DEFAULT_FAILURE_THRESHOLD = 5
#: the connection's state -> the incident it opens
STATE_KINDS = {
    Connection.State.NEEDS_REAUTH: Kind.NEEDS_REAUTH,
    Connection.State.ERROR: Kind.ERROR,
}


def failure_threshold() -> int:
    return int(getattr(settings, "DRIFTSYNC_ALERT_FAILURES", DEFAULT_FAILURE_THRESHOLD))


def recipients(connection: Connection) -> list[str]:
    owners = connection.owners.filter(is_active=True).exclude(email="")
    if not owners.exists():
        owners = get_user_model().objects.filter(is_active=True, is_superuser=True)
        owners = owners.exclude(email="")
    return sorted(set(owners.values_list("email", flat=True)))


def admin_url(connection: Connection) -> str:
    public = str(getattr(settings, "PUBLIC_URL", "")).rstrip("/")
    return public + reverse("admin:connections_connection_change", args=[connection.pk])


# ------------------------------------------------------------------ hooks


def state_changed(connection: Connection, state: str) -> None:
    """``actions`` changed the connection's state (inside its transaction)."""
    kind = STATE_KINDS.get(state)
    if kind is not None:
        problem(connection, kind, connection.state_reason)
    if state == Connection.State.ACTIVE:
        recovered(connection, [Kind.NEEDS_REAUTH, Kind.ERROR])


def after_run(connection: Connection, run: SyncRun) -> None:
    """A live run finished: do contacts keep failing past their retries?"""
    if run.dry_run or run.status == SyncRun.Status.FAILED:
        return  # a failed run reached no verdict on its contacts
    threshold = failure_threshold()
    failing = ContactLink.objects.filter(
        connection=connection, status=LinkStatus.FAILING, failure_count__gte=threshold
    )
    top = list(
        failing.values("status_reason").annotate(n=Count("pk")).order_by("-n", "status_reason")[:3]
    )
    if not top:
        recovered(connection, [Kind.FAILING])
        return
    total = failing.count() if len(top) == 3 else sum(row["n"] for row in top)
    reason = render_to_string(
        "connections/alerts/failing_reason.txt",
        {"total": total, "threshold": threshold, "reasons": top},
    ).strip()
    problem(connection, Kind.FAILING, reason)


# ------------------------------------------------------------- incidents


def problem(connection: Connection, kind: str, reason: str) -> Alert:
    """Open (or keep open) the incident; mail its owners unless they were
    mailed about it within the last day."""
    now = timezone.now()
    with transaction.atomic():
        alert = _open_alert(connection, kind)
        if alert is None:
            alert = _reopen_recent(connection, kind, now)
        if alert is None:
            try:
                with transaction.atomic():
                    alert = Alert.objects.create(
                        connection=connection, kind=kind, reason=reason, opened_at=now
                    )
            except IntegrityError:  # another process opened it just now
                alert = _open_alert(connection, kind)
                assert alert is not None
        alert.reason = reason
        fields = ["reason"]
        if alert.last_mailed_at is None or now - alert.last_mailed_at >= QUIET_PERIOD:
            alert.last_mailed_at = now
            fields.append("last_mailed_at")
            _mail_on_commit(connection, alert, recovery=False)
        alert.save(update_fields=fields)
    return alert


def recovered(connection: Connection, kinds: Iterable[str]) -> None:
    """Resolve the open incidents of these kinds; mail the owners that it
    recovered where they were told of the problem since the last such mail."""
    now = timezone.now()
    with transaction.atomic():
        for alert in Alert.objects.select_for_update().filter(
            connection=connection, kind__in=list(kinds), resolved_at__isnull=True
        ):
            alert.resolved_at = now
            fields = ["resolved_at"]
            told = alert.last_mailed_at is not None
            if told and (
                alert.recovery_mailed_at is None or alert.recovery_mailed_at < alert.last_mailed_at
            ):
                alert.recovery_mailed_at = now
                fields.append("recovery_mailed_at")
                _mail_on_commit(connection, alert, recovery=True)
            alert.save(update_fields=fields)


def _open_alert(connection: Connection, kind: str) -> Alert | None:
    return (
        Alert.objects.select_for_update()
        .filter(connection=connection, kind=kind, resolved_at__isnull=True)
        .first()
    )


def _reopen_recent(connection: Connection, kind: str, now: dt.datetime) -> Alert | None:
    """The same problem back within a day of its last mail: the same incident."""
    alert = (
        Alert.objects.select_for_update()
        .filter(connection=connection, kind=kind, last_mailed_at__gt=now - QUIET_PERIOD)
        .order_by("-last_mailed_at", "-pk")
        .first()
    )
    if alert is None:
        return None
    alert.resolved_at = None
    alert.save(update_fields=["resolved_at"])
    return alert


# ------------------------------------------------------------------ mail


def _mail_on_commit(connection: Connection, alert: Alert, *, recovery: bool) -> None:
    connection_id, alert_id = connection.pk, alert.pk
    transaction.on_commit(lambda: send_alert(connection_id, alert_id, recovery=recovery))


def send_alert(connection_id: int, alert_id: int, *, recovery: bool) -> bool:
    """Mail the owners about the incident; False when nobody could be mailed."""
    alert = Alert.objects.select_related("connection").filter(pk=alert_id).first()
    if alert is None:
        return False
    connection = alert.connection
    to = recipients(connection)
    if not to:
        log.warning("connection %s: no owner or superuser with an email to alert", connection_id)
        return False
    context = {
        "connection": connection,
        "alert": alert,
        "what": alert.get_kind_display().lower(),
        "recovery": recovery,
        "url": admin_url(connection),
    }
    subject = render_to_string("connections/alerts/subject.txt", context).strip()
    body = render_to_string("connections/alerts/body.txt", context)
    try:
        send_mail(subject, body, None, to)
    except Exception:  # a mail server that refuses must not break a run or a state change
        log.exception("connection %s: the alert mail could not be sent", connection_id)
        return False
    return True


__all__ = ["after_run", "problem", "recipients", "recovered", "send_alert", "state_changed"]
