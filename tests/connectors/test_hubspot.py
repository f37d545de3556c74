"""The HubSpot connector against its sandbox, over real HTTP on loopback."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connectors.base import (
    AuthError,
    ContactRejected,
    ContactWrite,
    Credentials,
    FieldType,
    NotFound,
    Page,
    Semantic,
)
from connectors.hubspot.connector import HubSpotConnector
from connectors.sandbox import SandboxServer, api_base_url, serve
from connectors.sandbox.control import SandboxControl, SandboxControlError
from tests.sandbox_limits import realistic

PRIVATE_APP_TOKEN = "pat-na1-sandbox-test"


class SmallPages(HubSpotConnector):
    page_size = 7
    search_page_size = 5
    write_batch_size = 100


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("hubspot",), tokens=(PRIVATE_APP_TOKEN,))
    yield srv
    srv.stop()


@pytest.fixture
def base(server: SandboxServer) -> str:
    url = api_base_url(server, "hubspot")
    SandboxControl(url).call("POST", "/reset")
    realistic(url, "hubspot")
    return url


Factory = Callable[..., HubSpotConnector]


@pytest.fixture
def connect(base: str) -> Factory:
    def make(cls: type[HubSpotConnector] = HubSpotConnector, **settings: Any) -> HubSpotConnector:
        token = SandboxControl(base).call("POST", "/tokens")
        credentials = Credentials(
            access_token=token["access_token"], refresh_token=token["refresh_token"]
        )
        connector = cls(credentials, settings, base_url=base, account_key=f"test-{id(settings)}")
        connector.http.backoff_base = 0.01
        return connector

    return make


def seed(base: str, people: list[dict[str, Any]]) -> list[str]:
    answer = SandboxControl(base).call("POST", "/contacts/bulk", {"contacts": people})
    return answer["ids"]


def stats(base: str) -> dict[str, int]:
    return SandboxControl(base).call("GET", "/stats")


def read_all(pages: Iterator[Page]) -> list[Page]:
    return list(pages)


def ids_of(pages: list[Page]) -> list[str]:
    return [c.id for p in pages for c in p.contacts]


# ---------------------------------------------------------------- account + schema


def test_check_names_the_portal_and_the_authorizing_user(connect: Factory) -> None:
    info = connect().check()
    assert info.remote_id == "20250101"
    assert "sandbox.user@example.com" in info.label
    assert "crm.objects.contacts.write" in info.extra["scopes"]


def test_a_private_app_token_works_and_never_needs_a_refresh(base: str) -> None:
    connector = HubSpotConnector(Credentials(api_key=PRIVATE_APP_TOKEN), base_url=base)
    assert connector.check().remote_id == "20250101"
    assert connector.http.refresher is None


def test_the_token_endpoint_follows_the_base_url(base: str) -> None:
    assert HubSpotConnector(Credentials()).token_url() == "https://api.hubapi.com/oauth/v1/token"
    assert HubSpotConnector(Credentials(), base_url=base).token_url() == f"{base}/oauth/v1/token"


def test_fields_pair_standard_properties_by_meaning_and_list_custom_ones(
    base: str, connect: Factory
) -> None:
    connector = connect()
    created = connector.client.http.request(
        "POST",
        "/crm/v3/properties/contacts",
        json={
            "name": "favourite_colour",
            "label": "Favourite colour",
            "type": "enumeration",
            "fieldType": "select",
            "groupName": "contactinformation",
            "options": [{"label": "Red", "value": "red"}, {"label": "Blue", "value": "blue"}],
        },
    )
    assert created.status_code == 201
    fields = {f.key: f for f in connector.fields()}
    assert fields["email"].semantic == Semantic.EMAIL
    assert fields["firstname"].semantic == Semantic.FIRST_NAME
    assert fields["full_name"].parts == ("firstname", "lastname")
    assert fields["jobtitle"].semantic == Semantic.TITLE
    assert fields["website"].type == FieldType.URL
    assert fields["lifecyclestage"].semantic == Semantic.LEAD_STAGE
    assert "customer" in fields["lifecyclestage"].choices
    assert fields["favourite_colour"].custom
    assert fields["favourite_colour"].choices == (
        "red",
        "blue",
    )
    assert fields["createdate"].read_only
    assert not fields["createdate"].custom
    assert "hs_email_domain" not in fields  # calculated
    assert not fields["city"].custom


# ---------------------------------------------------------------- reading


def test_a_full_read_pages_through_every_contact_and_can_resume_after_each_page(
    base: str, connect: Factory
) -> None:
    ids = seed(base, [{"email": f"p{i}@example.com", "first_name": f"P{i}"} for i in range(30)])
    connector = connect(SmallPages)
    pages = read_all(connector.changes(None))
    # two list calls of 7 to a page: 14, 14, 2
    assert [len(p.contacts) for p in pages] == [14, 14, 2]
    assert all(p.full_scan for p in pages)
    assert [p.done for p in pages] == [False, False, True]
    assert ids_of(pages) == ids
    # a crash after page 1: the saved cursor resumes with page 2
    resumed = read_all(connect(SmallPages).changes(pages[0].cursor))
    assert ids_of(resumed) == ids[14:]
    assert stats(base)["GET /crm/v3/objects/contacts"] == 5 + 3


def test_a_full_read_reads_the_next_page_while_the_run_works_on_one(
    base: str, connect: Factory
) -> None:
    """Each list call needs the ``after`` of the one before: without reading
    ahead, a run's writes of one page wait for the next page's calls and
    those for the writes. The next page's calls go out before it is asked for."""
    ids = seed(base, [{"email": f"p{i}@example.com"} for i in range(30)])
    pages = connect(SmallPages).changes(None)
    first = next(pages)
    assert ids_of([first]) == ids[:14]
    # the run works on the first page: the second page's two calls are made meanwhile
    deadline = time.monotonic() + 30
    while stats(base).get("GET /crm/v3/objects/contacts", 0) < 4:
        assert time.monotonic() < deadline, "the next page was not read ahead"
        time.sleep(0.02)
    assert ids_of(list(pages)) == ids[14:]
    assert stats(base)["GET /crm/v3/objects/contacts"] == 5


