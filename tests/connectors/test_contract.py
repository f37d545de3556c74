"""The Connector contract, checked against every registered connector.

Each connector runs against its sandbox over real HTTP, driven only through
the ``Connector`` interface and the sandboxes' common ``/_sandbox`` control
API (a person seeding, editing, tagging, deleting and unsubscribing in the
app). Where an app cannot do something, its capabilities say so and the test
asserts what it does instead; nothing is skipped.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

import pytest

from connectors import registry
from connectors.base import (
    AuthError,
    Connector,
    ConnectorError,
    Contact,
    ContactRejected,
    ContactWrite,
    Field,
    FieldType,
    Page,
    PermanentError,
    Semantic,
    normalize_email,
)
from connectors.sandbox import SandboxFacts, facts
from connectors.sandbox.control import SandboxControl, SandboxControlError

from .conftest import MakeConnector, http_client

KEYS = list(registry.CONNECTORS)

#: the custom field a person adds in each app (Mailchimp merge tags are <= 10 chars)
CUSTOM = "plan"


@pytest.fixture(params=KEYS)
def key(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def app(key: str) -> SandboxFacts:
    """What the app's sandbox module declares about it (its ``FACTS``)."""
    return facts(key)


@pytest.fixture
def sandbox(key: str, control: Callable[[str], SandboxControl]) -> SandboxControl:
    return control(key)


@pytest.fixture
def connector(key: str, make_connector: MakeConnector) -> Connector:
    return make_connector(key)


@pytest.fixture
def reconnect(key: str, make_connector: MakeConnector) -> Callable[[], Connector]:
    """A second instance on the same sandbox state, as after a restart."""
    return lambda: make_connector(key, fresh_sandbox=False)


# -------------------------------------------------------------- helpers


def standard(connector: Connector, semantic: Semantic) -> Field | None:
    for f in connector.fields():
        if f.semantic == semantic and not f.custom and not f.is_virtual:
            return f
    return None


def name_fields(connector: Connector, first: str, last: str) -> dict[str, Any]:
    """The name as this app keeps it: split (first, last) or one full name."""
    first_f, last_f = (
        standard(connector, Semantic.FIRST_NAME),
        standard(connector, Semantic.LAST_NAME),
    )
    if first_f and last_f:
        return {first_f.key: first, last_f.key: last}
    full = standard(connector, Semantic.FULL_NAME)
    assert full is not None, f"{connector.key} has neither split names nor a full name"
    return {full.key: f"{first} {last}"}


def email_write(connector: Connector, email: str, **fields: Any) -> ContactWrite:
    email_field = standard(connector, Semantic.EMAIL)
    assert email_field is not None
    return ContactWrite(None, email, {email_field.key: email, **fields})


def custom_field(connector: Connector) -> Field:
    found = [
        f for f in connector.fields() if f.custom and CUSTOM in f.key.casefold() and not f.read_only
    ]
    assert found, f"no custom field {CUSTOM!r} in {[f.key for f in connector.fields()]}"
    return found[0]


def people(count: int, prefix: str = "person") -> list[dict[str, Any]]:
    return [
        {"email": f"{prefix}{n}@example.com", "first_name": f"First{n}", "last_name": "Seeded"}
        for n in range(count)
    ]


def small_pages(connector: Connector, size: int = 3) -> None:
    """Every page size the connector reads with, made small for the test."""
    connector.page_size = size
    if hasattr(connector, "search_page_size"):
        connector.search_page_size = size  # type: ignore[attr-defined]
    if hasattr(connector, "list_calls_per_page"):
        connector.list_calls_per_page = 1  # type: ignore[attr-defined]  # HubSpot: a call a page


def read(pages: Iterable[Page]) -> list[Page]:
    out = list(pages)
    assert out, "a read yields at least one page"
    assert out[-1].done, "the last page of a read says done"
    assert all(not p.done for p in out[:-1]), "only the last page says done"
    return out


def contacts_of(pages: Iterable[Page]) -> dict[str, Contact]:
    return {c.id: c for p in pages for c in p.contacts}


def full_read(connector: Connector) -> tuple[dict[str, Contact], str]:
    pages = read(connector.changes(None))
    assert pages[-1].cursor, "a finished read leaves a cursor to resume from"
    return contacts_of(pages), pages[-1].cursor


