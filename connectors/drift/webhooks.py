"""Drift's webhooks: one URL for the Drift app, for every org that installed it.

A JSON body ``{"type", "token", "orgId", "data"}``; the app's verification
token is in the body's ``token`` and in the ``X-Verification-Token`` header,
and both must match. ``orgId`` says whose account. Drift also sends
conversation events to the same URL: they parse to no events.
"""

from __future__ import annotations

import datetime as dt
import hmac
import json
import re
from collections.abc import Mapping
from typing import Any

from ..base import clean_text, epoch_ms_to_datetime
from ..webhooks import (
    Delivery,
    Envelope,
    Malformed,
    NotConfigured,
    Parsed,
    ParsedEvent,
    Scope,
    Unverified,
    WebhookApp,
)

#: the Drift app's verification token (a setting, or the environment)
SECRET_SETTING = "DRIFT_VERIFICATION_TOKEN"
TOKEN_HEADER = "X-Verification-Token"

KINDS = {
    "contact_identified": "identified",
    "contact_updated": "updated",
    "user_unsubscribed": "unsubscribed",
}


#: ids, event types and emails: no control characters (NUL above all: a
#: database text column cannot hold it), and a sane length
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
MAX_ID = 200
MAX_EMAIL = 320


def payload(body: bytes) -> dict[str, Any]:
    try:
        data: Any = json.loads(body or b"")
    except (ValueError, RecursionError) as exc:
        # RecursionError: nested deeper than the decoder goes
        reason = str(exc) if isinstance(exc, ValueError) else "nested too deeply"
        raise Malformed(f"Drift webhook body is not JSON: {reason}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise Malformed('Drift webhook body is not an object with a "type"')
    if not data["type"] or len(data["type"]) > 60 or _CONTROL.search(data["type"]):
        raise Malformed('Drift webhook "type" is not an event name')
    return data


def _id(value: Any, what: str, event_type: str) -> str:
    """An id as Drift sends it: a number or a short string."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise Malformed(f"{what} is not an id", event_type=event_type)
    text = str(value).strip()
    if not text or len(text) > MAX_ID or _CONTROL.search(text):
        raise Malformed(f"{what} is not an id", event_type=event_type)
    return text


def _email(value: Any, what: str, event_type: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > MAX_EMAIL or _CONTROL.search(value):
        raise Malformed(f"{what} is not an email address", event_type=event_type)
    return clean_text(value)


def tokens(delivery: Delivery) -> tuple[str, str]:
    """The verification token in the body and in the header."""
    return str(payload(delivery.body).get("token") or ""), delivery.header(TOKEN_HEADER)


def org_id(data: Mapping[str, Any]) -> str | None:
    """One Drift app URL serves every org that installed it: this says whose.
    Raises ``Malformed`` when it is there but not an id."""
    inner = data.get("data")
    org = data.get("orgId")
    if org in (None, "") and isinstance(inner, dict):
        org = inner.get("orgId")
    if org in (None, ""):
        return None
    return _id(org, "orgId", str(data.get("type") or "")[:60])


def verify(delivery: Delivery, expected: str) -> Envelope:
    data = payload(delivery.body)
    event_type = data["type"][:60]
    body_token, header_token = tokens(delivery)
    secrets = (body_token,) if body_token else ()
    if not expected:
        raise NotConfigured(
            f"{SECRET_SETTING} is not configured; cannot verify Drift webhooks.",
            event_type=event_type,
            secrets=secrets,
        )
    if not hmac.compare_digest(body_token.encode(), expected.encode()):
        raise Unverified(
            "Verification token in the body does not match.",
            event_type=event_type,
            secrets=secrets,
        )
    if not hmac.compare_digest(header_token.encode(), expected.encode()):
        raise Unverified(
            f"{TOKEN_HEADER} header does not match.", event_type=event_type, secrets=secrets
        )
    org = org_id(data)
    if org is None:
        raise Malformed("no orgId.", event_type=event_type, secrets=secrets)
    return Envelope(event_type=event_type, account_ref=org, secrets=secrets)


def parse(delivery: Delivery, settings: Mapping[str, Any] | None = None) -> Parsed:
    data = payload(delivery.body)
    event_type = data["type"]
    kind = KINDS.get(event_type)
    if kind is None:
        return Parsed(event_type)  # the app's URL also receives conversation events
    record = data.get("data")
    if not isinstance(record, dict):
        raise Malformed(f"Drift {event_type} webhook without a data object", event_type=event_type)
    occurred = _epoch_or_none(data.get("createdAt") or record.get("timestamp"))
    if kind == "updated":
        contact_id = record.get("endUserId") or record.get("id")
        if contact_id in (None, ""):
            raise Malformed(
                "Drift contact_updated webhook without an endUserId", event_type=event_type
            )
        contact_id = _id(contact_id, "endUserId", event_type)
        diff = record.get("diff")
        if diff is not None and not isinstance(diff, list):
            raise Malformed('Drift contact_updated "diff" is not a list', event_type=event_type)
        email = None
        for change in diff or []:
            if isinstance(change, dict) and change.get("name") == "attributes.email":
                email = _email(change.get("updated"), "The updated email", event_type)
        event = ParsedEvent(kind, contact_id, email, occurred_at=occurred)
        return Parsed(event_type, (event,))
    if "id" not in record:
        raise Malformed(f"Drift {event_type} webhook without a contact id", event_type=event_type)
    contact_id = _id(record["id"], "The contact id", event_type)
    attributes = record.get("attributes")
    if "attributes" in record:
        if attributes is not None and not isinstance(attributes, dict):
            raise Malformed(
                f'Drift {event_type} "attributes" is not an object', event_type=event_type
            )
        email = _email((attributes or {}).get("email"), "The contact's email", event_type)
    else:
        email = _email(record.get("email"), "The contact's email", event_type)
    event = ParsedEvent(
        kind,
        contact_id,
        email,
        occurred_at=occurred,
        record=record if "attributes" in record else None,
        unsubscribed=kind == "unsubscribed",
    )
    return Parsed(event_type, (event,))


def _epoch_or_none(value: Any) -> dt.datetime | None:
    try:
        return epoch_ms_to_datetime(value)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


WEBHOOKS = WebhookApp(
    key="drift",
    name="Drift",
    scope=Scope.ACCOUNT,
    verify=verify,
    parse=parse,
    secret_setting=SECRET_SETTING,
    account_label="org",
)
