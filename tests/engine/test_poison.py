"""Poison contacts: whatever values an app hands over for one contact (a NUL,
a lone surrogate, 100,000 characters, a 400-character email, a number or a
list where text is expected, null), no run crashes; that contact is synced
or failing with its reason, and the rest of the page commits.

Runs derandomized and bounded (the same few examples every time). Marked
integration: PostgreSQL refuses NUL in jsonb and over-long varchar values,
which SQLite stores without a word.
"""

from __future__ import annotations

import dataclasses

import pytest
from django.db import IntegrityError
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from connections.engine import run as run_module
from connections.engine.run import run_connection
from connections.engine.writer import LiveWriter
from connections.models import Account, Connection, ContactLink, LinkStatus, SyncEvent, SyncRun
from connectors import sandbox
from connectors.base import Contact, normalize_email

from .world import App, connect

SIDES = ("google", "mailchimp")
PEOPLE = 3
LONG = "<100,000 characters>"  # spelled out where the app hands it over
LONG_EMAIL = "p" * 388 + "@example.com"  # 400 characters

bad_text = st.sampled_from(
    ["Nul\x00byte", "lone \ud800 surrogate", "\udfff", LONG, "\x00", "ok name", ""]
)
bad_value = st.one_of(
    bad_text,
    st.sampled_from([123, 4.5, float("nan"), True, None, ["a", "\x00"], {"k": "\x00"}]),
)
bad_email = st.sampled_from([None, LONG_EMAIL, "nul\x00@example.com", "\ud800@example.com", 42])
#: per person: which fields get a bad value (and which), and maybe a bad email
person = st.tuples(
    st.dictionaries(st.sampled_from(["given_name", "family_name", "phone"]), bad_value),
    st.one_of(st.none(), bad_email),
)
SETTLED = (LinkStatus.IN_SYNC, LinkStatus.FAILING, LinkStatus.DUPLICATE, LinkStatus.EXCLUDED)


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=SIDES)
    yield srv
    srv.stop()


def poisoned(connector, bad: dict[str, tuple[dict, object]]):
    """The app hands over the bad values for the people in ``bad`` (by email)."""
    changes, get_contacts = connector.changes, connector.get_contacts

    def spoil(contact: Contact) -> Contact:
        found = bad.get(normalize_email(contact.email))
        if found is None:
            return contact
        fields, email = found
        fields = {k: "x" * 100_000 if v == LONG else v for k, v in fields.items()}
        spoiled = dataclasses.replace(contact, fields={**contact.fields, **fields})
        if email is not None:
            spoiled.email = email
        return spoiled

    def changes_(cursor, *, full=False):
        for page in changes(cursor, full=full):
            yield dataclasses.replace(page, contacts=[spoil(c) for c in page.contacts])

    def get_contacts_(ids):
        return {k: spoil(c) for k, c in get_contacts(ids).items()}

    connector.changes, connector.get_contacts = changes_, get_contacts_
    return connector


@pytest.mark.integration
@pytest.mark.django_db
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    phases=(Phase.explicit, Phase.generate),  # a failure shows its example, unshrunk
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(people=st.lists(person, min_size=PEOPLE, max_size=PEOPLE))
def test_no_contact_value_crashes_a_run(server, people):
    Connection.objects.all().delete()
    Account.objects.all().delete()
    apps = {key: App(server, key) for key in SIDES}
    for app in apps.values():
        app.reset()
        app.make_account()
    google, mailchimp = apps["google"], apps["mailchimp"]
    emails = [f"person{i}@example.com" for i in range(PEOPLE)]
    for i, email in enumerate(emails):
        google.create(email, "Person", f"No{i}", phone="+1 555 0100")
    mailchimp.create("fine@example.com", "Fine", "Member")
    conn = connect(google, mailchimp)
    bad = dict(zip(emails, people, strict=True))

    for _ in range(2):  # the next run meets the same contacts again
        conn.refresh_from_db()
        connectors = {"a": poisoned(google.connector(), bad), "b": mailchimp.connector()}
        run = run_connection(conn, full=True, connectors=connectors)
        assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error

    # the healthy contact on the other side went through whatever the page held
    assert len(google.by_email("fine@example.com")) == 1
    # each bad contact is synced, or failing (or a duplicate, excluded) with its reason
    for link in ContactLink.objects.filter(connection=conn):
        assert link.status in SETTLED, link.status
        if link.status != LinkStatus.IN_SYNC:
            assert link.status_reason or link.status == LinkStatus.EXCLUDED


@pytest.fixture
def world(server, db):
    apps = {key: App(server, key) for key in SIDES}
    for app in apps.values():
        app.reset()
        app.make_account()
    for i in range(3):
        apps["google"].create(f"person{i}@example.com", "Person", f"No{i}")
    return apps["google"], apps["mailchimp"], connect(apps["google"], apps["mailchimp"])


def test_a_contact_that_cannot_be_planned_fails_alone(world, monkeypatch):
    _, mailchimp, conn = world
    real = run_module.plan_pair

    def plan_pair(a, b, old, ctx):
        if a is not None and normalize_email(a.email) == "person1@example.com":
            raise KeyError("surprise")
        return real(a, b, old, ctx)

    monkeypatch.setattr(run_module, "plan_pair", plan_pair)
    run = run_connection(conn)
    assert run.status == SyncRun.Status.PARTIAL, run.error
    bad = ContactLink.objects.get(connection=conn, email="person1@example.com")
    assert bad.status == LinkStatus.FAILING
    assert bad.status_reason == "unexpected error: KeyError: 'surprise'"
    assert [c.email for c in mailchimp.by_email("person1@example.com")] == []
    for email in ("person0@example.com", "person2@example.com"):
        assert len(mailchimp.by_email(email)) == 1
        assert ContactLink.objects.get(connection=conn, email=email).status == LinkStatus.IN_SYNC


def test_a_binding_the_database_refuses_fails_that_contact_and_the_page_commits(world, monkeypatch):
    conn = world[2]
    real = LiveWriter.save_links

    def save_links(self, created, changed):
        if any(link.email == "person2@example.com" and not link.pk for link in created):
            raise IntegrityError("UNIQUE constraint failed: connections_contactlink.id_b")
        return real(self, created, changed)

    monkeypatch.setattr(LiveWriter, "save_links", save_links)
    run = run_connection(conn)
    assert run.status == SyncRun.Status.PARTIAL, run.error
    assert run.total("failed") == 1
    links = {x.email: x for x in ContactLink.objects.filter(connection=conn)}
    assert links["person0@example.com"].status == LinkStatus.IN_SYNC
    assert links["person1@example.com"].status == LinkStatus.IN_SYNC
    assert "person2@example.com" not in links  # not even as failing: its row is refused
    failed = SyncEvent.objects.get(run=run, action="failed")
    assert failed.email == "person2@example.com"
    assert failed.reason.startswith("could not be stored: IntegrityError: UNIQUE constraint")
