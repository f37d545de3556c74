"""The Drift connector against its sandbox, over real HTTP on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.base import (
    AuthError,
    Capabilities,
    ContactRejected,
    ContactWrite,
    Credentials,
    FieldType,
    NotFound,
    PermanentError,
    Semantic,
)
from connectors.drift import webhooks as drift_webhooks
from connectors.drift.connector import DEFAULT_TAGS_ATTRIBUTE, LEGACY_TAGS, DriftConnector
from connectors.registry import default_mappings
from connectors.sandbox import serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl
from connectors.webhooks import Delivery
from tests.sandbox_limits import realistic

FIXTURES = Path(__file__).parent / "fixtures" / "drift"
PASTED_TOKEN = "drift-installed-app-token"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("drift",), tokens=(PASTED_TOKEN,))
    yield srv
    srv.stop()


@pytest.fixture
def sandbox(server: SandboxServer) -> SandboxControl:
    control = SandboxControl.of(server, "drift", timeout=10)
    control.call("POST", "/reset")
    realistic(control, "drift")
    return control


@pytest.fixture
def make(sandbox: SandboxControl) -> Callable[..., DriftConnector]:
    def build(settings: dict[str, Any] | None = None, *, pasted: bool = False) -> DriftConnector:
        if pasted:
            credentials = Credentials(api_key=PASTED_TOKEN)
        else:
            issued = sandbox.call("POST", "/tokens")
            credentials = Credentials(
                access_token=issued["access_token"],
                refresh_token=issued["refresh_token"],
                expires_at=time.time() + issued["expires_in"],
            )
        connector = DriftConnector(credentials, settings, base_url=sandbox.base_url)
        connector.http.backoff_base = 0.01
        return connector

    return build


@pytest.fixture
def drift(make: Callable[..., DriftConnector]) -> DriftConnector:
    return make()


def create(drift: DriftConnector, email: str | None, **fields: Any) -> str:
    tags = frozenset(fields.pop("tags", ()))
    [result] = drift.write_contacts([ContactWrite(None, email, fields, add_tags=tags)])
    assert result.ok, result.error
    assert result.contact is not None
    return result.contact.id


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


# -- account and schema ------------------------------------------------------


def test_check_names_the_org_the_token_belongs_to(drift: DriftConnector) -> None:
    info = drift.check()
    assert info.remote_id == "1234"
    assert "contact_write" in info.extra["scope"]


def test_a_pasted_install_token_works_without_refresh(make: Callable[..., DriftConnector]) -> None:
    drift = make(pasted=True)
    assert drift.http.refresher is None
    assert drift.check().remote_id == "1234"


def test_capabilities_say_drift_cannot_list_but_sends_webhooks() -> None:
    assert DriftConnector.capabilities == Capabilities(
        list_changes=False,
        detect_deletions=False,
        detect_unsubscribes=True,
        tags=True,
        webhooks=True,
        batch_writes=False,
        custom_fields=True,
    )
    assert DriftConnector.write_batch_size == 1


def test_changes_refuses_because_drift_has_no_list_endpoint(drift: DriftConnector) -> None:
    with pytest.raises(PermanentError):
        next(iter(drift.changes(None)))


def test_fields_pair_standard_attributes_and_type_custom_ones(drift: DriftConnector) -> None:
    fields = {f.key: f for f in drift.fields()}
    assert fields["email"].semantic == Semantic.EMAIL
    assert fields["name"].semantic == Semantic.FULL_NAME
    assert fields["phone"].semantic == Semantic.PHONE
    assert fields["company"].semantic == Semantic.COMPANY
    assert fields["title"].semantic == Semantic.TITLE
    assert fields["lead_stage"].semantic == Semantic.LEAD_STAGE
    assert not fields["lead_stage"].custom
    assert fields["cql"].type == FieldType.NUMBER
    assert fields["start_date"].read_only
    assert (fields["industry"].type, fields["industry"].custom) == (FieldType.TEXT, True)
    assert fields["employees"].type == FieldType.NUMBER
    assert fields["is_customer"].type == FieldType.BOOLEAN
    assert fields["renewal_date"].type == FieldType.DATE
    assert fields["last_demo_at"].type == FieldType.DATETIME
    assert not any(key in fields for key in ("tags", "socialProfiles", "events"))
    # Drift keeps one full name: no virtual first+last field
    assert not any(f.is_virtual for f in fields.values())


def test_default_mappings_pair_drifts_full_name_with_a_full_name(drift: DriftConnector) -> None:
    pairs = default_mappings(drift.fields(), drift.fields())
    assert ("name", "name") in pairs
    assert ("lead_stage", "lead_stage") in pairs


def test_side_options_offer_text_attributes_to_hold_tags(drift: DriftConnector) -> None:
    choices = drift.side_options()["tags_attribute"]
    options = dict(choices)
    assert choices[0][0] == DEFAULT_TAGS_ATTRIBUTE  # Drift replaced tags with attributes
    assert LEGACY_TAGS in options
    assert "industry" in options
    assert "employees" not in options


# -- writing and reading ---------------------------------------------------


def test_create_writes_attributes_and_tags_and_returns_the_contact_as_written(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    [result] = drift.write_contacts(
        [
            ContactWrite(
                None,
                "ann@example.com",
                {"name": "Ann Lee", "lead_stage": "MQL", "employees": 12, "is_customer": True},
                add_tags=frozenset({"vip", "chat"}),
                ref="r1",
            )
        ]
    )
    assert result.ok
    assert result.ref == "r1"
    contact = result.contact
    assert contact is not None
    assert contact.email == "ann@example.com"
    assert contact.fields["name"] == "Ann Lee"
    assert contact.fields["employees"] == 12
    assert contact.fields["is_customer"] is True
    assert contact.tags == {"vip", "chat"}
    assert contact.created_at is not None
    assert contact.version
    native = sandbox.native(contact.id)
    assert native["attributes"]["lead_stage"] == "MQL"
    assert native["attributes"][DEFAULT_TAGS_ATTRIBUTE] == "chat, vip"
    assert native["attributes"]["tags"] == []
    assert sandbox.stats()["POST /contacts"] == 1


def test_dates_and_datetimes_travel_as_epoch_milliseconds(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    contact_id = create(
        drift, "d@example.com", renewal_date="2024-05-01", last_demo_at="2024-05-01T10:30:00Z"
    )
    attributes = sandbox.native(contact_id)["attributes"]
    assert attributes["renewal_date"] == 1714521600000
    assert attributes["last_demo_at"] == 1714559400000
    drift.fields()  # types known: values come back canonical
    read = drift.get_contacts([contact_id])[contact_id]
    assert read.fields["renewal_date"] == "2024-05-01"
    assert read.fields["last_demo_at"] == "2024-05-01T10:30:00Z"


def test_creating_a_taken_email_returns_the_existing_contact(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    existing = sandbox.create(email="taken@example.com", first_name="Old", last_name="Timer")
    [result] = drift.write_contacts([ContactWrite(None, "Taken@Example.com", {"name": "New"})])
    assert result.ok
    assert result.contact is not None
    assert result.contact.id == existing
    assert result.contact.fields["name"] == "Old Timer"
    assert len(sandbox.call("GET", "/contacts")["contacts"]) == 1


def test_a_rejected_contact_carries_drifts_own_message(drift: DriftConnector) -> None:
    [result] = drift.write_contacts([ContactWrite(None, None, {"name": "Nobody"}, ref=7)])
    assert isinstance(result.error, ContactRejected)
    assert result.error.message == "A contact needs an email or an externalId"
    assert result.error.status == 400


def test_find_by_emails_lists_same_email_contacts_oldest_first(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    first = sandbox.create(email="dup@example.com", first_name="First")
    second = sandbox.create(email="DUP@example.com", first_name="Second")
    sandbox.create(email="other@example.com")
    found = drift.find_by_emails([" Dup@Example.com ", "missing@example.com"])
    assert list(found) == ["dup@example.com"]
    assert [c.id for c in found["dup@example.com"]] == [first, second]


def test_get_contacts_leaves_out_ids_drift_no_longer_has(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    kept = sandbox.create(email="kept@example.com")
    gone = sandbox.create(email="gone@example.com")
    sandbox.call("DELETE", f"/contacts/{gone}")
    found = drift.get_contacts([kept, gone])
    assert list(found) == [kept]
    assert found[kept].email == "kept@example.com"


def test_update_patches_only_the_attributes_that_changed(
    drift: DriftConnector, sandbox: SandboxControl, monkeypatch: pytest.MonkeyPatch
) -> None:
    contact_id = create(drift, "upd@example.com", name="Ann", phone="+1 555 0100")
    current = drift.get_contacts([contact_id])[contact_id]
    sent: list[dict[str, Any]] = []
    original = drift.client.update_contact

    def spy(cid: str, attributes: dict[str, Any]) -> dict[str, Any]:
        sent.append(attributes)
        return original(cid, attributes)

    monkeypatch.setattr(drift.client, "update_contact", spy)
    write = ContactWrite(
        contact_id, "upd@example.com", {"name": "Ann", "phone": "+1 555 0199"}, current=current
    )
    [result] = drift.write_contacts([write])
    assert sent == [{"phone": "+1 555 0199"}]
    assert result.contact is not None
    assert result.contact.fields["phone"] == "+1 555 0199"
    assert result.contact.version != current.version
    # nothing left to change: no request at all
    [again] = drift.write_contacts([ContactWrite(contact_id, None, {}, current=result.contact)])
    assert again.ok
    assert len(sent) == 1


def test_an_unknown_attribute_becomes_a_custom_field(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    contact_id = create(drift, "cf@example.com")
    drift.write_contacts([ContactWrite(contact_id, None, {"favourite_colour": "teal"})])
    assert sandbox.native(contact_id)["attributes"]["favourite_colour"] == "teal"
    fields = {f.key: f for f in drift.fields()}
    assert fields["favourite_colour"].custom


def test_legacy_tags_are_added_and_removed_through_drifts_tag_endpoints(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    # an org that still has tags, with these names defined in its settings
    sandbox.call("POST", "/org", {"legacy_tags": True})
    sandbox.call("POST", "/tags", {"names": ["a", "b", "c"]})
    drift = make({"tags_attribute": LEGACY_TAGS})
    contact_id = create(drift, "tags@example.com", tags={"a", "b"})
    current = drift.get_contacts([contact_id])[contact_id]
    write = ContactWrite(
        contact_id,
        None,
        {},
        add_tags=frozenset({"c"}),
        remove_tags=frozenset({"a", "b"}),
        current=current,
    )
    [result] = drift.write_contacts([write])
    assert result.contact is not None
    assert result.contact.tags == {"c"}
    assert [t["name"] for t in sandbox.native(contact_id)["attributes"]["tags"]] == ["c"]
    stats = sandbox.stats()
    assert stats["POST /contacts/{id}/tags/delete/_bulk"] == 1
    assert "PATCH /contacts/{id}" not in stats


def test_tags_can_live_in_a_chosen_attribute_instead(
    make: Callable[..., DriftConnector], sandbox: SandboxControl
) -> None:
    drift = make({"tags_attribute": "industry"})
    contact_id = create(drift, "attr@example.com", tags={"b", "a"})
    assert sandbox.native(contact_id)["attributes"]["industry"] == "a, b"
    current = drift.get_contacts([contact_id])[contact_id]
    assert current.tags == {"a", "b"}
    [result] = drift.write_contacts(
        [ContactWrite(contact_id, None, {}, remove_tags=frozenset({"a"}), current=current)]
    )
    assert result.contact is not None
    assert result.contact.tags == {"b"}
    assert sandbox.native(contact_id)["attributes"]["industry"] == "b"
    assert "POST /contacts/{id}/tags" not in sandbox.stats()


def test_updating_a_deleted_contact_reports_it_not_found(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    contact_id = create(drift, "del@example.com")
    sandbox.call("DELETE", f"/contacts/{contact_id}")
    [result] = drift.write_contacts([ContactWrite(contact_id, None, {"name": "X"})])
    assert isinstance(result.error, NotFound)
    assert "not found" in result.error.message


# -- failures, retries and tokens -----------------------------------------


def test_rate_limited_requests_wait_for_retry_after_and_succeed(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    contact_id = sandbox.create(email="rl@example.com")
    sandbox.call("POST", "/config", {"rate_limit": 1, "rate_window": 2.0})
    found = drift.get_contacts([contact_id, "1", "2", "3"])
    assert list(found) == [contact_id]
    assert sandbox.stats()["429"] >= 1


def test_server_errors_are_retried(drift: DriftConnector, sandbox: SandboxControl) -> None:
    drift.http.max_attempts = 10  # at 30% failures, ten misses in a row never happen
    sandbox.call("POST", "/config", {"error_rate": 0.3})
    ids = [create(drift, f"e{i}@example.com") for i in range(30)]
    sandbox.call("POST", "/config", {"error_rate": 0.0})
    assert len(drift.get_contacts(ids)) == 30
    assert sandbox.stats().get("503", 0) >= 1


def test_an_expired_token_is_refreshed_once_and_the_call_succeeds(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    contact_id = sandbox.create(email="exp@example.com")
    old = drift.http.credentials.access_token
    sandbox.call("POST", "/tokens/expire")
    assert list(drift.get_contacts([contact_id])) == [contact_id]
    assert drift.http.credentials.access_token != old
    assert drift.http.credentials.extra["orgId"] == 1234


def test_check_after_expiry_asks_token_info_with_the_fresh_token(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    sandbox.call("POST", "/tokens/expire")
    assert drift.check().remote_id == "1234"


def test_a_revoked_token_is_an_auth_error(drift: DriftConnector, sandbox: SandboxControl) -> None:
    contact_id = sandbox.create(email="rev@example.com")
    sandbox.call("POST", "/tokens/revoke")
    with pytest.raises(AuthError):
        drift.get_contacts([contact_id])
    with pytest.raises(AuthError):
        drift.write_contacts([ContactWrite(None, "new@example.com", {})])


def test_errors_carry_drifts_message(drift: DriftConnector, sandbox: SandboxControl) -> None:
    with pytest.raises(PermanentError) as caught:
        drift.client.http.get_json("/contacts")
    assert "email" in caught.value.message
    assert caught.value.status == 400


# -- webhooks --------------------------------------------------------------


def test_stored_contact_identified_becomes_an_identified_event(
    make: Callable[..., DriftConnector],
) -> None:
    # the stored payload comes from an org that still had legacy tags
    drift = make({"tags_attribute": LEGACY_TAGS})
    [event] = drift.parse_webhook(load("contact_identified.json"), "application/json", {})
    assert (event.kind, event.contact_id, event.email) == (
        "identified",
        "16344778575",
        "newcontact@email.com",
    )
    assert event.contact is not None
    assert event.contact.fields["name"] == "New Contact"
    assert event.contact.fields["cql"] == 2
    assert event.contact.tags == {"chat-lead"}
    assert event.occurred_at is not None


def test_stored_contact_updated_names_the_contact_for_the_engine_to_read(
    drift: DriftConnector,
) -> None:
    [event] = drift.parse_webhook(load("contact_updated.json"), "application/json", {})
    assert (event.kind, event.contact_id, event.contact) == ("updated", "16344778575", None)
    assert event.email == "renamed@email.com"
    assert event.occurred_at is not None
    assert event.occurred_at.year == 2022


def test_stored_user_unsubscribed_is_an_unsubscribe(drift: DriftConnector) -> None:
    [event] = drift.parse_webhook(load("user_unsubscribed.json"), "application/json", {})
    assert event.kind == "unsubscribed"
    assert event.contact is not None
    assert event.contact.unsubscribed
    assert event.email == "newcontact@email.com"


def test_other_drift_events_are_ignored(drift: DriftConnector) -> None:
    assert drift.parse_webhook(load("new_message.json"), "application/json", {}) == []


@pytest.mark.parametrize(
    "body", [b"not json", b"[]", b'{"data": {}}', b'{"type": "contact_updated", "data": {}}']
)
def test_a_malformed_webhook_is_a_permanent_error(drift: DriftConnector, body: bytes) -> None:
    with pytest.raises(PermanentError):
        drift.parse_webhook(body, "application/json", {})


def test_sandbox_webhooks_round_trip_through_the_parser(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    sandbox.call("POST", "/webhooks", {"url": "http://127.0.0.1:9/hook", "token": "vt"})
    contact_id = sandbox.call("POST", "/identify", {"email": "chat@example.com", "name": "Chat"})[
        "id"
    ]
    sandbox.call("PATCH", f"/contacts/{contact_id}", {"title": "CTO"})
    sandbox.call("POST", f"/contacts/{contact_id}/unsubscribe")
    deliveries = sandbox.outbox()
    assert [d["json"]["type"] for d in deliveries] == [
        "contact_identified",
        "contact_updated",
        "user_unsubscribed",
    ]
    events = []
    for delivery in deliveries:
        assert delivery["headers"]["X-Verification-Token"] == "vt"
        raw = json.dumps(delivery["json"]).encode()
        drift_webhooks.verify(Delivery(raw, "application/json", delivery["headers"]), "vt")
        events += drift.parse_webhook(raw, "application/json", delivery["headers"])
    assert [(e.kind, e.contact_id) for e in events] == [
        ("identified", contact_id),
        ("updated", contact_id),
        ("unsubscribed", contact_id),
    ]
    diff = deliveries[1]["json"]["data"]["diff"]
    assert diff == [{"name": "attributes.title", "previous": None, "updated": "CTO"}]


def test_identify_finds_a_known_contact_instead_of_creating_one(sandbox: SandboxControl) -> None:
    known = sandbox.create(email="known@example.com")
    assert sandbox.call("POST", "/identify", {"email": "KNOWN@example.com"})["id"] == known
    assert len(sandbox.call("GET", "/contacts")["contacts"]) == 1


# -- the sandbox speaks Drift's shapes -------------------------------------


def test_sandbox_payloads_have_drifts_documented_keys(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    contact_id = create(drift, "shape@example.com", name="Shape")
    headers = {"Authorization": f"Bearer {drift.http.credentials.access_token}"}
    base = sandbox.base_url
    one = requests.get(f"{base}/contacts/{contact_id}", headers=headers, timeout=5).json()
    assert set(one) == {"data"}
    assert {"id", "createdAt", "attributes"} <= set(one["data"])
    assert isinstance(one["data"]["id"], int)
    assert isinstance(one["data"]["createdAt"], int)
    assert {"email", "name", "tags"} <= set(one["data"]["attributes"])
    by_email = requests.get(
        f"{base}/contacts", params={"email": "shape@example.com"}, headers=headers, timeout=5
    ).json()
    assert isinstance(by_email["data"], list)
    props = requests.get(f"{base}/contacts/attributes", headers=headers, timeout=5).json()
    assert {"name", "displayName", "type"} <= set(props["data"]["properties"][0])
    missing = requests.get(f"{base}/contacts/999", headers=headers, timeout=5)
    assert missing.status_code == 404
    assert set(missing.json()["error"]) == {"type", "message"}
    unauthorized = requests.get(f"{base}/contacts/{contact_id}", timeout=5)
    assert unauthorized.status_code == 401
    assert "message" in unauthorized.json()["error"]
    conflict = requests.post(
        f"{base}/contacts",
        json={"attributes": {"email": "shape@example.com"}},
        headers=headers,
        timeout=5,
    )
    assert conflict.status_code == 409
    info = requests.post(
        f"{base}/app/token_info",
        json={"access_token": drift.http.credentials.access_token},
        timeout=5,
    ).json()
    assert info["authenticated_userid"] == "orgId:1234"


def test_sandbox_token_endpoint_takes_form_or_json_and_both_key_styles(
    sandbox: SandboxControl,
) -> None:
    issued = sandbox.call("POST", "/tokens")
    url = f"{sandbox.base_url}/oauth2/token"
    form = requests.post(
        url, data={"grant_type": "refresh_token", "refresh_token": issued["refresh_token"]}
    ).json()
    assert {"access_token", "refresh_token", "expires_in", "orgId"} <= set(form)
    sandbox.call("POST", "/org", {"token_keys": "camel", "org_id": 99})
    camel = requests.post(
        url, json={"grant_type": "refresh_token", "refresh_token": form["refresh_token"]}
    ).json()
    assert {"accessToken", "refreshToken", "expiresIn"} <= set(camel)
    assert camel["orgId"] == 99


def test_refresh_takes_a_camel_case_token_answer(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    sandbox.call("POST", "/org", {"token_keys": "camel"})
    contact_id = sandbox.create(email="camel@example.com")
    sandbox.call("POST", "/tokens/expire")
    assert list(drift.get_contacts([contact_id])) == [contact_id]


def test_sandbox_allows_a_second_contact_with_an_email_when_it_has_an_external_id(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    first = create(drift, "ext@example.com")
    second = create(drift, "ext@example.com", externalId="crm-42")
    assert first != second
    assert [r["id"] for r in drift.client.find_by_external_id("crm-42")] == [int(second)]
    assert [c.id for c in drift.find_by_emails(["ext@example.com"])["ext@example.com"]] == [
        first,
        second,
    ]


def test_sandbox_seeds_and_finds_thousands_of_contacts_quickly(
    drift: DriftConnector, sandbox: SandboxControl
) -> None:
    people = [{"email": f"p{i}@example.com", "first_name": f"P{i}"} for i in range(20000)]
    started = time.monotonic()
    ids = sandbox.call("POST", "/contacts/bulk", {"contacts": people})["ids"]
    assert len(ids) == 20000
    found = drift.find_by_emails([f"p{i}@example.com" for i in (0, 9999, 19999)])
    assert [c[0].id for c in found.values()] == [ids[0], ids[9999], ids[19999]]
    assert time.monotonic() - started < 5