def test_a_full_read_stopped_early_leaves_no_call_on_the_wire(base: str, connect: Factory) -> None:
    seed(base, [{"email": f"p{i}@example.com"} for i in range(30)])
    connector = connect(SmallPages)
    pages = connector.changes(None)
    next(pages)
    pages.close()  # the run failed on page 1
    sent = connector.http.stats["GET /crm/v3/objects/contacts"]
    assert sent == stats(base)["GET /crm/v3/objects/contacts"] <= 4


def test_contacts_come_back_with_canonical_values_and_tags(base: str, connect: Factory) -> None:
    (cid,) = seed(
        base,
        [
            {
                "email": "Ada@Example.com",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "company": "Engines",
                "title": "Analyst",
                "tags": ["vip", "beta tester"],
            }
        ],
    )
    (contact,) = read_all(connect().changes(None))[0].contacts
    assert contact.id == cid
    assert contact.email == "ada@example.com"  # HubSpot stores emails lower-cased
    assert contact.fields["firstname"] == "Ada"
    assert contact.fields["company"] == "Engines"
    assert contact.fields["jobtitle"] == "Analyst"
    assert contact.fields["phone"] is None
    assert contact.tags == {"vip", "beta tester"}
    assert contact.updated_at is not None
    assert contact.version


def test_an_incremental_read_reports_a_change_once_despite_the_overlap(
    base: str, connect: Factory
) -> None:
    ids = seed(base, [{"email": f"p{i}@example.com"} for i in range(5)])
    connector = connect()
    cursor = read_all(connector.changes(None))[-1].cursor
    SandboxControl(base).call("PATCH", f"/contacts/{ids[2]}", {"last_name": "Changed"})
    pages = read_all(connector.changes(cursor))
    assert not any(p.full_scan for p in pages)
    assert pages[-1].done
    changed = [c for p in pages for c in p.contacts]
    assert [(c.id, c.fields["lastname"]) for c in changed] == [(ids[2], "Changed")]
    # the next run re-reads the overlap window but reports nothing new
    again = read_all(connector.changes(pages[-1].cursor))
    assert ids_of(again) == []
    assert stats(base)["POST /crm/v3/objects/contacts/search"] == 2


