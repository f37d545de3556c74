"""Inbound webhooks: verify, store, queue a run. Never sync inside a request.

Every delivery is stored as a ``WebhookEvent`` (the inbox, read-only in the
admin) before anything else happens: accepted ones as ``received``, refused
ones as ``rejected`` with the reason in ``error``, repeats and events that are
not about contacts as ``ignored``. The stored body is capped at
``MAX_STORED_BODY`` and Drift's verification token is masked in it.

Repeats: Drift and Mailchimp deliver at least once. An identical delivery
(same source, account or connection, event type, contact and body) within
``REPEAT_WINDOW`` is stored as ``ignored`` and queues nothing. Should a repeat
get through anyway (outside the window, or two copies racing) nothing bad
happens: the engine fetches the contact fresh and plans it against the base
in its binding, so the second pass finds nothing to write.
"""

from __future__ import annotations

import datetime as dt
import hmac
import logging
import os
from urllib.parse import parse_qsl

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.http import HttpRequest, HttpResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods

from connectors.base import ConnectorError, InboxEvent
from connectors.drift.connector import DriftConnector

from .models import Account, Connection, SyncRun, WebhookEvent
from .tasks import enqueue_sync_on_commit

log = logging.getLogger(__name__)

#: bodies larger than this are refused (413); stored bodies are cut to it
MAX_STORED_BODY = 64 * 1024
#: an identical delivery within this window is a repeat
REPEAT_WINDOW = dt.timedelta(minutes=10)
#: Mailchimp events that carry a member's email in ``data[email]``
CONTACT_EVENTS = ("subscribe", "unsubscribe", "profile", "cleaned")


def drift_verification_token() -> str:
    return str(
        getattr(settings, "DRIFT_VERIFICATION_TOKEN", None)
        or os.environ.get("DRIFT_VERIFICATION_TOKEN", "")
    )


def _text(status: int, message: str) -> HttpResponse:
    return HttpResponse(message + "\n", status=status, content_type="text/plain; charset=utf-8")


def _body_text(body: bytes, secrets: tuple[str, ...] = ()) -> str:
    # PostgreSQL text cannot hold NUL: keep it visible, escaped
    text = body[:MAX_STORED_BODY].decode("utf-8", "replace").replace("\x00", "\\x00")
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text


def _is_repeat(event: WebhookEvent) -> WebhookEvent | None:
    since = timezone.now() - REPEAT_WINDOW
    # Mailchimp deliveries belong to one connection, Drift's to the org's account
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


def _reject(event: WebhookEvent, status: int, reason: str) -> HttpResponse:
    event.status = WebhookEvent.Status.REJECTED
    event.error = reason.replace("\x00", "\\x00")
    event.save()
    log.warning("%s webhook rejected (%s): %s", event.source, status, reason)
    return _text(status, reason)


def _fill(event: WebhookEvent, parsed: list[InboxEvent], what: str) -> None:
    """Kind, contact and email from the connector's reading of the body."""
    if not parsed:
        event.status = WebhookEvent.Status.IGNORED
        event.error = f"{what} is not about a contact this connection syncs; nothing to do."
        return
    first = parsed[0]
    event.kind = first.kind[:20]
    event.contact_id = (first.contact_id or "")[:200]
    event.email = (first.email or "")[:320]


# ------------------------------------------------------------------ Drift


