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
  ``/webhooks/<app>/<token>/``: the token (the connection's unguessable
  ``webhook_secret``) alone says which connection, so an unknown URL and a
  wrong one get the same 404. ``check_methods`` (Mailchimp's GET) only
  check the URL. The delivery queues a run of its connection, which lists the
  app's changes itself: a run that succeeds has read it (``mark_read``).
  The older ``/webhooks/<app>/<connection id>/<token>/`` still works (for
  webhooks registered before; ``register_webhooks`` replaces them), with
  the same 404 for anything that does not match.

Every delivery is stored as a ``WebhookEvent`` (the inbox, read-only in the
admin) before the reply: accepted ones as ``received``, refused ones as
``rejected`` with the reason in ``error``, repeats and events that are not
about contacts as ``ignored``. The stored body is capped at
``MAX_STORED_BODY`` (a rejected one keeps a ``REJECTED_EXCERPT``), tokens it
carried are masked, and every value is made storable (NUL escaped, lone
surrogates escaped, cut to the column's size).

Hostile input: whatever the body, the view answers a 4xx, never a 500 (a
parser that fails in a way it did not foresee is a malformed delivery too).
Rejected deliveries are bounded per client address (an IPv6 address counts
by its /64): past ``WEBHOOK_REJECTED_PER_SOURCE`` in the last
``WEBHOOK_REJECTED_WINDOW_MINUTES`` (or ``WEBHOOK_REJECTED_TOTAL`` from all
sources) a refused delivery gets a 429 and is not stored; accepted
deliveries are never throttled. ``purge_inbox`` (a daily schedule, see
``connections.schedules``) deletes processed and ignored deliveries after
``WEBHOOK_RETENTION_DAYS`` and rejected ones after
``WEBHOOK_REJECTED_RETENTION_DAYS``; received ones wait for the engine.

Repeats: apps deliver at least once. An identical delivery (same source,
account or connection, event type, contact and body) within
``REPEAT_WINDOW`` is stored as ``ignored`` and queues nothing. Should a repeat
get through anyway (outside the window, or two copies racing) nothing bad
happens: the engine fetches the contact fresh and plans it against the base
in its binding, so the second pass finds nothing to write.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
import re
from collections.abc import Callable
from functools import cache
from typing import Any, TypeVar

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
#: what a rejected delivery keeps of its body (characters)
REJECTED_EXCERPT = 1024
#: an identical delivery within this window is a repeat
REPEAT_WINDOW = dt.timedelta(minutes=10)
#: a ``Scope.CONNECTION`` URL's token (``secrets.token_urlsafe``)
_URL_TOKEN = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
#: stored in the inbox's ``error`` and answered for any URL token that does
#: not name a connection: the same for a wrong one and an unknown one
UNKNOWN_URL = "Unknown webhook URL."

T = TypeVar("T")


def inbox_limits() -> dict[str, int]:
    """The inbox's bounds, from the settings (``driftsync/settings.py``)."""
    return {
        "per_source": int(getattr(settings, "WEBHOOK_REJECTED_PER_SOURCE", 60)),
        "total": int(getattr(settings, "WEBHOOK_REJECTED_TOTAL", 600)),
        "window_minutes": int(getattr(settings, "WEBHOOK_REJECTED_WINDOW_MINUTES", 10)),
        "retention_days": int(getattr(settings, "WEBHOOK_RETENTION_DAYS", 30)),
        "rejected_retention_days": int(getattr(settings, "WEBHOOK_REJECTED_RETENTION_DAYS", 7)),
    }


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


def purge_inbox() -> dict[str, int]:
    """Delete deliveries older than their retention (the daily schedule
    ``driftsync-webhook-purge`` calls this); a retention of 0 keeps them.
    Received deliveries are kept: the engine has yet to read them."""
    limits = inbox_limits()
    now = timezone.now()
    kept = {
        "processed": (
            [WebhookEvent.Status.PROCESSED, WebhookEvent.Status.IGNORED],
            limits["retention_days"],
        ),
        "rejected": ([WebhookEvent.Status.REJECTED], limits["rejected_retention_days"]),
    }
    deleted = {}
    for name, (statuses, days) in kept.items():
        deleted[name] = 0
        if days <= 0:
            continue
        old = WebhookEvent.objects.filter(
            status__in=statuses, received_at__lt=now - dt.timedelta(days=days)
        )
        while batch := list(old.values_list("pk", flat=True)[:1000]):
            deleted[name] += WebhookEvent.objects.filter(pk__in=batch).delete()[0]
    if any(deleted.values()):
        log.info("webhook inbox purged: %s", deleted)
    return deleted


# ---------------------------------------------------------------- storing


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def storable(text: str) -> str:
    """Text any database can keep: NUL (PostgreSQL text cannot hold it) and
    lone surrogates (no UTF-8 for them) escaped, visibly."""
    text = text.replace("\x00", "\\x00")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-8", "backslashreplace").decode("utf-8")
    return text


def _make_storable(event: WebhookEvent) -> None:
    """Every text column of the row, storable and cut to its size."""
    for field in WebhookEvent._meta.concrete_fields:
        value = getattr(event, field.attname)
        if isinstance(value, str):
            value = storable(value)
            if field.max_length:
                value = value[: field.max_length]
            setattr(event, field.attname, value)


def _body_text(body: bytes, secrets: tuple[str, ...] = ()) -> str:
    # masked before it is cut, so no cut can leave part of a secret
    text = body[: MAX_STORED_BODY + 1024].decode("utf-8", "replace")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return storable(text)[:MAX_STORED_BODY]


def client_key(request: HttpRequest) -> str:
    """Who sent it, for the rate limit: the client address (an IPv6 address
    by its /64, which one client usually holds whole); "" when unknown."""
    try:
        address = ipaddress.ip_address(str(request.META.get("REMOTE_ADDR") or "").strip())
    except ValueError:
        return ""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _over_limit(key: str) -> bool:
    """Has this client (or everyone) had too many deliveries rejected lately?"""
    limits = inbox_limits()
    since = timezone.now() - dt.timedelta(minutes=limits["window_minutes"])
    recent = WebhookEvent.objects.filter(
        status=WebhookEvent.Status.REJECTED, received_at__gte=since
    )
    per_source, total = limits["per_source"], limits["total"]
    if per_source > 0 and recent.filter(client=key)[:per_source].count() >= per_source:
        return True
    return total > 0 and recent[:total].count() >= total


def _delivery(request: HttpRequest, body: bytes, url_secret: str = "") -> Delivery:
    return Delivery(body, request.content_type or "", dict(request.headers), url_secret)


def _read(app: WebhookApp, step: Callable[..., T], *args: Any) -> T:
    """One of the app's pure steps; any failure it did not foresee is a
    malformed delivery (hostile input never makes a 500)."""
    try:
        return step(*args)
    except WebhookRejected:
        raise
    except Exception as exc:
        log.warning("%s webhook: unreadable delivery (%s)", app.key, type(exc).__name__)
        raise Malformed(f"the body could not be read ({type(exc).__name__}).") from exc


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
    _make_storable(event)
    if event.status == WebhookEvent.Status.RECEIVED:
        earlier = _is_repeat(event)
        if earlier is not None:
            event.status = WebhookEvent.Status.IGNORED
            event.error = f"Repeat of delivery #{earlier.pk}; nothing queued."
    event.save()
    return event.status == WebhookEvent.Status.RECEIVED


def _reject(event: WebhookEvent, status: int, reason: str) -> HttpResponse:
    """Store the refusal (an excerpt of the body) and answer ``status``; a
    client over the rate limit gets a 429 and nothing is stored."""
    if _over_limit(event.client):
        log.debug("%s webhook rejected (%s), not stored: rate limit", event.source, status)
        return _text(429, "Too many refused deliveries; try again later.")
    event.status = WebhookEvent.Status.REJECTED
    event.error = reason
    event.body = event.body[:REJECTED_EXCERPT]
    _make_storable(event)
    event.save()
    log.warning("%s webhook rejected (%s): %s", event.source, status, storable(reason))
    return _text(status, storable(reason))


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
    event.occurred_at = first.occurred_at


def _for_account(event: WebhookEvent, account: Account) -> WebhookEvent:
    return WebhookEvent(
        source=event.source,
        client=event.client,
        account=account,
        event_type=event.event_type,
        kind=event.kind,
        contact_id=event.contact_id,
        new_contact_id=event.new_contact_id,
        occurred_at=event.occurred_at,
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
    event = WebhookEvent(
        source=app.key, client=client_key(request), body=_body_text(body, (expected,))
    )
    if len(body) > MAX_STORED_BODY:
        return _reject(event, 413, f"Body too large ({len(body)} bytes; limit {MAX_STORED_BODY}).")
    delivery = _delivery(request, body)
    try:
        envelope = _read(app, app.verify, delivery, expected)
    except WebhookRejected as exc:
        event.body = _body_text(body, (expected, *exc.secrets))
        return _refused(event, app, exc)
    event.event_type = envelope.event_type[:60]
    event.body = _body_text(body, (expected, *envelope.secrets))
    ref = str(envelope.account_ref or "")
    if not ref or storable(ref) != ref:
        return _refused(event, app, Malformed(f"no usable {app.account_label} id."))
    accounts = list(Account.objects.filter(connector=app.key, remote_id=ref))
    if not accounts:
        return _reject(
            event,
            404,
            f"Unknown {app.name} {app.account_label} {ref}: no {app.name} account has that id.",
        )
    event.account = accounts[0]
    try:
        parsed = _read(app, app.parse, delivery, {})
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


def _connection_by_token(token: str, connection_id: int | None) -> Connection | None:
    """The connection whose URL token this is (and, on an old-style URL,
    whose id it names too); None for anything else."""
    if not _URL_TOKEN.match(token):
        return None
    connection = (
        Connection.objects.select_related("account_a", "account_b")
        .filter(webhook_secret=token)
        .first()
    )
    if connection is None or (connection_id is not None and connection.pk != connection_id):
        return None
    return connection


@csrf_exempt
def connection_webhook(
    request: HttpRequest, key: str, token: str, connection_id: int | None = None
) -> HttpResponse:
    """``/webhooks/<app>/<token>/`` (``Scope.CONNECTION``): the token is the
    connection's ``webhook_secret`` and alone names the connection; any
    token that does not is the same 404. ``connection_id``: the old-style
    URL ``/webhooks/<app>/<connection id>/<token>/``. The app's
    ``check_methods`` (Mailchimp's GET when the webhook is registered) only
    check the URL."""
    app = webhook_apps()[key]
    if (refused := _not_allowed(request, app)) is not None:
        return refused
    posted = request.method == "POST"
    body = request.body if posted else b""
    event = WebhookEvent(
        source=app.key,
        client=client_key(request),
        body=_body_text(body, (token,)),
        event_type="" if posted else "url check",
    )
    connection = _connection_by_token(token, connection_id)
    if connection is None:
        return _reject(event, 404, UNKNOWN_URL)
    event.connection = connection
    delivery = _delivery(request, body, url_secret=token)
    try:
        _read(app, app.verify, delivery, connection.webhook_secret)
    except WebhookRejected as exc:
        return _refused(event, app, exc)
    side = next((s for s in ("a", "b") if connection.account(s).connector == app.key), None)
    if side is None:
        return _reject(event, 404, f"Connection {connection.pk} has no {app.name} side.")
    event.account = connection.account(side)
    if not posted:
        return _text(200, "ok")
    if len(body) > MAX_STORED_BODY:
        return _reject(event, 413, f"Body too large ({len(body)} bytes; limit {MAX_STORED_BODY}).")
    try:
        parsed = _read(app, app.parse, delivery, connection.side_settings(side))
    except WebhookRejected as exc:
        return _refused(event, app, exc)
    _fill(event, app, parsed)
    with transaction.atomic():
        queued = _save_unless_repeat(event) and connection.state == Connection.State.ACTIVE
        if queued:
            actions.enqueue(connection, trigger=SyncRun.Trigger.WEBHOOK, on_commit=True)
    return _text(200, "ok: stored" + (", sync queued" if queued else ""))
