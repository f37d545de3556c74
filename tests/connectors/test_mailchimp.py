"""The Mailchimp connector against its sandbox, over real HTTP on loopback."""

from __future__ import annotations

import urllib.parse
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.base import (
    AuthError,
    ConfigError,
    ContactRejected,
    ContactWrite,
    Credentials,
    FieldType,
    Semantic,
)
from connectors.mailchimp.client import subscriber_hash
from connectors.mailchimp.connector import MailchimpConnector
from connectors.registry import default_mappings
from connectors.sandbox import serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl
from connectors.sandbox.mailchimp import DEFAULT_LIST_ID
from tests.sandbox_limits import realistic

FIXTURES = Path(__file__).parent / "fixtures" / "mailchimp"
STATIC_KEY = "mailchimp-pasted-key"
MEMBERS = "GET /3.0/lists/{list_id}/members"
BATCH = "POST /3.0/lists/{list_id}"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("mailchimp",), tokens=(STATIC_KEY,))
    yield srv
    srv.stop()


@pytest.fixture
def sandbox(server: SandboxServer) -> SandboxControl:
    control = SandboxControl.of(server, "mailchimp", timeout=10)
    control.call("POST", "/reset")
    realistic(control, "mailchimp")
    return control


@pytest.fixture
def make(sandbox: SandboxControl) -> Callable[..., MailchimpConnector]:
    def build(
        settings: dict[str, Any] | None = None,
        *,
        page_size: int | None = None,
        credentials: Credentials | None = None,
    ) -> MailchimpConnector:
        if credentials is None:
            token = sandbox.call("POST", "/tokens")["access_token"]
            credentials = Credentials(access_token=token)
        connector = MailchimpConnector(
            credentials,
            {"audience": DEFAULT_LIST_ID} if settings is None else settings,
            base_url=sandbox.base_url,
        )
        if page_size:
            connector.page_size = page_size  # type: ignore[misc]
        connector.client.http.backoff_base = 0.01
        return connector

    return build


def read_all(connector: MailchimpConnector, cursor: str | None = None) -> tuple[list, str]:
    contacts = []
    last = None
    for page in connector.changes(cursor):
        contacts.extend(page.contacts)
        last = page
    assert last is not None
    assert last.done
    assert last.cursor is not None
    return contacts, last.cursor


# ------------------------------------------------------------------ account