@csrf_exempt
@require_http_methods(["POST"])
def drift_webhook(request: HttpRequest) -> HttpResponse:
    """``POST /webhooks/drift/``: the one URL of the Drift app, for every org
    that installed it. The org is told by ``orgId``."""
    body = request.body
    expected = drift_verification_token()
    event = WebhookEvent(source=DriftConnector.key, body=_body_text(body, (expected,)))
    if len(body) > MAX_STORED_BODY:
        return _reject(event, 413, f"Body too large ({len(body)} bytes; limit {MAX_STORED_BODY}).")
    try:
        payload = DriftConnector.webhook_payload(body)
    except ConnectorError as exc:
        return _reject(event, 400, f"Malformed Drift webhook: {exc.message}")
    event.event_type = str(payload["type"])[:60]
    body_token, header_token = DriftConnector.webhook_token(payload, request.headers)
    event.body = _body_text(body, (expected, body_token))
    if not expected:
        return _reject(
            event, 503, "DRIFT_VERIFICATION_TOKEN is not configured; cannot verify Drift webhooks."
        )
    if not hmac.compare_digest(body_token.encode(), expected.encode()):
        return _reject(event, 403, "Verification token in the body does not match.")
    if not hmac.compare_digest(header_token.encode(), expected.encode()):
        return _reject(event, 403, "X-Verification-Token header does not match.")
    org_id = DriftConnector.webhook_org_id(payload)
    if org_id is None:
        return _reject(event, 400, "Malformed Drift webhook: no orgId.")
    accounts = list(Account.objects.filter(connector=DriftConnector.key, remote_id=org_id))
    if not accounts:
        return _reject(event, 404, f"Unknown Drift org {org_id}: no Drift account has that id.")
    event.account = accounts[0]
    try:
        parsed = (
            accounts[0]
            .build_connector()
            .parse_webhook(body, request.content_type or "", dict(request.headers))
        )
    except ConnectorError as exc:
        return _reject(event, 400, f"Malformed Drift webhook: {exc.message}")
    _fill(event, parsed, f"Drift event {event.event_type!r}")
    queued = 0
    with transaction.atomic():
        # one inbox row per Drift account of that org (the same org may be
        # connected twice, e.g. once against a proxy)
        for account in accounts:
            row = WebhookEvent(
                source=event.source,
                account=account,
                event_type=event.event_type,
                kind=event.kind,
                contact_id=event.contact_id,
                email=event.email,
                body=event.body,
                status=event.status,
                error=event.error,
            )
            if row.status == WebhookEvent.Status.RECEIVED:
                earlier = _is_repeat(row)
                if earlier is not None:
                    row.status = WebhookEvent.Status.IGNORED
                    row.error = f"Repeat of delivery #{earlier.pk}; nothing queued."
            row.save()
            if row.status != WebhookEvent.Status.RECEIVED:
                continue
            for connection in Connection.objects.filter(
                Q(account_a=account) | Q(account_b=account), state=Connection.State.ACTIVE
            ):
                enqueue_sync_on_commit(connection, trigger=SyncRun.Trigger.WEBHOOK)
                queued += 1
    return _text(200, f"ok: stored, {queued} sync(s) queued")


# -------------------------------------------------------------- Mailchimp


@csrf_exempt
@require_http_methods(["GET", "HEAD", "POST"])
def mailchimp_webhook(request: HttpRequest, connection_id: int, secret: str) -> HttpResponse:
    """``/webhooks/mailchimp/<connection id>/<secret>/``: Mailchimp signs
    nothing, so the URL carries the connection's ``webhook_secret``. A GET is
    Mailchimp checking the URL when the webhook is registered."""
    body = request.body if request.method == "POST" else b""
    event = WebhookEvent(
        source="mailchimp",
        body=_body_text(body),
        event_type="" if request.method == "POST" else "url check",
    )
    connection = (
        Connection.objects.select_related("account_a", "account_b").filter(pk=connection_id).first()
    )
    if connection is None:
        return _reject(event, 404, f"Unknown connection {connection_id}.")
    event.connection = connection
    if not hmac.compare_digest(secret.encode(), connection.webhook_secret.encode()):
        return _reject(event, 403, "Wrong secret in the webhook URL for this connection.")
    side = next((s for s in ("a", "b") if connection.account(s).connector == "mailchimp"), None)
    if side is None:
        return _reject(event, 404, f"Connection {connection_id} has no Mailchimp side.")
    account = connection.account(side)
    event.account = account
    if request.method != "POST":
        return _text(200, "ok")
    if len(body) > MAX_STORED_BODY:
        return _reject(event, 413, f"Body too large ({len(body)} bytes; limit {MAX_STORED_BODY}).")
    try:
        form = dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as exc:
        return _reject(event, 400, f"Malformed Mailchimp webhook: not a form body ({exc}).")
    kind = form.get("type", "")
    if not kind:
        return _reject(event, 400, 'Malformed Mailchimp webhook: no "type" field.')
    event.event_type = kind[:60]
    if kind == "upemail" and not form.get("data[new_email]"):
        return _reject(
            event, 400, 'Malformed Mailchimp webhook: upemail without "data[new_email]".'
        )
    if kind in CONTACT_EVENTS and not (form.get("data[email]") or form.get("data[merges][EMAIL]")):
        return _reject(event, 400, f'Malformed Mailchimp webhook: {kind} without "data[email]".')
    try:
        parsed = account.build_connector(connection.side_settings(side)).parse_webhook(
            body, request.content_type or "", dict(request.headers)
        )
    except ConnectorError as exc:
        return _reject(event, 400, f"Malformed Mailchimp webhook: {exc.message}")
    _fill(event, parsed, f"Mailchimp event {kind!r}")
    with transaction.atomic():
        if event.status == WebhookEvent.Status.RECEIVED:
            earlier = _is_repeat(event)
            if earlier is not None:
                event.status = WebhookEvent.Status.IGNORED
                event.error = f"Repeat of delivery #{earlier.pk}; nothing queued."
        event.save()
        queued = (
            event.status == WebhookEvent.Status.RECEIVED
            and connection.state == Connection.State.ACTIVE
        )
        if queued:
            enqueue_sync_on_commit(connection, trigger=SyncRun.Trigger.WEBHOOK)
    return _text(200, "ok: stored" + (", sync queued" if queued else ""))