def app_error(connector: Connector, write: ContactWrite) -> ConnectorError:
    try:
        [result] = connector.write_contacts([write])
    except ConnectorError as exc:
        return exc
    assert result.error is not None, f"{connector.key} accepted {write}"
    return result.error


# -------------------------------------------------------------- account and schema


def test_check_names_the_account(connector: Connector) -> None:
    info = connector.check()
    assert info.remote_id
    assert info.label


def test_fields_include_the_email_and_the_custom_fields_people_added(
    connector: Connector, sandbox: SandboxControl, reconnect: Callable[[], Connector]
) -> None:
    sandbox.create(email="schema@example.com", custom={CUSTOM: "Gold"})
    fields = reconnect().fields()
    emails = [f for f in fields if f.semantic == Semantic.EMAIL]
    assert emails
    assert emails[0].type == FieldType.EMAIL
    assert len({f.key for f in fields}) == len(fields), "field keys are unique"
    custom = [f for f in fields if f.custom]
    if connector.capabilities.custom_fields:
        assert any(CUSTOM in f.key.casefold() for f in custom), [f.key for f in custom]
    else:
        assert not custom


# -------------------------------------------------------------- reading


def test_paging_resumes_from_every_page_cursor_without_losing_a_contact(
    connector: Connector, sandbox: SandboxControl, reconnect: Callable[[], Connector]
) -> None:
    ids = sandbox.bulk(people(8))
    if not connector.capabilities.list_changes:
        with pytest.raises(PermanentError):
            list(connector.changes(None))
        return
    small_pages(connector)
    pages = read(connector.changes(None))
    assert len([p for p in pages if p.contacts]) >= 3, "8 contacts in pages of 3"
    assert all(p.full_scan for p in pages), "a read without a cursor is a full scan"
    assert set(contacts_of(pages)) == set(ids)
    assert all(not c.deleted for c in contacts_of(pages).values())
    for index, page in enumerate(pages[:-1]):
        # crash after this page: a new process resumes from its cursor
        assert page.cursor
        again = reconnect()
        small_pages(again)
        rest = read(again.changes(page.cursor))
        before = set(contacts_of(pages[: index + 1]))
        seen = before | set(contacts_of(rest))
        assert seen >= set(ids), f"lost {set(ids) - seen} resuming after page {index + 1}"
        redone = before & set(contacts_of(rest))
        assert len(redone) <= 3, f"resuming after page {index + 1} redid {len(redone)} contacts"


def test_changes_after_the_last_cursor_are_just_the_changed_contacts(
    connector: Connector, sandbox: SandboxControl
) -> None:
    ids = sandbox.bulk(people(6))
    if not connector.capabilities.list_changes:
        with pytest.raises(PermanentError):
            list(connector.changes(None))
        return
    small_pages(connector)
    _, cursor = full_read(connector)
    quiet = read(connector.changes(cursor))
    assert not contacts_of(quiet), "nothing changed, nothing reported"
    assert not quiet[-1].full_scan
    time.sleep(0.05)
    sandbox.edit(ids[1], first_name="Renamed")
    sandbox.edit(ids[4], last_name="Changed")
    pages = read(connector.changes(quiet[-1].cursor or cursor))
    changed = contacts_of(pages)
    assert set(changed) == {ids[1], ids[4]}
    assert not pages[-1].full_scan
    first_name = standard(connector, Semantic.FIRST_NAME) or standard(connector, Semantic.FULL_NAME)
    assert first_name is not None
    assert "Renamed" in str(changed[ids[1]].fields.get(first_name.key))


def test_an_incremental_read_resumes_from_every_page_cursor(
    connector: Connector, sandbox: SandboxControl, reconnect: Callable[[], Connector]
) -> None:
    ids = sandbox.bulk(people(9))
    if not connector.capabilities.list_changes:
        with pytest.raises(PermanentError):
            list(connector.changes(None))
        return
    small_pages(connector)
    _, cursor = full_read(connector)
    edited = ids[1:8]
    time.sleep(0.05)
    for n, contact_id in enumerate(edited):
        sandbox.edit(contact_id, company=f"Edited {n}")
    pages = read(connector.changes(cursor))
    assert set(contacts_of(pages)) == set(edited)
    for index, page in enumerate(pages[:-1]):
        assert page.cursor
        again = reconnect()
        small_pages(again)
        rest = read(again.changes(page.cursor))
        before = set(contacts_of(pages[: index + 1]))
        seen = before | set(contacts_of(rest))
        assert seen >= set(edited), f"lost {set(edited) - seen} resuming after page {index + 1}"
        assert seen <= set(ids)
        redone = before & set(contacts_of(rest))
        assert len(redone) <= 3, f"resuming after page {index + 1} redid {len(redone)} contacts"


