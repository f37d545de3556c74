"""Drift's webhooks, verified and parsed as pure functions: no database, no
HTTP. Bodies are stored fixtures in ``fixtures/drift``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from connectors.drift import webhooks
from connectors.webhooks import Delivery, Malformed, NotConfigured, Unverified

FIXTURES = Path(__file__).parent / "fixtures" / "drift"
TOKEN = "vtok-123"


def load(name: str, **changes: Any) -> bytes:
    body = (FIXTURES / name).read_bytes()
    if not changes:
        return body
    payload = json.loads(body)
    payload.update(changes)
    return json.dumps(payload).encode()


def delivery(body: bytes, header: str | None = TOKEN) -> Delivery:
    headers = {"X-Verification-Token": header} if header is not None else {}
    return Delivery(body, "application/json", headers)


# -- verifying -------------------------------------------------------------


def test_a_delivery_with_the_token_in_body_and_header_is_for_its_org() -> None:
    envelope = webhooks.verify(delivery(load("contact_identified.json")), TOKEN)
    assert envelope.event_type == "contact_identified"
    assert envelope.account_ref == "1234"
    assert envelope.secrets == (TOKEN,)


def test_the_header_is_found_whatever_its_case() -> None:
    body = load("contact_identified.json")
    lower = Delivery(body, "application/json", {"x-verification-token": TOKEN})
    assert webhooks.verify(lower, TOKEN).account_ref == "1234"


def test_the_org_may_be_given_inside_data_only() -> None:
    body = json.loads(load("contact_updated.json"))
    del body["orgId"]
    assert webhooks.verify(delivery(json.dumps(body).encode()), TOKEN).account_ref == "1234"


@pytest.mark.parametrize(
    ("body_token", "header", "reason"),
    [
        ("wrong", TOKEN, "Verification token in the body does not match"),
        ("", TOKEN, "Verification token in the body does not match"),
        (TOKEN, "wrong", "X-Verification-Token header does not match"),
        (TOKEN, None, "X-Verification-Token header does not match"),
    ],
)
def test_a_token_mismatch_is_refused_with_what_was_read(
    body_token: str, header: str | None, reason: str
) -> None:
    body = load("contact_identified.json", token=body_token)
    with pytest.raises(Unverified) as refused:
        webhooks.verify(delivery(body, header), TOKEN)
    assert reason in refused.value.reason
    assert refused.value.http_status == 403
    assert refused.value.event_type == "contact_identified"
    assert refused.value.secrets == ((body_token,) if body_token else ())


def test_without_an_expected_token_nothing_is_accepted() -> None:
    with pytest.raises(NotConfigured) as refused:
        webhooks.verify(delivery(load("contact_identified.json")), "")
    assert refused.value.http_status == 503
    assert "DRIFT_VERIFICATION_TOKEN is not configured" in refused.value.reason


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b'{"type": "contact_identified", "token": "vtok-123", ', "not JSON"),
        (b"", "not JSON"),
        (b"[1, 2, 3]", 'not an object with a "type"'),
        (b'{"token": "vtok-123", "orgId": 1234, "data": {}}', 'not an object with a "type"'),
        (b'{"type": "contact_identified", "token": "vtok-123", "data": {"id": 1}}', "no orgId"),
        (b'{"type": "contact_identified", "token": "vtok-123", "orgId": [1]}', "orgId is not"),
        (b'{"type": "contact_identified", "token": "vtok-123", "orgId": "1\\u0000"}', "orgId"),
        (b'{"type": "contact_identified", "token": "vtok-123", "orgId": true}', "orgId is not"),
        (b'{"type": "x\\u0000", "token": "vtok-123", "orgId": 1}', "not an event name"),
        (b'{"type": ""}', "not an event name"),
        (b'{"type": "x", "data": ' + b"[" * 10_000 + b"]" * 10_000 + b"}", "nested too deeply"),
    ],
)
def test_a_malformed_envelope_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as refused:
        webhooks.verify(delivery(body), TOKEN)
    assert reason in refused.value.reason
    assert refused.value.http_status == 400


def test_a_bad_token_is_refused_before_a_missing_org() -> None:
    body = b'{"type": "contact_identified", "token": "nope", "data": {"id": 1}}'
    with pytest.raises(Unverified):
        webhooks.verify(delivery(body), TOKEN)


# -- parsing ---------------------------------------------------------------


def test_contact_identified_names_the_contact_and_carries_its_record() -> None:
    parsed = webhooks.parse(delivery(load("contact_identified.json")))
    assert parsed.event_type == "contact_identified"
    [event] = parsed.events
    assert (event.kind, event.contact_id, event.email) == (
        "identified",
        "16344778575",
        "newcontact@email.com",
    )
    assert event.record is not None
    assert event.record["attributes"]["name"] == "New Contact"
    assert event.occurred_at is not None
    assert (event.new_contact_id, event.unsubscribed, event.deleted) == (None, False, False)


def test_contact_updated_names_the_contact_for_the_engine_to_read() -> None:
    [event] = webhooks.parse(delivery(load("contact_updated.json"))).events
    assert (event.kind, event.contact_id, event.record) == ("updated", "16344778575", None)
    assert event.email == "renamed@email.com"
    assert event.occurred_at is not None
    assert event.occurred_at.year == 2022


def test_user_unsubscribed_is_an_unsubscribe() -> None:
    [event] = webhooks.parse(delivery(load("user_unsubscribed.json"))).events
    assert (event.kind, event.contact_id) == ("unsubscribed", "16344778575")
    assert event.unsubscribed
    assert event.email == "newcontact@email.com"


def test_conversation_events_parse_to_nothing() -> None:
    parsed = webhooks.parse(delivery(load("new_message.json")))
    assert (parsed.event_type, parsed.events) == ("new_message", ())


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ((FIXTURES / "updated_without_contact.json").read_bytes(), "without an endUserId"),
        (b'{"type": "contact_identified", "orgId": 1, "data": 5}', "without a data object"),
        (b'{"type": "contact_identified", "orgId": 1, "data": {}}', "without a contact id"),
        (b"not json", "not JSON"),
        (b'{"type": "contact_identified", "data": {"id": 1, "attributes": "x"}}', "attributes"),
        (b'{"type": "contact_identified", "data": {"id": 1, "attributes": []}}', "attributes"),
        (b'{"type": "contact_identified", "data": {"id": [1]}}', "contact id is not an id"),
        (b'{"type": "contact_identified", "data": {"id": 1.5e300}}', "contact id is not an id"),
        (b'{"type": "contact_identified", "data": {"id": 1, "email": 5}}', "not an email"),
        (b'{"type": "contact_updated", "data": {"endUserId": 1, "diff": 5}}', '"diff"'),
        (b'{"type": "contact_updated", "data": {"endUserId": "1\\u0000"}}', "endUserId"),
        (
            b'{"type": "contact_updated", "data": {"endUserId": 1, "diff": '
            b'[{"name": "attributes.email", "updated": {"a": 1}}]}}',
            "not an email",
        ),
    ],
)
def test_a_malformed_event_is_refused(body: bytes, reason: str) -> None:
    with pytest.raises(Malformed) as refused:
        webhooks.parse(delivery(body))
    assert reason in refused.value.reason


def test_drift_declares_an_app_wide_url_checked_against_its_token_setting() -> None:
    from connectors.drift.connector import DriftConnector
    from connectors.webhooks import Scope

    assert DriftConnector.webhooks is webhooks.WEBHOOKS
    assert webhooks.WEBHOOKS.scope == Scope.ACCOUNT
    assert webhooks.WEBHOOKS.secret_setting == "DRIFT_VERIFICATION_TOKEN"
    assert webhooks.WEBHOOKS.check_methods == ()
