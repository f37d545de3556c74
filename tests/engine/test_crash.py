"""A run killed at each step of create-and-link: the rerun makes no duplicate
and redoes at most the page that was being written."""

from __future__ import annotations

import pytest

from connections.engine.run import SyncRunner, run_connection
from connections.engine.writer import LiveWriter
from connections.models import ContactLink, LinkStatus, SyncRun
from connectors import sandbox

from .world import App, connect

PAGE = 5
CONTACTS = 12  # pages of 5, 5 and 2


class Crash(Exception):
    """The worker process dies here."""


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=("google", "hubspot"))
    yield srv
    srv.stop()


@pytest.fixture
def world(server, db):
    google, hubspot = App(server, "google"), App(server, "hubspot")
    for app in (google, hubspot):
        app.reset()
        app.make_account()
    for i in range(CONTACTS):
        google.create(f"person{i:02d}@example.com", "Person", f"No{i}")
    conn = connect(google, hubspot)
    return google, hubspot, conn


def connectors(google: App, hubspot: App):
    a = google.connector()
    a.page_size = PAGE
    b = hubspot.connector()
    return {"a": a, "b": b}


def crash_on_second_page(monkeypatch, where: str, conns) -> None:
    calls = {"batch": 0}
    original_batch = SyncRunner.sync_batch

    def sync_batch(self, batch):
        calls["batch"] += 1
        if where == "next page" and calls["batch"] == 3:
            raise Crash("killed before the third page")
        return original_batch(self, batch)

    monkeypatch.setattr(SyncRunner, "sync_batch", sync_batch)
    target = conns["b"]
    original_write = target.write_contacts

    def write(writes):
        if calls["batch"] == 2 and where == "before write":
            raise Crash("killed after planning, before the create was sent")
        results = original_write(writes)
        if calls["batch"] == 2 and where == "after write":
            raise Crash("killed after the create, before the link was committed")
        return results

    monkeypatch.setattr(target, "write_contacts", write)
    original_cursor = LiveWriter.commit_cursor

    def commit_cursor(self, conn, side, cursor):
        if calls["batch"] == 2 and where == "during commit":
            raise Crash("killed inside the commit of links, events and cursor")
        original_cursor(self, conn, side, cursor)
        if calls["batch"] == 2 and where == "after the cursor":
            # the cursor must roll back with the links and events
            raise Crash("killed inside the commit, after the cursor was written")

    monkeypatch.setattr(LiveWriter, "commit_cursor", commit_cursor)


@pytest.mark.parametrize(
    ("where", "committed_before"),
    [
        ("before write", PAGE),
        ("after write", PAGE),
        ("during commit", PAGE),
        ("after the cursor", PAGE),
        ("next page", 2 * PAGE),
    ],
)
def test_a_crash_at_each_step_of_create_and_link_leaves_no_duplicate(
    world, monkeypatch, where, committed_before
):
    google, hubspot, conn = world
    conns = connectors(google, hubspot)
    crash_on_second_page(monkeypatch, where, conns)
    with pytest.raises(Crash):
        run_connection(conn, connectors=conns)
    monkeypatch.undo()

    conn.refresh_from_db()
    rerun = run_connection(conn, connectors=connectors(google, hubspot))
    assert rerun.status == SyncRun.Status.SUCCEEDED, rerun.error

    emails = [c.email for c in hubspot.contacts()]
    assert sorted(emails) == [f"person{i:02d}@example.com" for i in range(CONTACTS)]
    links = ContactLink.objects.filter(connection=conn)
    assert links.count() == CONTACTS
    assert set(links.values_list("status", flat=True)) == {LinkStatus.IN_SYNC}
    # at most one page is redone: the rerun reads only what was not committed
    assert rerun.counters["a"]["scanned"] <= CONTACTS - committed_before + PAGE
    assert rerun.counters["a"]["scanned"] >= CONTACTS - committed_before
    # and a run after that writes nothing
    quiet = run_connection(conn, connectors=connectors(google, hubspot))
    assert quiet.total("created") == quiet.total("updated") == 0


def test_a_worker_that_lost_its_claim_commits_nothing_over_the_new_run(world):
    """It stalled past its heartbeat; another worker took the connection over.
    When it wakes up, its page commit is refused and rolled back."""
    from connections import locking
    from connections.models import Connection

    google, hubspot, conn = world
    stale = locking.claim(conn.pk)
    assert stale is not None
    Connection.objects.filter(pk=conn.pk).update(
        running_since=stale.since.replace(year=stale.since.year + 1)  # the new holder's token
    )
    with pytest.raises(locking.ClaimLost):
        run_connection(conn, connectors=connectors(google, hubspot), claim=stale)
    assert not ContactLink.objects.filter(connection=conn).exists()
    assert Connection.objects.get(pk=conn.pk).cursor_a == ""
