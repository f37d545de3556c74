"""Mailchimp's webhooks: one URL per connection, a secret in it.

Mailchimp signs nothing: the URL carries the connection's secret. It checks
the URL with a GET when the webhook is registered, then POSTs form-encoded
``type``, ``fired_at`` and ``data[...]`` fields. A member's id is the hash of
its email, so an email change (``upemail``) moves the member to a new id.
"""

from __future__ import annotations

import datetime as dt
import hmac
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl

from ..base import parse_iso_datetime
from ..webhooks import (
    Delivery,
    Envelope,
    Malformed,
    Parsed,
    ParsedEvent,
    Scope,
    Unverified,
    WebhookApp,
)
from .client import subscriber_hash

#: events that carry a member's email in ``data[email]``, and the kind each is
CONTACT_EVENTS = {
    "subscribe": "identified",
    "unsubscribe": "unsubscribed",
    "profile": "profile",
    "cleaned": "updated",
}
MERGES = "data[merges]["
#: event types and emails: no control characters (NUL above all: a database
#: text column cannot hold it), and a sane length
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_EMAIL = 320


def verify(delivery: Delivery, expected: str) -> Envelope:
    if not expected or not hmac.compare_digest(delivery.url_secret.encode(), expected.encode()):
        raise Unverified("Wrong secret in the webhook URL for this connection.")
    return Envelope()


def form(body: bytes) -> dict[str, str]:
    try:
        return dict(parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=True))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Malformed(f"not a form body ({exc}).") from exc


def parse(delivery: Delivery, settings: Mapping[str, Any] | None = None) -> Parsed:
    """``settings``: the connection side's; deliveries for another audience
    than its ``audience`` are about nothing it syncs."""
    fields = form(delivery.body)
    event_type = fields.get("type", "")
    if not event_type:
        raise Malformed('no "type" field.')
    if len(event_type) > 60 or _CONTROL.search(event_type):
        raise Malformed('"type" is not an event name.')
    for name in ("data[email]", "data[merges][EMAIL]", "data[new_email]", "data[old_email]"):
        value = fields.get(name, "")
        if len(value) > MAX_EMAIL or _CONTROL.search(value):
            raise Malformed(f'"{name}" is not an email address.', event_type=event_type)
    if event_type == "upemail" and not fields.get("data[new_email]"):
        raise Malformed('upemail without "data[new_email]".', event_type=event_type)
    email = fields.get("data[email]") or fields.get("data[merges][EMAIL]")
    if event_type in CONTACT_EVENTS and not email:
        raise Malformed(f'{event_type} without "data[email]".', event_type=event_type)
    audience = str((settings or {}).get("audience") or "")
    if audience and fields.get("data[list_id]") and fields["data[list_id]"] != audience:
        return Parsed(event_type)
    occurred = _fired_at(fields.get("fired_at"), event_type)
    if event_type == "upemail":
        old, new = fields.get("data[old_email]"), fields["data[new_email]"]
        new_id = subscriber_hash(new)
        # contact_id is the id the engine knows: the old email's hash
        event = ParsedEvent(
            "email_changed",
            subscriber_hash(old) if old else new_id,
            new,
            new_contact_id=new_id,
            occurred_at=occurred,
        )
        return Parsed(event_type, (event,))
    kind = CONTACT_EVENTS.get(event_type)
    if kind is None or not email:
        return Parsed(event_type)
    merges = {
        name[len(MERGES) : -1]: value
        for name, value in fields.items()
        if name.startswith(MERGES) and name.endswith("]")
    }
    deleted = event_type == "unsubscribe" and fields.get("data[action]") == "delete"
    event = ParsedEvent(
        "updated" if deleted else kind,
        subscriber_hash(email),
        email,
        occurred_at=occurred,
        record={
            tag: value
            for tag, value in merges.items()
            if tag and "][" not in tag and tag not in ("EMAIL", "INTERESTS")
        },
        unsubscribed=event_type == "unsubscribe" and not deleted,
        deleted=deleted,
    )
    return Parsed(event_type, (event,))


def _fired_at(value: str | None, event_type: str = "") -> dt.datetime | None:
    """Mailchimp's ``2009-03-26 21:35:57`` (UTC), or an ISO date and time; a
    value that is neither (or outside what a UTC time can be) is malformed."""
    if not value:
        return None
    try:
        return dt.datetime.strptime(value, "%Y-%m-%d %H:%M:%S").replace(tzinfo=dt.UTC)
    except ValueError:
        pass
    try:
        parsed = parse_iso_datetime(value)
        if parsed is not None:
            parsed.astimezone(dt.UTC)
        return parsed
    except (ValueError, OverflowError) as exc:
        shown = _CONTROL.sub("?", value[:40])
        raise Malformed(f'"fired_at" {shown!r} is not a date.', event_type=event_type) from exc


WEBHOOKS = WebhookApp(
    key="mailchimp",
    name="Mailchimp",
    scope=Scope.CONNECTION,
    verify=verify,
    parse=parse,
    check_methods=("GET", "HEAD"),
)
