"""Google People API behaviour the first sandbox was too kind about (issue 12),
each pinned against the realistic sandbox defaults. The sources behind each
behaviour are in docs/api-fidelity.md."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests

from connectors.base import ContactWrite, Credentials
from connectors.google.connector import GoogleConnector
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl
from tests.sandbox_limits import realistic


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


def connect(server: SandboxServer, root: str) -> GoogleConnector:
    """A connector as a new run (or a restarted worker) makes it."""
    token = SandboxControl(root).call("POST", "/tokens", {})
    connector = GoogleConnector(
        Credentials(access_token=token["access_token"], refresh_token=token["refresh_token"]),
        {},
        base_url=api_base_url(server, "google"),
    )
    connector.http.backoff_base = 0.01
    return connector


@pytest.fixture
def google(server: SandboxServer, root: str) -> GoogleConnector:
    return connect(server, root)


def person(root: str, **neutral: Any) -> str:
    return SandboxControl(root).call("POST", "/contacts", neutral)["id"]


def native(root: str, rn: str, sources: str = "") -> dict[str, Any]:
    query = f"?sources={sources}" if sources else ""
    return SandboxControl(root).call("GET", f"/contacts/{rn}{query}")


def stats(root: str) -> dict[str, int]:
    return SandboxControl(root).call("GET", "/stats")


def api(root: str, token: str, method: str, path: str, **kwargs: Any) -> requests.Response:
    return requests.request(
        method,
        f"{root}/v1{path}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=5,
        **kwargs,
    )


def read_all(google: GoogleConnector, cursor: str | None = None) -> tuple[list, str | None]:
    contacts = []
    last = cursor
    for page in google.changes(cursor):
        contacts.extend(page.contacts)
        last = page.cursor
    return contacts, last


# -- profile sources ------------------------------------------------------------------


def test_by_default_some_seeded_contacts_carry_items_of_a_linked_profile(root: str) -> None:
    ids = [person(root, email=f"p{n}@example.com", first_name=f"P{n}") for n in range(6)]
    token = SandboxControl(root).call("POST", "/tokens", {})["access_token"]
    body = api(
        root,
        token,
        "GET",
        "/people:batchGet",
        params=[("personFields", "names,emailAddresses,metadata")]
        + [("resourceNames", rn) for rn in ids],
    ).json()
    kinds = [{s["type"] for s in r["person"]["metadata"]["sources"]} for r in body["responses"]]
    assert kinds.count({"CONTACT", "PROFILE"}) == 2
    linked = body["responses"][0]["person"]
    assert [n["metadata"]["source"]["type"] for n in linked["names"]] == ["PROFILE", "CONTACT"]
    only_contact = api(
        root,
        token,
        "GET",
        f"/{ids[0]}",
        params={"personFields": "names", "sources": "READ_SOURCE_TYPE_CONTACT"},
    ).json()
    assert [n["givenName"] for n in only_contact["names"]] == ["P0"]


def test_profile_items_are_never_read_as_the_contacts_own(
    google: GoogleConnector, root: str
) -> None:
    rn = person(root, email="ann@work.example", first_name="Ann", last_name="Lee", profile=True)
    contacts, _ = read_all(google)
    [contact] = contacts
    assert contact.email == "ann@work.example"
    assert contact.fields["given_name"] == "Ann"
    assert contact.fields["family_name"] == "Lee"
    assert contact.fields["organization"] is None
    assert google.get_contacts([rn])[rn].fields["given_name"] == "Ann"


def test_a_write_to_a_profile_linked_contact_carries_only_contact_items(
    google: GoogleConnector, root: str
) -> None:
    rn = person(root, email="bo@work.example", first_name="Bo", last_name="Li", profile=True)
    profile_email = native(root, rn, "READ_SOURCE_TYPE_PROFILE")["emailAddresses"][0]["value"]
    [result] = google.write_contacts(
        [
            ContactWrite(
                rn,
                "bo@new.example",
                {"given_name": "Bob", "email": "bo@new.example", "job_title": "CTO"},
            )
        ]
    )
    assert result.ok, result.error
    stored = native(root, rn)
    assert [n["givenName"] for n in stored["names"]] == ["Bob"]
    assert [e["value"] for e in stored["emailAddresses"]] == ["bo@new.example"]
    assert profile_email not in json.dumps(stored)
    assert [o.get("title") for o in stored["organizations"]] == ["CTO"]


def test_the_sandbox_refuses_profile_items_and_a_second_name_in_a_write(root: str) -> None:
    rn = person(root, email="cy@example.com", first_name="Cy")
    token = SandboxControl(root).call("POST", "/tokens", {})["access_token"]
    etag = native(root, rn)["etag"]
    profile_item = {"value": "x@gmail.example", "metadata": {"source": {"type": "PROFILE"}}}
    refused = api(
        root,
        token,
        "PATCH",
        f"/{rn}:updateContact",
        params={"updatePersonFields": "emailAddresses"},
        json={"etag": etag, "emailAddresses": [profile_item]},
    )
    assert refused.status_code == 400
    assert refused.json()["error"]["status"] == "INVALID_ARGUMENT"
    two_names = api(
        root,
        token,
        "PATCH",
        f"/{rn}:updateContact",
        params={"updatePersonFields": "names"},
        json={"etag": etag, "names": [{"givenName": "A"}, {"givenName": "B"}]},
    )
    assert two_names.status_code == 400
    assert "Cannot have more than one person.names per source" in two_names.text


def test_a_sync_token_saved_before_reads_asked_for_contact_sources_costs_one_full_read(
    google: GoogleConnector, root: str
) -> None:
    ids = [person(root, email=f"s{n}@example.com") for n in range(3)]
    token = SandboxControl(root).call("POST", "/tokens", {})["access_token"]
    # what the previous version saved: a sync token from a read without ``sources``
    old = api(
        root,
        token,
        "GET",
        "/people/me/connections",
        params={
            "personFields": "names,emailAddresses,phoneNumbers,organizations,birthdays,"
            "memberships,userDefined,metadata",
            "pageSize": 1000,
            "requestSyncToken": "true",
        },
    ).json()["nextSyncToken"]
    saved = json.dumps({"sync": old, "page": None, "full": False})
    pages = list(google.changes(saved))
    assert [p.full_scan for p in pages] == [True]
    assert {c.id for c in pages[0].contacts} == set(ids)
    # and from then on, incremental reads again
    SandboxControl(root).call("PATCH", f"/contacts/{ids[0]}", {"title": "CFO"})
    again = list(google.changes(pages[-1].cursor))
    assert [p.full_scan for p in again] == [False]
    assert [c.id for c in again[0].contacts] == [ids[0]]


# -- read after write ---------------------------------------------------------------------


def test_a_read_right_after_a_write_serves_the_previous_etag(google: GoogleConnector, root: str):
    rn = person(root, email="dee@example.com", first_name="Dee")
    before = google.client.batch_get([rn], person_fields="names")[0]["person"]
    [result] = google.write_contacts([ContactWrite(rn, None, {"given_name": "Dora"})])
    assert result.ok
    assert result.contact
    raw = google.client.batch_get([rn], person_fields="names")[0]["person"]
    assert raw["etag"] == before["etag"] != result.contact.version


def test_a_contact_updated_twice_in_a_row_keeps_both_changes(
    server: SandboxServer, root: str
) -> None:
    rn = person(root, email="eve@example.com", first_name="Eve")
    [first] = connect(server, root).write_contacts([ContactWrite(rn, None, {"given_name": "Eva"})])
    assert first.ok, first.error
    # the next run, a moment later: its read of the person still lags the write
    nxt = connect(server, root)
    assert nxt.get_contacts([rn])[rn].fields["given_name"] == "Eva"
    [second] = nxt.write_contacts([ContactWrite(rn, None, {"family_name": "Stone"})])
    assert second.ok, second.error
    stored = native(root, rn)["names"][0]
    assert (stored["givenName"], stored["familyName"]) == ("Eva", "Stone")


def test_fields_and_labels_of_one_contact_go_in_one_update(
    google: GoogleConnector, root: str
) -> None:
    rn = person(root, email="fay@example.com", first_name="Fay", tags=["Old"])
    google.side_options()
    SandboxControl(root).call("POST", "/stats/reset")
    [result] = google.write_contacts(
        [
            ContactWrite(
                rn,
                None,
                {"given_name": "Faye"},
                add_tags=frozenset({"New"}),
                remove_tags=frozenset({"Old"}),
            )
        ]
    )
    assert result.ok, result.error
    assert result.contact
    assert result.contact.tags == frozenset({"New"})
    assert result.contact.fields["given_name"] == "Faye"
    counts = stats(root)
    assert counts["POST /v1/people:batchUpdateContacts"] == 1
    assert "POST /v1/contactGroups/{id}/members:modify" not in counts


def test_a_label_only_change_answers_with_the_labels_it_set(
    google: GoogleConnector, root: str
) -> None:
    rn = person(root, email="gus@example.com", tags=["Old"])
    [result] = google.write_contacts(
        [ContactWrite(rn, None, add_tags=frozenset({"New"}), remove_tags=frozenset({"Old"}))]
    )
    assert result.ok, result.error
    assert result.contact
    assert result.contact.tags == frozenset({"New"})


# -- search lag ---------------------------------------------------------------------------


def test_a_create_after_a_lagging_search_returns_the_contact_instead_of_a_duplicate(
    server: SandboxServer, root: str
) -> None:
    [made] = connect(server, root).write_contacts(
        [ContactWrite(None, "hal@example.com", {"email": "hal@example.com"})]
    )
    assert made.contact
    # a run that crashed before committing its link; the next one looks again
    nxt = connect(server, root)
    assert nxt.find_by_emails(["hal@example.com"]) == {}  # the search cache lags
    [again] = nxt.write_contacts(
        [ContactWrite(None, "hal@example.com", {"email": "hal@example.com"})]
    )
    assert again.contact
    assert again.contact.id == made.contact.id
    stored = SandboxControl(root).call("GET", "/contacts")["contacts"]
    assert len(stored) == 1


# -- previousResourceNames ------------------------------------------------------------------


def link_profile(root: str, rn: str) -> str:
    return SandboxControl(root).call("POST", f"/contacts/{rn}/link-profile", {})["id"]


def test_a_contact_whose_resource_name_changed_reports_its_previous_id(
    google: GoogleConnector, root: str
) -> None:
    old = person(root, email="ivy@example.com", first_name="Ivy", profile=False)
    _, cursor = read_all(google)
    new = link_profile(root, old)
    changed, _ = read_all(google, cursor)
    [contact] = changed
    assert contact.id == new
    assert not contact.deleted
    assert contact.previous_ids == (old,)
    assert contact.fields["given_name"] == "Ivy"
    # a lookup by the old id (the binding still holds it) finds the contact
    found = google.get_contacts([old])
    assert found[old].id == new


@pytest.mark.django_db
def test_the_engine_keeps_the_binding_of_a_contact_whose_resource_name_changed() -> None:
    from connections.models import ContactLink, LinkStatus
    from connectors import sandbox
    from tests.engine.world import App, sync
    from tests.engine.world import connect as connect_apps

    full = sandbox.serve(keys=("google", "mailchimp"))
    try:
        g, m = App(full, "google"), App(full, "mailchimp")
        for app in (g, m):
            app.reset()
            app.make_account()
        conn = connect_apps(g, m)
        old = g.create("jo@example.com", "Jo", "Ng", profile=False)
        sync(conn)
        new = g.ctl("POST", f"/contacts/{old}/link-profile", {})["id"]
        g.edit(new, last_name="Ngo")
        # a dry run shows the edit going through and moves nothing
        dry = sync(conn, dry_run=True)
        links = ContactLink.objects.filter(connection=conn, email="jo@example.com")
        assert [link.id_a for link in links.all()] == [old]
        assert dry.status == dry.Status.SUCCEEDED
        assert m.one("jo@example.com").fields["LNAME"] == "Ng"
        sync(conn)
        # one binding, moved to the new resource name; no duplicate
        assert [(link.id_a, link.status) for link in links.all()] == [(new, LinkStatus.IN_SYNC)]
        assert m.one("jo@example.com").fields["LNAME"] == "Ngo"
    finally:
        full.stop()


def test_the_stale_window_and_search_lag_are_sandbox_settings(root: str) -> None:
    config = SandboxControl(root).call("GET", "/config")
    assert config["stale_read_window"] > 0
    assert config["search_lag"] > 0
    assert config["profile_share"] > 0
    changed = SandboxControl(root).call(
        "POST", "/config", {"stale_read_window": 0, "search_lag": 0}
    )
    assert (changed["stale_read_window"], changed["search_lag"]) == (0, 0)
    time.sleep(0)  # nothing to wait for: the settings apply to the next request


def test_a_new_google_sandbox_and_its_defaults_keep_the_real_window_and_google_behaviour() -> None:
    fresh = serve(keys=("google",))
    try:
        url = fresh.url("google")
        started = SandboxControl(url).call("GET", "/config")
        assert (started["rate_limit"], started["rate_window"]) == (90, 60.0)
        assert started["retry_after"] is False
        restored = SandboxControl(url).call("POST", "/config/defaults", {})
        assert restored == started
        assert restored["stale_read_window"] > 0
        assert restored["search_lag"] > 0
    finally:
        fresh.stop()