def test_many_changes_in_one_millisecond_are_walked_in_small_pages_without_loss(
    base: str, connect: Factory
) -> None:
    connector = connect(SmallPages)
    cursor = read_all(connector.changes(None))[-1].cursor
    # one bulk answer stamps every contact with the same lastmodifieddate
    created = connector.write_contacts(
        [ContactWrite(None, f"tie{i}@example.com", {"firstname": "T"}) for i in range(23)]
    )
    assert all(r.ok for r in created)
    pages = read_all(connector.changes(cursor))
    reported = ids_of(pages)
    assert sorted(reported) == sorted(r.contact.id for r in created if r.contact)
    assert len(reported) == len(set(reported))


class FewSeen(HubSpotConnector):
    search_page_size = 50
    max_seen_in_cursor = 10


def test_a_burst_re_read_in_the_overlap_is_not_reported_again_whole(
    base: str, connect: Factory
) -> None:
    """More writes in one millisecond than the cursor remembers: the next run
    re-reads the overlap and reports again only those it could not remember
    (it used to remember none of them and report the whole burst again)."""
    connector = connect(FewSeen)
    cursor = read_all(connector.changes(None))[-1].cursor
    created = connector.write_contacts(
        [ContactWrite(None, f"burst{i}@example.com", {"firstname": "B"}) for i in range(23)]
    )
    assert all(r.ok for r in created)
    pages = read_all(connector.changes(cursor))
    assert len(set(ids_of(pages))) == 23
    again = ids_of(read_all(connector.changes(pages[-1].cursor)))
    assert len(again) <= 23 - FewSeen.max_seen_in_cursor


class ShortLag(SmallPages):
    overlap_ms = 1_000
    min_overlap_ms = 500
    full_scan_margin_ms = 0


def test_the_overlap_counts_from_when_each_page_was_read_not_from_the_run_start(
    base: str, connect: Factory
) -> None:
    """The next run re-reads what this one may have missed: changes made less
    than the index's lag before the page that should have shown them was
    read. A run that read recent changes long after they were made (its first
    pages took a while) leaves nothing to re-read; measuring from the run's
    first page re-read them all."""
    ids = seed(base, [{"email": f"p{i}@example.com"} for i in range(12)])
    connector = connect(ShortLag)
    cursor = read_all(connector.changes(None))[-1].cursor
    for cid in ids[:5]:  # changed long before the run: its first page
        SandboxControl(base).call("PATCH", f"/contacts/{cid}", {"company": "Old"})
    time.sleep(2.2)  # more than the lag (and the Date header's rounding)
    for cid in ids[5:]:  # changed just before the run, read once it has worked a while
        SandboxControl(base).call("PATCH", f"/contacts/{cid}", {"company": "New"})
    pages = connector.changes(cursor)
    first = next(pages)
    assert ids_of([first]) == ids[:5]
    time.sleep(2.2)  # the run writes the first page before it reads on
    rest = read_all(pages)
    assert sorted(ids_of(rest)) == sorted(ids[5:])
    before = stats(base)["POST /crm/v3/objects/contacts/search"]
    again = read_all(connector.changes(rest[-1].cursor))
    assert ids_of(again) == []
    # nothing left to re-read: one search, answering nothing
    assert stats(base)["POST /crm/v3/objects/contacts/search"] - before == 1


def test_an_incremental_read_resumes_from_any_page_cursor(base: str, connect: Factory) -> None:
    ids = seed(base, [{"email": f"p{i}@example.com"} for i in range(3)])
    connector = connect(SmallPages)
    cursor = read_all(connector.changes(None))[-1].cursor
    for cid in ids:
        SandboxControl(base).call("PATCH", f"/contacts/{cid}", {"company": "New"})
    more = seed(base, [{"email": f"q{i}@example.com"} for i in range(12)])
    pages = read_all(connector.changes(cursor))
    everything = set(ids_of(pages))
    assert everything == set(ids + more)
    for n, page in enumerate(pages[:-1]):
        rest = read_all(connect(SmallPages).changes(page.cursor))
        seen_before = set(ids_of(pages[: n + 1]))
        assert seen_before | set(ids_of(rest)) == everything
        assert rest[-1].done


