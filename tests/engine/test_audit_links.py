"""Every event of a contact is on its timeline, from the run that created or
matched it on (the binding did not exist when those events were built)."""

from __future__ import annotations

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext

from connections.models import ContactLink, SyncEvent
from connectors import sandbox

from .world import App, connect, sync


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve()
    yield srv
    srv.stop()


@pytest.fixture
def apps(server, db):
    out = {key: App(server, key) for key in ("google", "hubspot")}
    for app in out.values():
        app.reset()
        app.make_account()
    return out


@pytest.mark.integration
def test_the_events_that_created_and_matched_a_contact_are_on_its_timeline(apps):
    a, b = apps["google"], apps["hubspot"]
    conn = connect(a, b)
    sync(conn)  # the initial full sync, of nothing
    a.create("new@example.com", "Ada", "Lovelace")
    a.create("both@example.com", "Bo", "Th")
    b.create("both@example.com", "Bo", "Th")
    sync(conn)

    created = ContactLink.objects.get(connection=conn, email="new@example.com")
    assert "created" in created.events.values_list("action", flat=True)
    matched = ContactLink.objects.get(connection=conn, email="both@example.com")
    assert "matched" in matched.events.values_list("action", flat=True)
    assert not SyncEvent.objects.filter(run__connection=conn, link__isnull=True).exists()


def test_a_dry_run_links_nothing_and_saves_no_binding(apps):
    a, b = apps["google"], apps["hubspot"]
    a.create("dry@example.com", "Dry", "Run")
    conn = connect(a, b)
    run = sync(conn, dry_run=True)
    event = run.events.get(action="created")
    assert event.link_id is None
    assert not ContactLink.objects.filter(connection=conn).exists()


@pytest.mark.integration
def test_linking_new_contacts_costs_no_query_per_contact(apps):
    a, b = apps["google"], apps["hubspot"]
    conn = connect(a, b)
    sync(conn)
    a.create("one@example.com", "One", "X")
    with CaptureQueriesContext(db) as few:
        sync(conn)
    for n in range(8):
        a.create(f"many{n}@example.com", "Many", str(n))
    with CaptureQueriesContext(db) as many:
        sync(conn)
    assert SyncEvent.objects.filter(email__startswith="many", link__isnull=True).count() == 0
    assert len(many) <= len(few) + 2