def test_deletions_are_reported_where_the_app_can_tell(
    connector: Connector, sandbox: SandboxControl
) -> None:
    ids = sandbox.bulk(people(4))
    if connector.capabilities.list_changes:
        _, cursor = full_read(connector)
    sandbox.delete(ids[2])
    got = connector.get_contacts([ids[2], ids[0]])
    assert ids[0] in got
    assert ids[2] not in got or got[ids[2]].deleted, "a deleted contact reads as gone"
    if connector.capabilities.detect_deletions:
        changed = contacts_of(read(connector.changes(cursor)))
        assert set(changed) == {ids[2]}
        assert changed[ids[2]].deleted
    elif connector.capabilities.list_changes:
        changed = contacts_of(read(connector.changes(cursor)))
        assert ids[2] not in changed or not changed[ids[2]].deleted
    else:
        with pytest.raises(PermanentError):
            list(connector.changes(None))


def test_unsubscribes_are_reported_where_the_app_has_them(
    connector: Connector, sandbox: SandboxControl, sandbox_server: Any
) -> None:
    ids = sandbox.bulk(people(3))
    caps = connector.capabilities
    if caps.detect_unsubscribes and caps.list_changes:
        _, cursor = full_read(connector)
        sandbox.unsubscribe(ids[1])
        changed = contacts_of(read(connector.changes(cursor)))
        assert set(changed) == {ids[1]}
        assert changed[ids[1]].unsubscribed
        assert not changed[ids[1]].deleted
        assert connector.get_contacts([ids[1]])[ids[1]].unsubscribed
    elif caps.detect_unsubscribes:
        # an app that cannot list tells through its webhook
        assert caps.webhooks, "unsubscribes without listing need webhooks"
        hook = f"{sandbox_server.base_url}/contract-webhook-receiver"
        sandbox.register_webhook(hook, "contract-token")
        sandbox.unsubscribe(ids[1])
        deliveries = [d for d in sandbox.outbox() if d["url"] == hook]
        assert deliveries, "the unsubscribe was delivered as a webhook"
        events = []
        for delivery in deliveries:
            body = json.dumps(delivery["json"]).encode() if delivery["json"] else b""
            if delivery["form"]:
                body = "&".join(f"{k}={v}" for k, v in delivery["form"].items()).encode()
            content_type = (
                "application/json" if delivery["json"] else "application/x-www-form-urlencoded"
            )
            events += connector.parse_webhook(body, content_type, delivery["headers"])
        [event] = [e for e in events if e.kind == "unsubscribed"]
        assert event.contact_id == ids[1]
        assert normalize_email(event.email) == "person1@example.com"
        assert event.contact is not None
        assert event.contact.unsubscribed
    else:
        with pytest.raises(SandboxControlError) as refused:
            sandbox.unsubscribe(ids[1])
        assert refused.value.status == 400, "no unsubscribe notion: the sandbox says so"
        assert refused.value.message
        assert not connector.get_contacts([ids[1]])[ids[1]].unsubscribed
        if caps.list_changes:
            contacts = contacts_of(read(connector.changes(None)))
            assert not any(c.unsubscribed for c in contacts.values())


# -------------------------------------------------------------- writing