def test_archived_contacts_are_reported_as_deleted_once(base: str, connect: Factory) -> None:
    ids = seed(base, [{"email": f"p{i}@example.com"} for i in range(4)])
    connector = connect()
    cursor = read_all(connector.changes(None))[-1].cursor
    SandboxControl(base).call("DELETE", f"/contacts/{ids[1]}")
    pages = read_all(connector.changes(cursor))
    deleted = [c for p in pages for c in p.contacts if c.deleted]
    assert [(c.id, c.email) for c in deleted] == [(ids[1], "p1@example.com")]
    assert ids_of(read_all(connector.changes(pages[-1].cursor))) == []
    assert connector.get_contacts([ids[1]]) == {}


def test_a_bad_cursor_falls_back_to_a_full_read(base: str, connect: Factory) -> None:
    seed(base, [{"email": "a@example.com"}])
    pages = read_all(connect().changes("not json"))
    assert pages[0].full_scan
    assert len(ids_of(pages)) == 1


def test_find_by_emails_folds_case_and_get_contacts_drops_unknown_ids(
    base: str, connect: Factory
) -> None:
    ids = seed(base, [{"email": "ada@example.com"}, {"email": "bob@example.com"}])
    connector = connect()
    found = connector.find_by_emails([" ADA@example.com", "nobody@example.com"])
    assert list(found) == ["ada@example.com"]
    assert found["ada@example.com"][0].id == ids[0]
    got = connector.get_contacts([ids[1], "999999", "not-an-id"])
    assert list(got) == [ids[1]]


# ---------------------------------------------------------------- writing


def test_writes_go_in_batches_of_at_most_100(base: str, connect: Factory) -> None:
    connector = connect()
    results = connector.write_contacts(
        [ContactWrite(None, f"n{i}@example.com", {"firstname": f"N{i}"}) for i in range(230)]
    )
    assert all(r.ok for r in results)
    assert [r.contact.email for r in results if r.contact][:2] == [
        "n0@example.com",
        "n1@example.com",
    ]
    updates = connector.write_contacts(
        [
            ContactWrite(r.contact.id, r.contact.email, {"company": "Acme"})
            for r in results
            if r.contact
        ]
    )
    assert all(u.ok and u.contact and u.contact.fields["company"] == "Acme" for u in updates)
    counts = stats(base)
    assert counts["POST /crm/v3/objects/contacts/batch/create"] == 3
    assert counts["POST /crm/v3/objects/contacts/batch/update"] == 3


def test_one_invalid_contact_is_rejected_with_hubspots_message_and_the_rest_are_written(
    base: str, connect: Factory
) -> None:
    ids = seed(base, [{"email": "a@example.com"}, {"email": "b@example.com"}])
    connector = connect()
    results = connector.write_contacts(
        [
            ContactWrite(None, "good@example.com", {"firstname": "Good"}),
            ContactWrite(None, "not-an-email", {"firstname": "Bad"}),
            ContactWrite(ids[0], "a@example.com", {"lifecyclestage": "bogus"}),
            ContactWrite(ids[1], "b@example.com", {"lifecyclestage": "customer"}),
            ContactWrite("424242", "gone@example.com", {"firstname": "Gone"}),
        ]
    )
    good, bad_email, bad_option, fine, gone = results
    assert good.ok
    assert fine.ok
    assert fine.contact
    assert fine.contact.fields["lifecyclestage"] == "customer"
    assert isinstance(bad_email.error, ContactRejected)
    assert bad_email.error.message == "Email address not-an-email is invalid"
    assert isinstance(bad_option.error, ContactRejected)
    assert bad_option.error.message.startswith("bogus was not one of the allowed options")
    assert isinstance(gone.error, NotFound)


def test_creating_an_email_that_exists_returns_the_existing_contact(
    base: str, connect: Factory
) -> None:
    (existing,) = seed(base, [{"email": "taken@example.com", "first_name": "First"}])
    connector = connect()
    results = connector.write_contacts(
        [
            ContactWrite(None, "Taken@Example.com", {"firstname": "Second"}),
            ContactWrite(None, "fresh@example.com", {}),
            ContactWrite(None, "fresh@example.com", {}),
        ]
    )
    assert [r.ok for r in results] == [True, True, True]
    assert results[0].contact
    assert results[0].contact.id == existing
    assert results[1].contact
    assert results[2].contact
    assert results[1].contact.id == results[2].contact.id
    emails = [
        c["properties"]["email"] for c in SandboxControl(base).call("GET", "/contacts")["contacts"]
    ]
    assert sorted(emails) == ["fresh@example.com", "taken@example.com"]


