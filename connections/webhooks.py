"""Inbound webhooks: store, verify, queue a run. Never sync inside a request.

This module knows no app. Each app that sends webhooks declares them in
``connectors/<app>/webhooks.py`` (``Connector.webhooks``): how a delivery is
verified and parsed (pure functions) and the facts that route it here, its
``Scope``:

- ``Scope.ACCOUNT`` (Drift): one URL for the app, ``/webhooks/<app>/``,
  checked against a token in the ``secret_setting``; the delivery names the
  account (Drift's org), and is stored once per account of that id, for the
  engine to read from the inbox. Every active connection of those accounts
  gets a run.
- ``Scope.CONNECTION`` (Mailchimp): one URL per connection,
  ``/webhooks/<app>/<connection id>/<secret>/``, checked against the
  connection's ``webhook_secret``; ``check_methods`` (Mailchimp's GET) only
  check the URL. The delivery queues a run of its connection, which lists the
  app's changes itself: a run that succeeds has read it (``mark_read``).

Every delivery is stored as a ``WebhookEvent`` (the inbox, read-only in the
admin) before the reply: accepted ones as ``received``, refused ones as
``rejected`` with the reason in ``error``, repeats and events that are not
about contacts as ``ignored``. The stored body is capped at
``MAX_STORED_BODY``, tokens it carried are masked and NUL is kept escaped.

Repeats: apps deliver at least once. An identical delivery (same source,
account or connection, event type, contact and body) within
``REPEAT_WINDOW`` is stored as ``ignored`` and queues nothing. Should a repeat
get through anyway (outside the window, or two copies racing) nothing bad
happens: the engine fetches the contact fresh and plans it against the base
in its binding, so the second pass finds nothing to write.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
from functools import cache

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from connectors import registry
from connectors.webhooks import Delivery, Malformed, Parsed, Scope, WebhookApp, WebhookRejected

from . import actions
from .models import Account, Connection, SyncRun, WebhookEvent

log = logging.getLogger(__name__)

#: bodies larger than this are refused (413); stored bodies are cut to it
MAX_STORED_BODY = 64 * 1024
#: an identical delivery within this window is a repeat
REPEAT_WINDOW = dt.timedelta(minutes=10)


@cache
def webhook_apps() -> dict[str, WebhookApp]:
    """The apps that send webhooks, by connector key."""
    apps = {}
    for key in registry.CONNECTORS:
        app = registry.get(key).webhooks
        if app is not None:
            apps[key] = app
    return apps


def expected_secret(app: WebhookApp) -> str:
    """``Scope.ACCOUNT``: the app's token, from the settings or the environment."""
    if not app.secret_setting:
        return ""
    return str(
        getattr(settings, app.secret_setting, None) or os.environ.get(app.secret_setting, "")
    )


def mark_read(run: SyncRun) -> int:
    """After a run that succeeded: the connection's ``Scope.CONNECTION``
    deliveries received before it started are processed (the run listed the
    app's changes, theirs included). ``Scope.ACCOUNT`` deliveries are marked
    by the engine as it reads them from the inbox."""
    if run.dry_run or run.status == SyncRun.Status.FAILED:
        return 0
    conn = run.connection
    apps = {conn.account_a.connector, conn.account_b.connector}
    keys = [
        key for key, app in webhook_apps().items() if app.scope == Scope.CONNECTION and key in apps
    ]
    if not keys:
        return 0  # no app of this connection sends per-connection deliveries
    return WebhookEvent.objects.filter(
        connection_id=run.connection_id,
        source__in=keys,
        status=WebhookEvent.Status.RECEIVED,
        received_at__lte=run.started_at,
    ).update(status=WebhookEvent.Status.PROCESSED, processed_at=timezone.now())


# ---------------------------------------------------------------- storing


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _body_text(body: bytes, secrets: tuple[str, ...] = ()) -> str:
    # PostgreSQL text cannot hold NUL: keep it visible, escaped
    text = body[:MAX_STORED_BODY].decode("utf-8", "replace").replace("\x00", "\\x00")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _delivery(request: HttpRequest, body: bytes, url_secret: str = "") -> Delivery:
    return Delivery(body, request.content_type or "", dict(request.headers), url_secret)


def _is_repeat(event: WebhookEvent) -> WebhookEvent | None:
    since = timezone.now() - REPEAT_WINDOW
    # a connection's deliveries belong to it, an app-wide one's to the account
    scope = Q(connection=event.connection) if event.connection_id else Q(account=event.account)
    return (
        WebhookEvent.objects.filter(scope, source=event.source, received_at__gte=since)
        .filter(
            event_type=event.event_type,
            contact_id=event.contact_id,
            body=event.body,
        )
        .exclude(status=WebhookEvent.Status.REJECTED)
        .order_by("pk")
        .first()
    )


def _save_unless_repeat(event: WebhookEvent) -> bool:
    """Store the delivery; True when it asks for a run."""
    if event.status == WebhookEvent.Status.RECEIVED:
        earlier = _is_repeat(event)
        if earlier is not None:
            event.status = WebhookEvent.Status.IGNORED
            event.error = f"Repeat of delivery #{earlier.pk}; nothing queued."
    event.save()
    return event.status == WebhookEvent.Status.RECEIVED


def _reject(event: WebhookEvent, status: int, reason: str) -> HttpResponse:
    event.status = WebhookEvent.Status.REJECTED
    event.error = reason.replace("\x00", "\\x00")
    event.save()
    log.warning("%s webhook rejected (%s): %s", event.source, status, reason)
    return _text(status, reason)