def test_write_contacts_creates_and_updates_in_batches(
    connector: Connector,
    sandbox: SandboxControl,
    app: SandboxFacts,
    reconnect: Callable[[], Connector],
) -> None:
    n = 5
    if connector.capabilities.batch_writes:
        connector.write_batch_size = 2
    else:
        assert connector.write_batch_size == 1
    batch = connector.write_batch_size
    create_endpoint, update_endpoint = app.create_route, app.update_route
    writes = [
        email_write(connector, f"new{i}@example.com", **name_fields(connector, f"New{i}", "Made"))
        for i in range(n)
    ]
    for i, write in enumerate(writes):
        write.ref = i
    sandbox.reset_stats()
    results = connector.write_contacts(writes)
    assert [r.ref for r in results] == list(range(n)), "one result per write, in order"
    assert all(r.ok for r in results), [r.error for r in results]
    created = [r.contact for r in results]
    assert all(c is not None and c.id for c in created)
    ids = [c.id for c in created if c is not None]
    assert len(set(ids)) == n
    assert [normalize_email(c.email if c else None) for c in created] == [
        f"new{i}@example.com" for i in range(n)
    ]
    sent = sandbox.stats().get(create_endpoint, 0)
    assert 1 <= sent <= math.ceil(n / batch), f"{sent} create requests for {n} in {batch}s"

    got = reconnect().get_contacts(ids)
    assert set(got) == set(ids)
    for i, contact_id in enumerate(ids):
        for field_key, value in name_fields(connector, f"New{i}", "Made").items():
            assert got[contact_id].fields.get(field_key) == value

    updates = [
        ContactWrite(
            contact_id,
            got[contact_id].email,
            name_fields(connector, f"New{i}", "Updated"),
            current=got[contact_id],
            version=got[contact_id].version,
            ref=i,
        )
        for i, contact_id in enumerate(ids)
    ]
    sandbox.reset_stats()
    results = connector.write_contacts(updates)
    assert [r.ref for r in results] == list(range(n))
    assert all(r.ok for r in results), [r.error for r in results]
    assert [r.contact.id for r in results if r.contact] == ids
    sent = sandbox.stats().get(update_endpoint, 0)
    if app.update_batched:
        assert 1 <= sent <= math.ceil(n / batch), f"{sent} update requests for {n} in {batch}s"
    else:
        assert sent == n, "one update request per contact"
    again = reconnect().get_contacts(ids)
    for i, contact_id in enumerate(ids):
        for field_key, value in name_fields(connector, f"New{i}", "Updated").items():
            assert again[contact_id].fields.get(field_key) == value
    # a create of an email the app already holds never makes a second contact
    [dupe] = connector.write_contacts([email_write(connector, "NEW0@example.com")])
    assert dupe.ok, dupe.error
    assert dupe.contact is not None
    assert dupe.contact.id == ids[0]


def test_find_by_emails_folds_case(connector: Connector, sandbox: SandboxControl) -> None:
    grace = sandbox.create(email="Grace.Hopper@Example.com", first_name="Grace")
    sandbox.create(email="ada@example.com", first_name="Ada")
    found = connector.find_by_emails(["grace.hopper@EXAMPLE.COM", "nobody@example.com"])
    assert set(found) == {"grace.hopper@example.com"}
    assert [c.id for c in found["grace.hopper@example.com"]] == [grace]
    assert normalize_email(found["grace.hopper@example.com"][0].email) == "grace.hopper@example.com"


def test_find_by_emails_lists_same_email_contacts_oldest_first(
    connector: Connector, sandbox: SandboxControl
) -> None:
    older = sandbox.create(email="twin@example.com", first_name="Older")
    time.sleep(0.01)
    try:
        second: str | None = sandbox.create(email="Twin@Example.com")
    except SandboxControlError:
        second = None
    found = connector.find_by_emails(["twin@example.com"])["twin@example.com"]
    if second is not None:
        # the app lets two contacts share an email: both come back, oldest first
        assert [c.id for c in found] == [older, second]
    else:
        # the app keeps emails unique: the person's second create was refused
        assert [c.id for c in found] == [older]


def test_get_contacts_omits_unknown_ids(
    connector: Connector, sandbox: SandboxControl, app: SandboxFacts
) -> None:
    [known] = sandbox.bulk(people(1))
    got = connector.get_contacts([known, app.unknown_id])
    assert set(got) == {known}
    assert normalize_email(got[known].email) == "person0@example.com"
    assert connector.get_contacts([]) == {}


def test_tags_are_read_added_and_removed(
    connector: Connector, sandbox: SandboxControl, reconnect: Callable[[], Connector]
) -> None:
    contact_id = sandbox.create(email="tagged@example.com", tags=["alpha"])
    if not connector.capabilities.tags:
        assert connector.get_contacts([contact_id])[contact_id].tags == frozenset()
        return
    contact = connector.get_contacts([contact_id])[contact_id]
    assert contact.tags == {"alpha"}
    sandbox.tag(contact_id, add=["person-added"])
    contact = connector.get_contacts([contact_id])[contact_id]
    assert contact.tags == {"alpha", "person-added"}
    [result] = connector.write_contacts(
        [
            ContactWrite(
                contact_id,
                contact.email,
                {},
                add_tags=frozenset({"beta"}),
                remove_tags=frozenset({"alpha"}),
                current=contact,
                version=contact.version,
            )
        ]
    )
    assert result.ok, result.error
    assert result.contact is not None
    assert result.contact.tags == {"beta", "person-added"}
    assert reconnect().get_contacts([contact_id])[contact_id].tags == {"beta", "person-added"}
    create = email_write(connector, "born-tagged@example.com")
    create.add_tags = frozenset({"gamma", "beta"})
    [made] = connector.write_contacts([create])
    assert made.ok, made.error
    assert made.contact is not None
    assert reconnect().get_contacts([made.contact.id])[made.contact.id].tags == {"gamma", "beta"}