def test_custom_fields_round_trip_with_canonical_values(base: str, connect: Factory) -> None:
    connector = connect()
    for name, kind, field_type, options in [
        ("seats", "number", "number", []),
        ("is_partner", "bool", "booleancheckbox", []),
        ("renewal_date", "date", "date", []),
        ("last_demo_at", "datetime", "date", []),
        ("interests", "enumeration", "checkbox", ["crm", "email", "chat"]),
    ]:
        connector.client.create_property(
            {
                "name": name,
                "label": name,
                "type": kind,
                "fieldType": field_type,
                "groupName": "contactinformation",
                "options": [{"label": o, "value": o} for o in options],
            }
        )
    values = {
        "seats": 12,
        "is_partner": True,
        "renewal_date": "2025-03-01",
        "last_demo_at": "2024-11-05T14:30:00Z",
        "interests": ["chat", "crm"],
    }
    (result,) = connector.write_contacts([ContactWrite(None, "c@example.com", dict(values))])
    assert result.ok, result.error
    (contact,) = read_all(connect().changes(None))[0].contacts
    assert {k: contact.fields[k] for k in values} == values
    stored = SandboxControl(base).call("GET", f"/contacts/{contact.id}")
    assert stored["properties"]["interests"] == "chat;crm"
    cleared = connector.write_contacts(
        [ContactWrite(contact.id, contact.email, {"seats": None, "interests": None})]
    )
    assert cleared[0].ok
    again = connect().get_contacts([contact.id])[contact.id]
    assert again.fields["seats"] is None
    assert again.fields["interests"] is None


def test_tags_become_options_of_a_checkbox_property_created_on_first_use(
    base: str, connect: Factory
) -> None:
    connector = connect()
    (made,) = connector.write_contacts(
        [ContactWrite(None, "t@example.com", {}, add_tags=frozenset({"vip", "DriftSync Trash"}))]
    )
    assert made.contact
    assert made.contact.tags == {"vip", "DriftSync Trash"}
    prop = SandboxControl(base).call("GET", f"/contacts/{made.contact.id}")
    assert prop["properties"]["driftsync_tags"] == "DriftSync Trash;vip"
    # an update without the current contact reads its tags first, and only
    # the new option is added to the property
    (changed,) = connect().write_contacts(
        [
            ContactWrite(
                made.contact.id,
                "t@example.com",
                add_tags=frozenset({"new"}),
                remove_tags=frozenset({"vip"}),
            )
        ]
    )
    assert changed.contact
    assert changed.contact.tags == {"DriftSync Trash", "new"}
    options = requests.get(f"{base}/crm/v3/properties/contacts/driftsync_tags", timeout=5)
    assert options.status_code == 401  # the real path, behind auth
    definition = connect().client.get_property("driftsync_tags")
    assert definition
    assert definition["fieldType"] == "checkbox"
    assert [o["value"] for o in definition["options"]] == ["DriftSync Trash", "vip", "new"]
    counts = stats(base)
    assert counts["POST /crm/v3/properties/contacts"] == 1
    assert counts["PATCH /crm/v3/properties/contacts/{name}"] == 1


def test_the_tags_property_can_be_chosen_per_connection(base: str, connect: Factory) -> None:
    connector = connect(tags_property="my_tags")
    (made,) = connector.write_contacts(
        [ContactWrite(None, "t@example.com", {}, add_tags=frozenset({"x"}))]
    )
    assert made.ok
    (contact,) = read_all(connector.changes(None))[0].contacts
    assert contact.tags == {"x"}
    assert ("my_tags", "DriftSync tags (my_tags)") in connector.side_options()["tags_property"]


def test_a_tag_with_a_semicolon_is_refused_for_that_contact_only(connect: Factory) -> None:
    results = connect().write_contacts(
        [
            ContactWrite(None, "a@example.com", {}, add_tags=frozenset({"a;b"})),
            ContactWrite(None, "b@example.com", {}, add_tags=frozenset({"ok"})),
        ]
    )
    assert isinstance(results[0].error, ContactRejected)
    assert results[1].ok


