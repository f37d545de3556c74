"""The Google Contacts connector against its sandbox, over real HTTP."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from connectors.base import (
    AuthError,
    ContactRejected,
    ContactWrite,
    Credentials,
    NotFound,
    PermanentError,
    Semantic,
)
from connectors.google.connector import GoogleConnector
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl, SandboxControlError
from tests.sandbox_limits import realistic

FIXTURES = Path(__file__).parent / "fixtures" / "google"


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("google",))
    yield srv
    srv.stop()


@pytest.fixture
def root(server: SandboxServer) -> Iterator[str]:
    url = server.url("google")
    SandboxControl(url).call("POST", "/reset")
    realistic(url, "google")
    yield url
    realistic(url, "google")


def connect(
    server: SandboxServer, root: str, settings: dict[str, Any] | None = None
) -> GoogleConnector:
    token = SandboxControl(root).call("POST", "/tokens", {})
    connector = GoogleConnector(
        Credentials(
            access_token=token["access_token"],
            refresh_token=token["refresh_token"],
            expires_at=time.time() + token["expires_in"],
        ),
        settings,
        base_url=api_base_url(server, "google"),
    )
    connector.http.backoff_base = 0.01
    return connector


@pytest.fixture
def google(server: SandboxServer, root: str) -> GoogleConnector:
    return connect(server, root)


def seed(root: str, count: int, **extra: Any) -> list[str]:
    people = [
        {"email": f"person{n}@example.com", "first_name": f"First{n}", "last_name": "Last", **extra}
        for n in range(count)
    ]
    return SandboxControl(root).call("POST", "/contacts/bulk", {"contacts": people})["ids"]


def stats(root: str) -> dict[str, int]:
    return SandboxControl(root).call("GET", "/stats")


def read_all(google: GoogleConnector, cursor: str | None = None) -> tuple[list, str | None]:
    contacts = []
    last = cursor
    for page in google.changes(cursor):
        contacts.extend(page.contacts)
        last = page.cursor
    return contacts, last


# -- reading -------------------------------------------------------------------


def test_a_full_read_pages_through_every_contact_and_marks_the_last_page(
    google: GoogleConnector, root: str
) -> None:
    seed(root, 25)
    google.page_size = 10
    pages = list(google.changes(None))
    assert [len(p.contacts) for p in pages] == [10, 10, 5]
    assert [p.done for p in pages] == [False, False, True]
    assert all(p.full_scan for p in pages)
    assert len({c.id for p in pages for c in p.contacts}) == 25
    assert json.loads(pages[-1].cursor)["sync"]


def test_each_page_cursor_resumes_right_after_that_page(google: GoogleConnector, root: str) -> None:
    seed(root, 25)
    google.page_size = 10
    first = next(iter(google.changes(None)))
    rest = list(google.changes(first.cursor))
    assert [len(p.contacts) for p in rest] == [10, 5]
    assert all(p.full_scan for p in rest)
    seen = {c.id for c in first.contacts} | {c.id for p in rest for c in p.contacts}
    assert len(seen) == 25


def test_an_incremental_read_returns_only_changes_and_deletions(
    google: GoogleConnector, root: str
) -> None:
    ids = seed(root, 5)
    _, cursor = read_all(google)
    SandboxControl(root).call("PATCH", f"/contacts/{ids[1]}", {"phone": "+1 555 0100"})
    SandboxControl(root).call("DELETE", f"/contacts/{ids[2]}")
    pages = list(google.changes(cursor))
    assert len(pages) == 1
    assert not pages[0].full_scan
    assert pages[0].done
    changed = {c.id: c for c in pages[0].contacts}
    assert set(changed) == {ids[1], ids[2]}
    assert changed[ids[1]].fields["phone"] == "+1 555 0100"
    assert changed[ids[2]].deleted
    nothing, _ = read_all(google, pages[0].cursor)
    assert nothing == []


def test_an_incremental_read_resumes_mid_way_with_the_same_sync_token(
    google: GoogleConnector, root: str
) -> None:
    ids = seed(root, 12)
    _, cursor = read_all(google)
    for rn in ids:
        SandboxControl(root).call("PATCH", f"/contacts/{rn}", {"title": "CTO"})
    google.page_size = 5
    first = next(iter(google.changes(cursor)))
    assert json.loads(first.cursor)["sync"] == json.loads(cursor)["sync"]
    rest, _ = read_all(google, first.cursor)
    assert {c.id for c in first.contacts} | {c.id for c in rest} == set(ids)
    assert all(c.fields["job_title"] == "CTO" for c in rest)


@pytest.mark.parametrize("status", [400, 410])
def test_an_expired_sync_token_starts_a_full_scan(
    google: GoogleConnector, root: str, status: int
) -> None:
    seed(root, 3)
    _, cursor = read_all(google)
    SandboxControl(root).call("POST", "/synctokens/expire", {"status": status})
    pages = list(google.changes(cursor))
    assert len(pages) == 1
    assert pages[0].full_scan
    assert len(pages[0].contacts) == 3
    assert json.loads(pages[0].cursor)["sync"]


def test_a_sync_token_older_than_its_lifetime_starts_a_full_scan(
    google: GoogleConnector, root: str
) -> None:
    seed(root, 2)
    _, cursor = read_all(google)
    SandboxControl(root).call("POST", "/synctokens/expire", {"ttl": 0})
    pages = list(google.changes(cursor))
    assert pages[0].full_scan
    assert len(pages[0].contacts) == 2


def test_a_saved_page_token_google_refuses_restarts_that_read(
    google: GoogleConnector, root: str
) -> None:
    seed(root, 3)
    cursor = json.dumps({"sync": None, "page": "no-longer-valid", "full": True})
    pages = list(google.changes(cursor))
    assert pages[0].full_scan
    assert len(pages[0].contacts) == 3


def test_get_contacts_leaves_out_deleted_ones(google: GoogleConnector, root: str) -> None:
    ids = seed(root, 3)
    SandboxControl(root).call("DELETE", f"/contacts/{ids[0]}")
    found = google.get_contacts(ids)
    assert set(found) == set(ids[1:])
    assert found[ids[1]].fields["given_name"] == "First1"


def test_find_by_emails_matches_exactly_and_folds_case(google: GoogleConnector, root: str) -> None:
    seed(root, 12)  # person1@ is also a prefix of person10@ and person11@
    found = google.find_by_emails(["  PERSON1@example.com", "nobody@example.com"])
    assert list(found) == ["person1@example.com"]
    assert [c.email for c in found["person1@example.com"]] == ["person1@example.com"]
    assert stats(root)["GET /v1/people:searchContacts"] == 3  # warmup + two searches


def test_a_large_lookup_reads_an_email_index_kept_fresh_with_a_sync_token(
    google: GoogleConnector, root: str
) -> None:
    ids = seed(root, 30)
    emails = [f"person{n}@example.com" for n in range(20)]
    found = google.find_by_emails(emails)
    assert sorted(found) == sorted(emails)
    SandboxControl(root).call("PATCH", f"/contacts/{ids[0]}", {"email": "moved@example.com"})
    SandboxControl(root).call("DELETE", f"/contacts/{ids[1]}")
    again = google.find_by_emails([*emails, "moved@example.com"])
    assert "person0@example.com" not in again
    assert "person1@example.com" not in again
    assert [c.id for c in again["moved@example.com"]] == [ids[0]]
    counts = stats(root)
    assert counts["GET /v1/people/me/connections"] == 2
    assert "GET /v1/people:searchContacts" not in counts


def test_fields_include_custom_keys_from_the_first_page_and_from_settings(
    server: SandboxServer, root: str
) -> None:
    seed(root, 2, custom={"Shoe size": "42"})
    google = connect(server, root, {"custom_fields": ["Favourite colour"]})
    fields = {f.key: f for f in google.fields()}
    assert fields["custom:Shoe size"].custom
    assert "custom:Favourite colour" in fields
    assert fields["email"].semantic == Semantic.EMAIL
    assert fields["email"].multi_value
    assert fields["full_name"].parts == ("given_name", "family_name")
    contact = google.get_contacts(seed(root, 1, custom={"Shoe size": "44"}))
    assert next(iter(contact.values())).fields["custom:Shoe size"] == "44"


# -- writing -----------------------------------------------------------------------


def test_creates_go_in_batches_of_200(google: GoogleConnector, root: str) -> None:
    writes = [
        ContactWrite(None, f"new{n}@example.com", {"email": f"new{n}@example.com"}, ref=n)
        for n in range(450)
    ]
    results = google.write_contacts(writes)
    assert [r.ref for r in results] == list(range(450))
    assert all(r.ok and r.contact and r.contact.version for r in results)
    assert stats(root)["POST /v1/people:batchCreateContacts"] == 3
    assert len(SandboxControl(root).call("GET", "/contacts")["contacts"]) == 450


def test_a_create_for_an_email_google_already_has_returns_that_contact(
    google: GoogleConnector, root: str
) -> None:
    [existing] = seed(root, 1)
    results = google.write_contacts(
        [
            ContactWrite(None, "Person0@Example.com", {"email": "Person0@Example.com"}),
            ContactWrite(None, "twin@example.com", {"email": "twin@example.com"}, ref="a"),
            ContactWrite(None, "twin@example.com", {"email": "twin@example.com"}, ref="b"),
        ]
    )
    assert results[0].contact
    assert results[0].contact.id == existing
    assert results[1].contact
    assert results[2].contact
    assert results[1].contact.id == results[2].contact.id
    assert len(SandboxControl(root).call("GET", "/contacts")["contacts"]) == 2
    again = google.write_contacts([ContactWrite(None, "twin@example.com", {})])
    assert again[0].contact
    assert again[0].contact.id == results[1].contact.id


def test_an_update_replaces_only_the_primary_email_and_phone(
    google: GoogleConnector, root: str
) -> None:
    person = {
        "names": [{"givenName": "Ada", "middleName": "King", "familyName": "Lovelace"}],
        "emailAddresses": [{"value": "ada@work.example"}, {"value": "ada@home.example"}],
        "phoneNumbers": [{"value": "+44 1"}, {"value": "+44 2"}],
        "organizations": [{"name": "Analytical", "department": "R&D"}],
    }
    [created] = google.client.batch_create([person], read_mask="metadata")
    rn = created["person"]["resourceName"]
    [result] = google.write_contacts(
        [
            ContactWrite(
                rn,
                "ada@new.example",
                {"email": "ada@new.example", "phone": "+44 9", "family_name": "Byron"},
            )
        ]
    )
    assert result.ok
    assert result.contact
    assert result.contact.email == "ada@new.example"
    native = SandboxControl(root).call("GET", f"/contacts/{rn}")
    assert [e["value"] for e in native["emailAddresses"]] == ["ada@new.example", "ada@home.example"]
    assert [p["value"] for p in native["phoneNumbers"]] == ["+44 9", "+44 2"]
    assert native["names"][0]["middleName"] == "King"
    assert native["names"][0]["familyName"] == "Byron"
    assert native["organizations"][0]["department"] == "R&D"


def test_updates_go_in_batches_of_200_and_return_the_new_etag(
    google: GoogleConnector, root: str
) -> None:
    ids = seed(root, 250)
    before = google.get_contacts(ids)
    SandboxControl(root).call("POST", "/stats/reset")
    writes = [ContactWrite(rn, None, {"organization": "Acme"}, ref=rn) for rn in ids]
    results = google.write_contacts(writes)
    assert all(r.ok for r in results)
    assert all(r.contact and r.contact.version != before[r.ref].version for r in results)
    assert all(r.contact and r.contact.fields["organization"] == "Acme" for r in results)
    counts = stats(root)
    assert counts["POST /v1/people:batchUpdateContacts"] == 2
    # the people just read stand in for the read an update needs before it
    assert counts.get("GET /v1/people:batchGet", 0) == 0


def test_an_update_reads_the_whole_people_first_when_it_has_not_just_read_them(
    google: GoogleConnector, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = seed(root, 250, phone="+1 555 0100")
    google.get_contacts(ids[:10])
    monkeypatch.setattr(google, "just_read_seconds", -1.0)  # that read is too old now
    SandboxControl(root).call("POST", "/stats/reset")
    writes = [ContactWrite(rn, None, {"organization": "Acme"}) for rn in ids]
    results = google.write_contacts(writes)
    assert all(r.ok for r in results)
    assert stats(root)["GET /v1/people:batchGet"] == 2
    # what the write did not change is kept (Google replaces each field it is sent)
    assert all(r.contact and r.contact.fields["phone"] == "+1 555 0100" for r in results)


def test_a_person_edited_after_our_read_keeps_that_edit_under_our_update(
    google: GoogleConnector, root: str
) -> None:
    [rn] = seed(root, 1)
    google.get_contacts([rn])
    SandboxControl(root).call("PATCH", f"/contacts/{rn}", {"title": "CEO"})
    [result] = google.write_contacts([ContactWrite(rn, None, {"given_name": "Grace"})])
    assert result.ok
    assert result.contact
    assert result.contact.fields["given_name"] == "Grace"
    assert result.contact.fields["job_title"] == "CEO"  # the stale etag was retried on top


def test_a_stale_etag_is_retried_once_on_top_of_the_newer_person(
    google: GoogleConnector, root: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    [rn] = seed(root, 1)
    original = google.client.batch_update
    calls = []

    def edited_meanwhile(*args: Any, **kwargs: Any) -> Any:
        if not calls:  # a person edits the contact between our read and our write
            SandboxControl(root).call("PATCH", f"/contacts/{rn}", {"title": "CEO"})
        calls.append(1)
        return original(*args, **kwargs)

    monkeypatch.setattr(google.client, "batch_update", edited_meanwhile)
    [result] = google.write_contacts([ContactWrite(rn, None, {"given_name": "Grace"})])
    assert result.ok
    assert result.contact
    assert result.contact.fields["given_name"] == "Grace"
    assert result.contact.fields["job_title"] == "CEO"
    assert len(calls) == 2


def test_a_rejected_contact_carries_googles_message_and_the_rest_is_written(
    google: GoogleConnector, root: str
) -> None:
    ids = seed(root, 2)
    results = google.write_contacts(
        [
            ContactWrite(None, "ok@example.com", {"email": "ok@example.com"}),
            ContactWrite(None, "bad@example.com", {"email": "bad@example.com", "custom: ": "x"}),
            ContactWrite(ids[0], None, {"custom: ": "x"}),
            ContactWrite(ids[1], None, {"given_name": "Fine"}),
        ]
    )
    assert results[0].ok
    assert isinstance(results[1].error, ContactRejected)
    assert "userDefined.key" in results[1].error.message
    assert isinstance(results[2].error, ContactRejected)
    assert results[3].ok
    assert results[3].contact
    assert results[3].contact.fields["given_name"] == "Fine"


def test_an_update_of_a_deleted_contact_reports_it_gone(google: GoogleConnector, root: str) -> None:
    [rn] = seed(root, 1)
    SandboxControl(root).call("DELETE", f"/contacts/{rn}")
    [result] = google.write_contacts([ContactWrite(rn, None, {"given_name": "X"})])
    assert isinstance(result.error, NotFound)


# -- tags (labels) ---------------------------------------------------------------------


def test_tags_are_user_labels_and_system_groups_are_not_tags(
    google: GoogleConnector, root: str
) -> None:
    [rn] = seed(root, 1, tags=["VIP"])
    google.client.modify_members("contactGroups/starred", add=[rn])
    contact = google.get_contacts([rn])[rn]
    assert contact.tags == frozenset({"VIP"})


def test_contacts_in_system_groups_only_are_read_without_reading_the_labels(
    google: GoogleConnector, root: str
) -> None:
    [rn] = seed(root, 1)
    google.client.modify_members("contactGroups/starred", add=[rn])
    SandboxControl(root).call("POST", "/stats/reset")
    contacts, _ = read_all(google)
    assert [c.tags for c in contacts] == [frozenset()]
    assert "GET /v1/contactGroups" not in stats(root)


def test_adding_a_tag_creates_its_label_and_membership_changes_are_batched_by_label(
    google: GoogleConnector, root: str
) -> None:
    ids = seed(root, 25, tags=["Old"])
    google.members_batch_size = 10
    SandboxControl(root).call("POST", "/stats/reset")
    writes = [
        ContactWrite(rn, None, add_tags=frozenset({"New"}), remove_tags=frozenset({"Old"}))
        for rn in ids
    ]
    results = google.write_contacts(writes)
    assert all(r.ok and r.contact and r.contact.tags == frozenset({"New"}) for r in results)
    counts = stats(root)
    assert counts["POST /v1/contactGroups"] == 1
    # 25 adds to "New" and 25 removals from "Old", at most 10 names a call
    assert counts["POST /v1/contactGroups/{id}/members:modify"] == 6
    assert "POST /v1/people:batchUpdateContacts" not in counts
    created = google.write_contacts(
        [ContactWrite(None, "t@example.com", add_tags=frozenset({"New"}))]
    )
    assert created[0].contact
    assert created[0].contact.tags == frozenset({"New"})


def test_a_label_created_meanwhile_elsewhere_is_found_after_the_409(
    google: GoogleConnector, root: str
) -> None:
    [rn] = seed(root, 1)
    google.side_options()  # caches the labels before "Team" exists
    SandboxControl(root).call("POST", "/contacts", {"email": "x@e.com", "tags": ["Team"]})
    [result] = google.write_contacts([ContactWrite(rn, None, add_tags=frozenset({"Team"}))])
    assert result.contact
    assert result.contact.tags == frozenset({"Team"})
    assert stats(root)["POST /v1/contactGroups"] == 1


def test_a_contact_group_setting_limits_reads_and_new_contacts_join_it(
    server: SandboxServer, root: str
) -> None:
    seed(root, 3, tags=["Customers"])
    seed(root, 2)
    probe = connect(server, root)
    [(group, label)] = probe.side_options()["contact_group"]
    assert label == "Customers"
    google = connect(server, root, {"contact_group": group})
    contacts, _ = read_all(google)
    assert len(contacts) == 3
    assert all(c.tags == frozenset() for c in contacts)  # the scope label is not a tag
    [result] = google.write_contacts(
        [ContactWrite(None, "n@example.com", {"email": "n@example.com"})]
    )
    assert result.contact
    native = SandboxControl(root).call("GET", f"/contacts/{result.contact.id}")
    groups = {
        m["contactGroupMembership"]["contactGroupResourceName"] for m in native["memberships"]
    }
    assert groups == {group, "contactGroups/myContacts"}


# -- failures ---------------------------------------------------------------------------


def test_rate_limits_are_waited_out_honouring_retry_after(
    google: GoogleConnector, root: str
) -> None:
    seed(root, 3)
    google.page_size = 1
    SandboxControl(root).call("POST", "/config", {"rate_limit": 1, "rate_window": 2.0})
    contacts, _ = read_all(google)
    assert len(contacts) == 3
    assert stats(root)["429"] >= 1


def test_server_errors_are_retried(google: GoogleConnector, root: str) -> None:
    seed(root, 20)
    google.page_size = 2
    # half the requests fail: at least one of the 11 does (but for 1 run in 2,000),
    # and thirty misses in a row never happen
    google.http.max_attempts = 30
    SandboxControl(root).call("POST", "/config", {"error_rate": 0.5})
    contacts, _ = read_all(google)
    assert len(contacts) == 20
    assert stats(root).get("503", 0) >= 1


def test_an_expired_access_token_is_refreshed_once(google: GoogleConnector, root: str) -> None:
    seed(root, 1)
    old = google.http.credentials.access_token
    SandboxControl(root).call("POST", "/tokens/expire")
    contacts, _ = read_all(google)
    assert len(contacts) == 1
    assert google.http.credentials.access_token != old
    assert stats(root)["POST /token"] == 1


def test_a_revoked_grant_is_an_auth_error(google: GoogleConnector, root: str) -> None:
    SandboxControl(root).call("POST", "/tokens/revoke")
    SandboxControl(root).call("POST", "/tokens/expire")
    with pytest.raises(AuthError):
        google.check()


def test_errors_carry_googles_own_message(google: GoogleConnector, root: str) -> None:
    with pytest.raises(NotFound, match="Requested entity was not found"):
        google.http.get_json("/people/c1", params={"personFields": "names"})
    with pytest.raises(PermanentError, match="Invalid personFields mask path"):
        google.client.list_connections(person_fields="nonsense", page_size=10)


def test_the_token_url_follows_a_base_url_override() -> None:
    assert GoogleConnector.token_url_for("https://people.googleapis.com/v1") == (
        "https://oauth2.googleapis.com/token"
    )
    assert GoogleConnector.token_url_for("http://127.0.0.1:9/google/v1") == (
        "http://127.0.0.1:9/google/token"
    )


# -- the sandbox itself -----------------------------------------------------------------


def auth(google: GoogleConnector) -> dict[str, str]:
    return {"Authorization": f"Bearer {google.http.credentials.access_token}"}


def test_sandbox_payloads_have_the_documented_keys(google: GoogleConnector, root: str) -> None:
    documented = json.loads((FIXTURES / "documented_shapes.json").read_text())
    seed(root, 3, tags=["VIP"], phone="+1 2", company="Acme", title="CTO")
    api = f"{root}/v1"
    listing = requests.get(
        f"{api}/people/me/connections",
        params={
            "personFields": "names,emailAddresses,phoneNumbers,organizations,memberships,metadata",
            "pageSize": 2,
            "requestSyncToken": "true",
        },
        headers=auth(google),
        timeout=5,
    ).json()
    assert (
        set(documented["ListConnectionsResponse"])
        >= set(listing)
        >= {
            "connections",
            "nextPageToken",
        }
    )
    person = listing["connections"][0]
    for key, sub in documented["Person"].items():
        assert key in person
        assert set(sub) <= set(person[key][0]) if isinstance(person[key], list) else True
    assert {"updateTime", "etag", "type", "id"} <= set(person["metadata"]["sources"][0])
    groups = requests.get(f"{api}/contactGroups", headers=auth(google), timeout=5).json()
    assert set(documented["ContactGroup"]) <= set(groups["contactGroups"][-1])
    error = requests.get(
        f"{api}/people/me/connections",
        params={"personFields": "names", "syncToken": "bad"},
        headers=auth(google),
        timeout=5,
    ).json()
    assert set(error["error"]) == set(documented["Error"])


def test_sandbox_refuses_a_page_token_with_other_parameters(
    google: GoogleConnector, root: str
) -> None:
    seed(root, 3)
    first = google.client.list_connections(person_fields="names", page_size=1)
    with pytest.raises(PermanentError, match="must match"):
        google.client.list_connections(
            person_fields="names,emailAddresses", page_size=1, page_token=first["nextPageToken"]
        )


def test_sandbox_refuses_batches_over_the_limit(google: GoogleConnector, root: str) -> None:
    response = requests.post(
        f"{root}/v1/people:batchCreateContacts",
        json={"contacts": [{"contactPerson": {}}] * 201, "readMask": "names"},
        headers=auth(google),
        timeout=5,
    )
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_sandbox_rejects_calls_without_a_token(root: str) -> None:
    response = requests.get(
        f"{root}/v1/people/me/connections", params={"personFields": "names"}, timeout=5
    )
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_sandbox_has_no_unsubscribe(root: str) -> None:
    [rn] = seed(root, 1)
    with pytest.raises(SandboxControlError) as refused:
        SandboxControl(root).call("POST", f"/contacts/{rn}/unsubscribe")
    assert refused.value.status == 400


def test_sandbox_seeds_and_pages_many_contacts_quickly(google: GoogleConnector, root: str) -> None:
    started = time.monotonic()
    for _ in range(4):
        seed(root, 5000)
    google.page_size = 1000
    first = next(iter(google.changes(None)))
    assert len(first.contacts) == 1000
    assert time.monotonic() - started < 10