def _refused(event: WebhookEvent, app: WebhookApp, exc: WebhookRejected) -> HttpResponse:
    if exc.event_type:
        event.event_type = exc.event_type[:60]
    reason = exc.reason
    if isinstance(exc, Malformed):
        reason = f"Malformed {app.name} webhook: {reason}"
    return _reject(event, exc.http_status, reason)


def _fill(event: WebhookEvent, app: WebhookApp, parsed: Parsed) -> None:
    """What the app's parser found, on the row (the engine reads the row,
    never the body)."""
    event.event_type = parsed.event_type[:60]
    if not parsed.events:
        event.status = WebhookEvent.Status.IGNORED
        event.error = (
            f"{app.name} event {parsed.event_type!r} is not about a contact this "
            "connection syncs; nothing to do."
        )
        return
    first = parsed.events[0]
    event.kind = first.kind[:20]
    event.contact_id = (first.contact_id or "")[:200]
    event.new_contact_id = (first.new_contact_id or "")[:200]
    event.email = (first.email or "")[:320]


def _for_account(event: WebhookEvent, account: Account) -> WebhookEvent:
    return WebhookEvent(
        source=event.source,
        account=account,
        event_type=event.event_type,
        kind=event.kind,
        contact_id=event.contact_id,
        new_contact_id=event.new_contact_id,
        email=event.email,
        body=event.body,
        status=event.status,
        error=event.error,
    )


# ------------------------------------------------------------------ views


def _not_allowed(request: HttpRequest, app: WebhookApp) -> HttpResponse | None:
    allowed = ["POST", *app.check_methods]
    return None if request.method in allowed else HttpResponseNotAllowed(allowed)


@csrf_exempt
def app_webhook(request: HttpRequest, key: str) -> HttpResponse:
    """``POST /webhooks/<app>/`` (``Scope.ACCOUNT``): one URL for every
    account of the app; the delivery says whose."""
    app = webhook_apps()[key]
    if (refused := _not_allowed(request, app)) is not None:
        return refused
    body = request.body
    expected = expected_secret(app)
    event = WebhookEvent(source=app.key, body=_body_text(body, (expected,)))
    if len(body) > MAX_STORED_BODY:
        return _reject(event, 413, f"Body too large ({len(body)} bytes; limit {MAX_STORED_BODY}).")
    delivery = _delivery(request, body)
    try:
        envelope = app.verify(delivery, expected)
    except WebhookRejected as exc:
        event.body = _body_text(body, (expected, *exc.secrets))
        return _refused(event, app, exc)
    event.event_type = envelope.event_type[:60]
    event.body = _body_text(body, (expected, *envelope.secrets))
    ref = envelope.account_ref
    accounts = list(Account.objects.filter(connector=app.key, remote_id=ref))
    if not accounts:
        return _reject(
            event,
            404,
            f"Unknown {app.name} {app.account_label} {ref}: no {app.name} account has that id.",
        )
    event.account = accounts[0]
    try:
        parsed = app.parse(delivery, {})
    except WebhookRejected as exc:
        return _refused(event, app, exc)
    _fill(event, app, parsed)
    queued = 0
    with transaction.atomic():
        # one inbox row per account of that id (the same Drift org may be
        # connected twice, e.g. once against a proxy)
        for account in accounts:
            if not _save_unless_repeat(_for_account(event, account)):
                continue
            for connection in Connection.objects.filter(
                Q(account_a=account) | Q(account_b=account), state=Connection.State.ACTIVE
            ):
                actions.enqueue(connection, trigger=SyncRun.Trigger.WEBHOOK, on_commit=True)
                queued += 1
    return _text(200, f"ok: stored, {queued} sync(s) queued")


@csrf_exempt
def connection_webhook(
    request: HttpRequest, key: str, connection_id: int, secret: str
) -> HttpResponse:
    """``/webhooks/<app>/<connection id>/<secret>/`` (``Scope.CONNECTION``):
    the URL carries the connection's ``webhook_secret``. The app's
    ``check_methods`` (Mailchimp's GET when the webhook is registered) only
    check the URL."""
    app = webhook_apps()[key]
    if (refused := _not_allowed(request, app)) is not None:
        return refused
    posted = request.method == "POST"
    body = request.body if posted else b""
    event = WebhookEvent(
        source=app.key, body=_body_text(body), event_type="" if posted else "url check"
    )
    connection = (
        Connection.objects.select_related("account_a", "account_b").filter(pk=connection_id).first()
    )
    if connection is None:
        return _reject(event, 404, f"Unknown connection {connection_id}.")
    event.connection = connection
    delivery = _delivery(request, body, url_secret=secret)
    try:
        app.verify(delivery, connection.webhook_secret)
    except WebhookRejected as exc:
        return _refused(event, app, exc)
    side = next((s for s in ("a", "b") if connection.account(s).connector == app.key), None)
    if side is None:
        return _reject(event, 404, f"Connection {connection_id} has no {app.name} side.")
    event.account = connection.account(side)
    if not posted:
        return _text(200, "ok")
    if len(body) > MAX_STORED_BODY:
        return _reject(event, 413, f"Body too large ({len(body)} bytes; limit {MAX_STORED_BODY}).")
    try:
        parsed = app.parse(delivery, connection.side_settings(side))
    except WebhookRejected as exc:
        return _refused(event, app, exc)
    _fill(event, app, parsed)
    with transaction.atomic():
        queued = _save_unless_repeat(event) and connection.state == Connection.State.ACTIVE
        if queued:
            actions.enqueue(connection, trigger=SyncRun.Trigger.WEBHOOK, on_commit=True)
    return _text(200, "ok: stored" + (", sync queued" if queued else ""))