# ---------------------------------------------------------------- failures


def test_rate_limits_are_waited_out(base: str, connect: Factory) -> None:
    seed(base, [{"email": f"p{i}@example.com"} for i in range(20)])
    connector = connect(SmallPages)
    connector.fields()
    SandboxControl(base).call("POST", "/config", {"rate_limit": 1, "rate_window": 2.0})
    pages = read_all(connector.changes(None))
    assert len(ids_of(pages)) == 20
    assert stats(base)["429"] >= 1


def test_server_errors_are_retried(base: str, connect: Factory) -> None:
    seed(base, [{"email": f"p{i}@example.com"} for i in range(20)])
    connector = connect(SmallPages)
    SandboxControl(base).call("POST", "/config", {"error_rate": 0.4})
    connector.http.max_attempts = 12
    pages = read_all(connector.changes(None))
    assert len(ids_of(pages)) == 20


def test_an_expired_token_is_refreshed_once(base: str, connect: Factory) -> None:
    connector = connect()
    old = connector.http.credentials.access_token
    SandboxControl(base).call("POST", "/tokens/expire")
    assert connector.check().remote_id == "20250101"
    assert connector.http.credentials.access_token != old
    assert stats(base)["401"] == 1


def test_a_revoked_token_is_an_auth_error(base: str, connect: Factory) -> None:
    connector = connect()
    SandboxControl(base).call("POST", "/tokens/revoke")
    SandboxControl(base).call("POST", "/tokens/expire")
    with pytest.raises(AuthError) as caught:
        connector.write_contacts([ContactWrite(None, "a@example.com", {"firstname": "A"})])
    assert "missing or unknown refresh token" in str(caught.value)


# ---------------------------------------------------------------- the sandbox itself


def auth(connector: HubSpotConnector) -> dict[str, str]:
    return {"Authorization": f"Bearer {connector.http.credentials.access_token}"}


def test_sandbox_payloads_have_hubspots_documented_shapes(base: str, connect: Factory) -> None:
    seed(base, [{"email": f"p{i}@example.com"} for i in range(3)])
    headers = auth(connect())
    listed = requests.get(
        f"{base}/crm/v3/objects/contacts", params={"limit": 2}, headers=headers, timeout=5
    ).json()
    record = listed["results"][0]
    assert set(record) == {"id", "properties", "createdAt", "updatedAt", "archived"}
    assert set(record["properties"]) == {
        "createdate",
        "email",
        "firstname",
        "hs_object_id",
        "lastmodifieddate",
        "lastname",
    }
    assert record["createdAt"].endswith("Z")
    assert isinstance(record["id"], str)
    assert set(listed["paging"]["next"]) == {"after", "link"}
    found = requests.post(
        f"{base}/crm/v3/objects/contacts/search",
        json={
            "filterGroups": [
                {
                    "filters": [
                        {
                            "propertyName": "email",
                            "operator": "IN",
                            "values": ["p1@example.com", "p2@example.com"],
                        }
                    ]
                }
            ]
        },
        headers=headers,
        timeout=5,
    ).json()
    assert found["total"] == 2
    assert len(found["results"]) == 2
    missing = requests.post(
        f"{base}/crm/v3/objects/contacts/batch/read",
        json={"inputs": [{"id": "1"}], "properties": []},
        headers=headers,
        timeout=5,
    )
    assert missing.status_code == 207
    assert missing.json()["errors"][0]["category"] == "OBJECT_NOT_FOUND"
    conflict = requests.post(
        f"{base}/crm/v3/objects/contacts",
        json={"properties": {"email": "p0@example.com"}},
        headers=headers,
        timeout=5,
    )
    assert conflict.status_code == 409
    body = conflict.json()
    assert set(body) == {"status", "message", "correlationId", "category"}
    assert body["category"] == "CONFLICT"
    assert body["message"].startswith("Contact already exists. Existing ID: ")
    unauthorized = requests.get(f"{base}/crm/v3/objects/contacts", timeout=5)
    assert unauthorized.status_code == 401
    assert unauthorized.json()["category"] == "INVALID_AUTHENTICATION"