def test_custom_fields_are_written_and_read_back(
    connector: Connector, sandbox: SandboxControl, reconnect: Callable[[], Connector]
) -> None:
    contact_id = sandbox.create(email="custom@example.com", custom={CUSTOM: "Gold"})
    connector = reconnect()
    if not connector.capabilities.custom_fields:
        assert not [f for f in connector.fields() if f.custom]
        return
    plan = custom_field(connector)
    contact = connector.get_contacts([contact_id])[contact_id]
    assert contact.fields.get(plan.key) == "Gold"
    [updated] = connector.write_contacts(
        [
            ContactWrite(
                contact_id,
                contact.email,
                {plan.key: "Platinum"},
                current=contact,
                version=contact.version,
            )
        ]
    )
    assert updated.ok, updated.error
    assert reconnect().get_contacts([contact_id])[contact_id].fields.get(plan.key) == "Platinum"
    assert "Platinum" in json.dumps(sandbox.native(contact_id))
    [made] = connector.write_contacts(
        [email_write(connector, "custom-new@example.com", **{plan.key: "Silver"})]
    )
    assert made.ok, made.error
    assert made.contact is not None
    fresh = reconnect().get_contacts([made.contact.id])[made.contact.id]
    assert fresh.fields.get(plan.key) == "Silver"


# -------------------------------------------------------------- failures


def test_rate_limited_calls_wait_and_succeed(connector: Connector, sandbox: SandboxControl) -> None:
    [contact_id] = sandbox.bulk(people(1))
    connector.fields()  # the schema read is not what this test limits
    sandbox.defaults(rate_limit=1, rate_window=2.0)  # a fresh window of one request
    for _ in range(4):
        assert contact_id in connector.get_contacts([contact_id])
    assert sandbox.stats().get("429", 0) >= 1, "the sandbox did answer 429"


def test_server_errors_are_retried(connector: Connector, sandbox: SandboxControl) -> None:
    [contact_id] = sandbox.bulk(people(1))
    sandbox.configure(error_rate=0.3, error_status=503)
    # six attempts miss together once in 1,400 calls at 30 % failures (seen in
    # CI); twelve, once in two million
    http_client(connector).max_attempts = 12
    for _ in range(60):
        assert contact_id in connector.get_contacts([contact_id])
        if sandbox.stats().get("503", 0) >= 2:
            break
    assert sandbox.stats().get("503", 0) >= 2, "the sandbox did answer 503"


def test_an_expired_token_is_refreshed(connector: Connector, sandbox: SandboxControl) -> None:
    connector.check()
    http = http_client(connector)
    before = http.credentials.access_token
    sandbox.expire_tokens()
    info = connector.check()
    assert info.remote_id
    if connector.credentials.refresh_token:
        assert http.credentials.access_token != before, "a new access token was issued"
        assert http.credentials.refresh_token
        assert (http.credentials.expires_at or 0) > time.time()
        assert connector.get_contacts([]) == {}
        connector.fields()  # the new token works for the next calls too
    else:
        # tokens without a refresh token (Mailchimp's) never expire
        assert http.credentials.access_token == before


def test_a_revoked_token_raises_auth_error(connector: Connector, sandbox: SandboxControl) -> None:
    connector.check()
    sandbox.revoke_tokens()
    sandbox.expire_tokens()
    with pytest.raises(AuthError):
        connector.check()


def test_the_apps_own_error_message_is_surfaced(connector: Connector, app: SandboxFacts) -> None:
    assert app.refused_write is not None, "the app's sandbox module names a write it refuses"
    message = app.refused_message
    error = app_error(connector, dataclasses.replace(app.refused_write))
    assert isinstance(error, ConnectorError)
    assert error.permanent
    assert not isinstance(error, AuthError)
    assert message in error.message, error.message
    if isinstance(error, ContactRejected):
        assert error.status is None or 400 <= error.status < 500