def test_check_names_the_account_and_side_options_list_the_audiences(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    sandbox.call("POST", "/lists", {"id": "f00dfeed12", "name": "Customers"})
    connector = make()
    info = connector.check()
    assert info.label == "Driftsync Demo"
    assert info.remote_id
    options = connector.side_options()
    assert ("a1b2c3d4e5", "Demo audience") in options["audience"]
    assert ("f00dfeed12", "Customers") in options["audience"]
    assert [v for v, _ in options["new_member_status"]] == [
        "subscribed",
        "pending",
        "transactional",
    ]


def test_a_missing_or_unknown_audience_is_a_config_error_with_a_clear_message(
    make: Callable[..., MailchimpConnector],
) -> None:
    # before an audience is chosen, the account's schema comes from its first audience
    assert "FNAME" in {f.key for f in make({}).fields()}
    with pytest.raises(ConfigError, match="Choose a Mailchimp audience"):
        make({}).write_contacts([ContactWrite(None, "a@example.com")])
    with pytest.raises(ConfigError, match="nope123456"):
        make({"audience": "nope123456"}).fields()
    with pytest.raises(ConfigError, match="new_member_status"):
        make({"audience": DEFAULT_LIST_ID, "new_member_status": "unsubscribed"}).write_contacts(
            [ContactWrite(None, "a@example.com")]
        )


def test_the_data_center_comes_from_the_api_key_and_basic_auth_works() -> None:
    real = MailchimpConnector(Credentials(api_key="0123456789abcdef-us6"), {"audience": "x"})
    assert real.base_url == "https://us6.api.mailchimp.com/3.0"
    oauth = MailchimpConnector(Credentials(access_token="t", extra={"dc": "us19"}))
    assert oauth.base_url == "https://us19.api.mailchimp.com/3.0"
    with pytest.raises(ConfigError, match="data center"):
        _ = MailchimpConnector(Credentials(access_token="t")).client


def test_a_pasted_api_key_with_its_dc_suffix_authenticates_with_basic_auth(
    make: Callable[..., MailchimpConnector],
) -> None:
    connector = make(credentials=Credentials(api_key=f"{STATIC_KEY}-us1"))
    assert connector.check().label == "Driftsync Demo"


def test_oauth_metadata_gives_the_dc_and_a_bad_token_is_an_auth_error(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    urls = MailchimpConnector.oauth_urls(sandbox.base_url)
    assert urls["token"] == sandbox.root + "/oauth2/token"
    assert (
        MailchimpConnector.oauth_urls()["metadata"] == "https://login.mailchimp.com/oauth2/metadata"
    )
    # the authorization code flow, as allauth runs it
    redirect = requests.get(
        urls["authorize"],
        params={"redirect_uri": "http://app.test/cb", "state": "s1", "client_id": "x"},
        allow_redirects=False,
        timeout=10,
    )
    code = urllib.parse.parse_qs(urllib.parse.urlsplit(redirect.headers["Location"]).query)["code"][
        0
    ]
    token = requests.post(
        urls["token"], data={"grant_type": "authorization_code", "code": code}, timeout=10
    ).json()
    assert token["expires_in"] == 0
    assert "refresh_token" not in token
    meta = MailchimpConnector.metadata(token["access_token"], urls["metadata"])
    assert meta["dc"]
    assert meta["api_endpoint"] == sandbox.root
    assert {"user_id", "accountname", "login"} <= set(meta)
    connector = make(
        settings={"audience": DEFAULT_LIST_ID},
        credentials=Credentials(access_token=token["access_token"], extra=meta),
    )
    assert connector.check().label == "Driftsync Demo"
    with pytest.raises(AuthError, match="invalid_token"):
        MailchimpConnector.metadata("not-a-token", urls["metadata"])


def test_tokens_never_expire_but_a_revoked_one_is_an_auth_error(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    connector = make()
    sandbox.call("POST", "/tokens/expire")
    connector.check()
    sandbox.call("POST", "/tokens/revoke")
    with pytest.raises(AuthError, match="API key may be invalid"):
        make(credentials=connector.credentials).check()


# ------------------------------------------------------------------- schema


def test_fields_follow_the_audience_merge_fields_with_types_and_meanings(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    sandbox.create(email="seed@example.com", company="Acme", custom={"PLAN": "Pro"})
    base = sandbox.base_url
    token = sandbox.call("POST", "/tokens")["access_token"]
    auth = {"Authorization": f"Bearer {token}"}
    for merge in (
        {"tag": "SIZE", "name": "Employees", "type": "number"},
        {"tag": "RENEWAL", "name": "Renewal", "type": "date"},
        {"tag": "TIER", "name": "Tier", "type": "dropdown", "options": {"choices": ["A", "B"]}},
        {"tag": "ADDRESS", "name": "Address", "type": "address"},
    ):
        r = requests.post(f"{base}/lists/{DEFAULT_LIST_ID}/merge-fields", json=merge, headers=auth)
        assert r.status_code == 200, r.text
    fields = {f.key: f for f in make().fields()}
    assert fields["email_address"].semantic is Semantic.EMAIL
    assert fields["FNAME"].semantic is Semantic.FIRST_NAME
    assert not fields["FNAME"].custom
    assert fields["LNAME"].semantic is Semantic.LAST_NAME
    assert fields["PHONE"].type is FieldType.PHONE
    assert fields["PHONE"].semantic is Semantic.PHONE
    assert fields["COMPANY"].semantic is Semantic.COMPANY
    assert fields["full_name"].parts == ("FNAME", "LNAME")
    assert fields["PLAN"].custom
    assert fields["PLAN"].type is FieldType.TEXT
    assert fields["SIZE"].type is FieldType.NUMBER
    assert fields["RENEWAL"].type is FieldType.DATE
    assert fields["TIER"].type is FieldType.CHOICE
    assert fields["TIER"].choices == ("A", "B")
    assert fields["ADDRESS"].read_only
    assert fields["status"].read_only
    assert "archived" in fields["status"].choices
    pairs = default_mappings(list(fields.values()), list(fields.values()))
    assert ("email_address", "email_address") in pairs
    assert ("FNAME", "FNAME") in pairs


# ------------------------------------------------------------------ reading


def test_a_full_read_pages_through_every_member_and_each_cursor_resumes_after_its_page(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    sandbox.call(
        "POST",
        "/contacts/bulk",
        {"contacts": [{"email": f"m{i}@example.com", "first_name": f"M{i}"} for i in range(8)]},
    )
    connector = make(page_size=3)
    pages = list(connector.changes(None))
    assert [len(p.contacts) for p in pages] == [3, 3, 2, 0]  # the last: archived members
    assert all(p.full_scan for p in pages)
    assert pages[-1].done
    assert not any(p.done for p in pages[:-1])
    emails = {c.email for p in pages for c in p.contacts}
    assert len(emails) == 8
    # a crash after page one: resuming with its cursor reads the rest, nothing lost
    resumed = list(make(page_size=3).changes(pages[0].cursor))
    assert {c.email for c in pages[0].contacts} | {
        c.email for p in resumed for c in p.contacts
    } == emails
    contact = pages[0].contacts[0]
    assert contact.id == subscriber_hash(contact.email)
    assert contact.fields["FNAME"].startswith("M")
    assert contact.updated_at is not None


def test_a_quiet_incremental_read_returns_nothing_and_costs_one_request_per_phase(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    for i in range(3):
        sandbox.create(email=f"q{i}@example.com")
    connector = make()
    _, cursor = read_all(connector)
    sandbox.reset_stats()
    contacts, again = read_all(connector, cursor)
    assert contacts == []
    assert sandbox.stats()[MEMBERS] == 2  # members, then archived members
    changed = sandbox.create(email="new@example.com", first_name="New")
    sandbox.call("PATCH", "/contacts/" + subscriber_hash("q1@example.com"), {"first_name": "Q"})
    contacts, _ = read_all(connector, again)
    assert {c.id for c in contacts} == {changed, subscriber_hash("q1@example.com")}


def test_members_edited_during_a_read_are_never_lost(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    sandbox.call(
        "POST",
        "/contacts/bulk",
        {"contacts": [{"email": f"r{i}@example.com"} for i in range(9)]},
    )
    connector = make(page_size=3)
    reader = connector.changes(None)
    first = next(reader)
    read_ids = {c.id for c in first.contacts}
    unread = next(
        subscriber_hash(f"r{i}@example.com")
        for i in range(9)
        if subscriber_hash(f"r{i}@example.com") not in read_ids
    )
    already = next(iter(read_ids))
    for member in (unread, already):
        sandbox.call("PATCH", f"/contacts/{member}", {"first_name": "Edited"})
    rest = list(reader)
    seen = read_ids | {c.id for p in rest for c in p.contacts}
    everyone = {subscriber_hash(f"r{i}@example.com") for i in range(9)}
    # offsets shifted: rows may repeat, but no member left alone is skipped
    assert everyone - {unread} <= seen
    edited, _ = read_all(connector, rest[-1].cursor)
    assert {unread, already} <= {c.id for c in edited}
    assert all(c.fields["FNAME"] == "Edited" for c in edited if c.id in (unread, already))


def test_archived_members_read_as_deleted_and_unsubscribed_ones_as_unsubscribed(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    gone = sandbox.create(email="gone@example.com")
    quit_ = sandbox.create(email="quit@example.com")
    sandbox.create(email="stays@example.com")
    connector = make()
    _, cursor = read_all(connector)
    sandbox.call("DELETE", f"/contacts/{gone}")
    sandbox.call("POST", f"/contacts/{quit_}/unsubscribe")
    contacts = {c.id: c for c in read_all(connector, cursor)[0]}
    assert set(contacts) == {gone, quit_}
    assert contacts[gone].deleted
    assert contacts[gone].fields["status"] == "archived"
    assert contacts[quit_].unsubscribed
    assert not contacts[quit_].deleted
    assert connector.capabilities.detect_deletions
    assert connector.capabilities.detect_unsubscribes
    # archived members still answer by id and by email, marked deleted
    assert connector.get_contacts([gone])[gone].deleted
    assert connector.find_by_emails(["GONE@example.com "])["gone@example.com"][0].deleted


def test_get_contacts_and_find_by_emails_leave_out_what_does_not_exist(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    a = sandbox.create(email="Ann@Example.com", first_name="Ann", tags=["vip"])
    connector = make()
    found = connector.find_by_emails(["ann@example.com", "nobody@example.com"])
    assert list(found) == ["ann@example.com"]
    assert found["ann@example.com"][0].id == a
    assert found["ann@example.com"][0].tags == frozenset({"vip"})
    got = connector.get_contacts([a, subscriber_hash("nobody@example.com")])
    assert list(got) == [a]
    assert got[a].email == "Ann@Example.com"


# ------------------------------------------------------------------ writing


def test_creates_go_in_batches_of_500_and_updates_never_touch_the_status(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    connector = make()
    writes = [
        ContactWrite(None, f"b{i}@example.com", {"FNAME": f"B{i}"}, ref=i) for i in range(501)
    ]
    results = connector.write_contacts(writes)
    assert [r.ref for r in results] == list(range(501))
    assert all(r.ok for r in results)
    assert sandbox.stats()[BATCH] == 2
    assert results[7].contact.id == subscriber_hash("b7@example.com")
    assert results[7].contact.fields["status"] == "subscribed"
    member = results[7].contact.id
    sandbox.call("POST", f"/contacts/{member}/unsubscribe")
    current = connector.get_contacts([member])[member]
    [updated] = connector.write_contacts(
        [ContactWrite(member, current.email, {"LNAME": "Later"}, current=current)]
    )
    assert updated.ok
    assert updated.contact.fields["LNAME"] == "Later"
    assert sandbox.native(member)["status"] == "unsubscribed"


def test_creating_an_email_that_exists_updates_it_instead_and_keeps_its_status(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    existing = sandbox.create(email="old@example.com", first_name="Old")
    sandbox.call("POST", f"/contacts/{existing}/unsubscribe")
    connector = make({"audience": DEFAULT_LIST_ID, "new_member_status": "pending"})
    results = connector.write_contacts(
        [
            ContactWrite(None, "old@example.com", {"FNAME": "Renamed"}, ref="a"),
            ContactWrite(None, "fresh@example.com", {}, ref="b"),
            ContactWrite(None, "FRESH@example.com", {"LNAME": "Twice"}, ref="c"),
        ]
    )
    assert [r.ok for r in results] == [True, True, True]
    assert results[0].contact.id == existing
    native = sandbox.native(existing)
    assert native["status"] == "unsubscribed"
    assert native["merge_fields"]["FNAME"] == "Renamed"
    fresh = sandbox.native(subscriber_hash("fresh@example.com"))
    assert fresh["status"] == "pending"
    assert fresh["merge_fields"]["LNAME"] == "Twice"
    assert len(sandbox.call("GET", "/contacts")["contacts"]) == 2


def test_a_rejected_member_carries_mailchimps_message_and_the_others_are_written(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    token = sandbox.call("POST", "/tokens")["access_token"]
    requests.post(
        f"{sandbox.base_url}/lists/{DEFAULT_LIST_ID}/merge-fields",
        json={"tag": "SIZE", "name": "Employees", "type": "number"},
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    connector = make()
    results = connector.write_contacts(
        [
            ContactWrite(None, "not-an-email", {}),
            ContactWrite(None, "ok@example.com", {"SIZE": 12}),
            ContactWrite(None, "bad@example.com", {"SIZE": "lots"}),
            ContactWrite(None, "x@example.com", {"NOPE": "x"}),
        ]
    )
    assert isinstance(results[0].error, ContactRejected)
    assert "looks fake or invalid" in results[0].error.message
    assert results[1].ok
    assert results[1].contact.fields["SIZE"] == 12
    assert "Your merge fields were invalid" in results[2].error.message
    assert "SIZE" in results[2].error.message
    assert "no field 'NOPE'" in results[3].error.message
    member = results[1].contact
    [bad] = connector.write_contacts(
        [ContactWrite(member.id, member.email, {"SIZE": "many"}, current=member)]
    )
    assert isinstance(bad.error, ContactRejected)
    assert "Please enter a number" in bad.error.message


def test_tags_are_added_and_removed_and_dates_round_trip_in_the_audience_format(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    token = sandbox.call("POST", "/tokens")["access_token"]
    requests.post(
        f"{sandbox.base_url}/lists/{DEFAULT_LIST_ID}/merge-fields",
        json={
            "tag": "RENEWAL",
            "name": "Renewal",
            "type": "date",
            "options": {"date_format": "DD/MM/YYYY"},
        },
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    connector = make()
    [created] = connector.write_contacts(
        [
            ContactWrite(
                None,
                "tagged@example.com",
                {"RENEWAL": "2025-03-31"},
                add_tags=frozenset({"DriftSync Trash", "lead"}),
            )
        ]
    )
    assert created.ok
    assert created.contact.tags == frozenset({"DriftSync Trash", "lead"})
    assert created.contact.fields["RENEWAL"] == "2025-03-31"
    member = created.contact
    [untagged] = connector.write_contacts(
        [ContactWrite(member.id, member.email, remove_tags=frozenset({"lead"}), current=member)]
    )
    assert untagged.contact.tags == frozenset({"DriftSync Trash"})
    fresh = connector.get_contacts([member.id])[member.id]
    assert fresh.tags == frozenset({"DriftSync Trash"})
    assert fresh.fields["RENEWAL"] == "2025-03-31"


def test_an_email_change_moves_the_member_to_its_new_hash(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    member_id = sandbox.create(email="before@example.com")
    connector = make()
    current = connector.get_contacts([member_id])[member_id]
    [moved] = connector.write_contacts(
        [
            ContactWrite(
                member_id, current.email, {"email_address": "after@example.com"}, current=current
            )
        ]
    )
    assert moved.ok
    assert moved.contact.id == subscriber_hash("after@example.com")
    assert connector.get_contacts([member_id]) == {}


# --------------------------------------------------------------- resilience


def test_rate_limits_and_server_errors_are_retried(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    for i in range(4):
        sandbox.create(email=f"t{i}@example.com")
    connector = make(page_size=2)
    sandbox.call("POST", "/config", {"error_rate": 0.3, "error_status": 503})
    contacts, _ = read_all(connector)
    assert len({c.id for c in contacts}) == 4
    sandbox.call("POST", "/config", {"error_rate": 0.0, "rate_limit": 1, "rate_window": 2.0})
    sandbox.reset_stats()
    contacts, _ = read_all(connector)
    assert len({c.id for c in contacts}) == 4
    assert sandbox.stats().get("429", 0) >= 1


def test_sandbox_errors_are_problem_json_with_mailchimps_keys(
    sandbox: SandboxControl, make: Callable[..., MailchimpConnector]
) -> None:
    token = sandbox.call("POST", "/tokens")["access_token"]
    response = requests.get(
        f"{sandbox.base_url}/lists/{DEFAULT_LIST_ID}/members/{subscriber_hash('no@example.com')}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert set(response.json()) == {"type", "title", "status", "detail", "instance"}
    unauthorized = requests.get(f"{sandbox.base_url}/lists", timeout=10)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["title"] == "API Key Invalid"


def test_sandbox_members_have_the_documented_keys(sandbox: SandboxControl) -> None:
    member_id = sandbox.create(email="shape@example.com", first_name="S", tags=["t"])
    native = sandbox.native(member_id)
    assert {
        "id",
        "email_address",
        "unique_email_id",
        "status",
        "merge_fields",
        "tags",
        "tags_count",
        "last_changed",
        "timestamp_signup",
        "timestamp_opt",
        "list_id",
        "stats",
        "location",
        "source",
        "member_rating",
        "vip",
    } <= set(native)
    assert native["tags"][0].keys() == {"id", "name"}
    assert native["last_changed"].endswith("+00:00")


# ----------------------------------------------------------------- webhooks


def test_webhooks_are_registered_once_for_users_and_admins_only(
    make: Callable[..., MailchimpConnector], sandbox: SandboxControl
) -> None:
    connector = make()
    url = "http://127.0.0.1:9/hooks/mailchimp/s3cret"
    first = connector.register_webhook(url)
    assert connector.register_webhook(url)["id"] == first["id"]
    assert first["sources"] == {"user": True, "admin": True, "api": False}
    assert first["events"]["unsubscribe"]
    assert not first["events"]["campaign"]
    member = sandbox.create(email="leaver@example.com", first_name="Lea")
    connector.write_contacts([ContactWrite(None, "api@example.com", {})])  # api: no webhook
    sandbox.call("POST", f"/contacts/{member}/unsubscribe")
    outbox = [d for d in sandbox.call("GET", "/outbox") if d["url"] == url]
    kinds = [d["form"]["type"] for d in outbox]
    assert kinds == ["subscribe", "unsubscribe"]  # the admin add, then the unsubscribe
    body = urllib.parse.urlencode(outbox[-1]["form"]).encode()
    [event] = connector.parse_webhook(body, "application/x-www-form-urlencoded", {})
    assert event.kind == "unsubscribed"
    assert event.contact_id == member
    assert event.contact.unsubscribed
    assert event.contact.fields["FNAME"] == "Lea"
    assert connector.unregister_webhook(url) == 1


def test_documented_webhook_payloads_become_inbox_events(
    make: Callable[..., MailchimpConnector],
) -> None:
    connector = make()
    unsub = (FIXTURES / "unsubscribe.form").read_bytes().strip()
    [event] = connector.parse_webhook(unsub, "application/x-www-form-urlencoded", {})
    assert event.kind == "unsubscribed"
    assert event.email == "api+unsub@mailchimp.com"
    assert event.contact_id == subscriber_hash("api+unsub@mailchimp.com")
    assert event.contact.fields["LNAME"] == "API"
    assert "INTERESTS" not in event.contact.fields
    assert event.occurred_at is not None
    assert event.occurred_at.year == 2009
    upemail = (FIXTURES / "upemail.form").read_bytes().strip()
    [moved] = connector.parse_webhook(upemail, "application/x-www-form-urlencoded", {})
    assert moved.kind == "email_changed"
    assert moved.contact_id == subscriber_hash("api+old@mailchimp.com")
    assert moved.contact.id == subscriber_hash("api+new@mailchimp.com")
    profile = (FIXTURES / "profile.form").read_bytes().strip()
    [edited] = connector.parse_webhook(profile, "application/x-www-form-urlencoded", {})
    assert edited.kind == "profile"
    assert edited.contact.fields["FNAME"] == "Mailchimp"
    other_list = profile.replace(b"a1b2c3d4e5", b"ffffffffff")
    assert connector.parse_webhook(other_list, "application/x-www-form-urlencoded", {}) == []