def test_sandbox_rate_limit_answers_like_hubspot(base: str, connect: Factory) -> None:
    headers = auth(connect())
    SandboxControl(base).call("POST", "/config", {"rate_limit": 1, "rate_window": 5})
    requests.get(f"{base}/account-info/v3/details", headers=headers, timeout=5)
    limited = requests.get(f"{base}/account-info/v3/details", headers=headers, timeout=5)
    assert limited.status_code == 429
    body = limited.json()
    assert body["errorType"] == "RATE_LIMIT"
    assert body["policyName"] == "TEN_SECONDLY_ROLLING"
    assert limited.headers["X-HubSpot-RateLimit-Remaining"] == "0"


def test_sandbox_refuses_batches_over_100_and_search_past_10000(
    base: str, connect: Factory
) -> None:
    headers = auth(connect())
    too_many = requests.post(
        f"{base}/crm/v3/objects/contacts/batch/create",
        json={"inputs": [{"properties": {"email": f"x{i}@example.com"}} for i in range(101)]},
        headers=headers,
        timeout=5,
    )
    assert too_many.status_code == 400
    assert too_many.json()["category"] == "VALIDATION_ERROR"
    seed(base, [{"email": f"s{i}@example.com"} for i in range(10_010)])
    search = {"limit": 200, "sorts": [{"propertyName": "hs_object_id", "direction": "ASCENDING"}]}
    last = requests.post(
        f"{base}/crm/v3/objects/contacts/search",
        json={**search, "after": "9800"},
        headers=headers,
        timeout=10,
    ).json()
    assert last["total"] == 10_010
    # like HubSpot, it offers the next page and then refuses it
    assert last["paging"]["next"]["after"] == "10000"
    beyond = requests.post(
        f"{base}/crm/v3/objects/contacts/search",
        json={**search, "after": "10000"},
        headers=headers,
        timeout=10,
    )
    assert beyond.status_code == 400


def test_sandbox_control_api_speaks_the_neutral_person_shape(base: str) -> None:
    created = SandboxControl(base).call(
        "POST",
        "/contacts",
        {
            "email": "p@example.com",
            "first_name": "P",
            "custom": {"shoe_size": "42"},
            "tags": ["a"],
        },
    )
    cid = created["id"]
    patched = SandboxControl(base).call("PATCH", f"/contacts/{cid}", {"title": "CEO"})
    assert patched["properties"]["jobtitle"] == "CEO"
    assert patched["properties"]["shoe_size"] == "42"
    tagged = SandboxControl(base).call(
        "POST", f"/contacts/{cid}/tags", {"add": ["b"], "remove": ["a"]}
    )
    assert tagged["properties"]["driftsync_tags"] == "b"
    with pytest.raises(SandboxControlError) as refused:
        SandboxControl(base).call("POST", f"/contacts/{cid}/unsubscribe")
    assert refused.value.status == 400
    assert "subscription" in refused.value.message
    SandboxControl(base).call("DELETE", f"/contacts/{cid}")
    assert SandboxControl(base).call("GET", "/contacts") == {"contacts": []}
    assert SandboxControl(base).call("GET", f"/contacts/{cid}")["archived"] is True
    with pytest.raises(SandboxControlError) as missing:
        SandboxControl(base).call("GET", "/contacts/999")
    assert missing.value.status == 404


def test_the_oauth_token_endpoint_issues_and_refreshes_tokens(base: str) -> None:
    start = requests.get(
        f"{base}/oauth/authorize",
        params={"redirect_uri": "http://localhost/cb", "state": "s"},
        allow_redirects=False,
        timeout=5,
    )
    code = start.headers["Location"].split("code=")[1].split("&")[0]
    issued = requests.post(
        f"{base}/oauth/v1/token",
        data={"grant_type": "authorization_code", "code": code},
        timeout=5,
    ).json()
    assert {"access_token", "refresh_token", "expires_in"} <= set(issued)
    info = requests.get(f"{base}/oauth/v1/access-tokens/{issued['access_token']}", timeout=5)
    assert info.json()["hub_id"] == 20250101
    refused = requests.post(
        f"{base}/oauth/v1/token",
        data={"grant_type": "refresh_token", "refresh_token": "nope"},
        timeout=5,
    )
    assert refused.status_code == 400
    assert refused.json()["status"] == "BAD_REFRESH_TOKEN"
    assert json.loads(refused.text)["message"] == "missing or unknown refresh token"
