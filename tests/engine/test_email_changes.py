"""Mailchimp email-change deliveries (``upemail``): the binding follows the
member to its new id, and no delivery, however late, repeated or wrong, can
break a binding or stop a run."""

from __future__ import annotations

import pytest

from connections.engine.read import EmailChange
from connections.engine.run import run_connection
from connections.engine.writer import LiveWriter
from connections.models import ContactLink, LinkStatus, SyncRun, WebhookEvent
from connectors import sandbox

from .world import App, connect, sync

# on PostgreSQL a violated constraint aborts the whole transaction: run there too
pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=("google", "mailchimp"))
    yield srv
    srv.stop()


@pytest.fixture
def world(server, db):
    google, mailchimp = App(server, "google"), App(server, "mailchimp")
    for app in (google, mailchimp):
        app.reset()
        app.make_account()
    conn = connect(google, mailchimp, sync_deletions=True)
    return google, mailchimp, conn


def upemail(conn, mailchimp: App, old_id: str, new_id: str, new_email: str) -> WebhookEvent:
    """The delivery, stored as the webhook view stores it."""
    return WebhookEvent.objects.create(
        source="mailchimp",
        connection=conn,
        account=mailchimp.account,
        event_type="upemail",
        kind="email_changed",
        contact_id=old_id,
        new_contact_id=new_id,
        email=new_email,
        body=f"type=upemail&old={old_id}&new={new_id}",
    )


def change_email(mailchimp: App, old_email: str, new_email: str) -> tuple[str, str]:
    old_id = mailchimp.one(old_email).id
    mailchimp.edit(old_id, email=new_email)
    return old_id, mailchimp.one(new_email).id


def binding(conn, google_id: str) -> ContactLink:
    return ContactLink.objects.get(connection=conn, id_a=google_id)


def runs_cleanly(conn, times: int = 2) -> None:
    for _ in range(times):
        conn.refresh_from_db()
        run = run_connection(conn)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
        assert run.total("created") == 0
        assert run.total("trashed") == 0


def test_a_replayed_delivery_does_not_move_a_binding_back(world):
    google, mailchimp, conn = world
    gid = google.create("ann@example.com", "Ann", "Lee")
    sync(conn)
    a, b = change_email(mailchimp, "ann@example.com", "ann.new@example.com")
    upemail(conn, mailchimp, a, b, "ann.new@example.com")
    sync(conn)
    # she changes it back; then the first delivery comes again
    mailchimp.edit(b, email="ann@example.com")
    upemail(conn, mailchimp, b, a, "ann@example.com")
    sync(conn)
    replay = upemail(conn, mailchimp, a, b, "ann.new@example.com")
    runs_cleanly(conn)
    assert binding(conn, gid).id_b == mailchimp.one("ann@example.com").id
    replay.refresh_from_db()
    assert replay.status == WebhookEvent.Status.PROCESSED
    assert "late or replayed" in replay.error
    assert len(google.by_email("ann@example.com")) == 1


def test_deliveries_out_of_order_follow_the_member_to_its_last_id(world):
    google, mailchimp, conn = world
    gid = google.create("bo@example.com", "Bo", "Ng")
    sync(conn)
    a, b = change_email(mailchimp, "bo@example.com", "bo.two@example.com")
    _, c = change_email(mailchimp, "bo.two@example.com", "bo.three@example.com")
    upemail(conn, mailchimp, b, c, "bo.three@example.com")  # B→C arrives first
    upemail(conn, mailchimp, a, b, "bo.two@example.com")
    runs_cleanly(conn)
    link = binding(conn, gid)
    assert link.id_b == c
    assert google.by_email("bo.three@example.com")[0].id == gid
    assert not WebhookEvent.objects.filter(status=WebhookEvent.Status.RECEIVED).exists()


def test_a_new_id_already_linked_leaves_both_links_and_says_why(world):
    """(Here the old member still exists, so later reads sync it as before.)"""
    google, mailchimp, conn = world
    gx = google.create("x@example.com", "Xa", "One")
    gy = google.create("y@example.com", "Ya", "Two")
    sync(conn)
    mx, my = mailchimp.one("x@example.com").id, mailchimp.one("y@example.com").id
    first = upemail(conn, mailchimp, mx, my, "y@example.com")
    change = EmailChange("b", mx, my, "y@example.com", first.pk, found=True)
    LiveWriter().follow_email_changes(conn, [change])
    x = binding(conn, gx)
    assert (x.id_b, x.status) == (mx, LinkStatus.DUPLICATE)
    assert "already linked" in x.status_reason
    first.refresh_from_db()
    assert first.status == WebhookEvent.Status.PROCESSED
    assert "already linked" in first.error
    event = upemail(conn, mailchimp, mx, my, "y@example.com")  # and again, through runs
    for _ in range(2):  # never "crashed: IntegrityError", run after run
        conn.refresh_from_db()
        run = run_connection(conn)
        assert run.status == SyncRun.Status.SUCCEEDED, run.error
    x, y = binding(conn, gx), binding(conn, gy)
    assert (x.id_b, y.id_b) == (mx, my)
    assert y.status == LinkStatus.IN_SYNC
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert "already linked" in event.error


def test_a_missing_member_keeps_the_old_binding(world):
    google, mailchimp, conn = world
    gid = google.create("cy@example.com", "Cy", "Po")
    sync(conn)
    member = mailchimp.one("cy@example.com").id
    event = upemail(conn, mailchimp, member, "0123456789abcdef0123456789abcdef", "cy2@example.com")
    runs_cleanly(conn)
    assert binding(conn, gid).id_b == member
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED
    assert "no contact 0123456789abcdef0123456789abcdef" in event.error
