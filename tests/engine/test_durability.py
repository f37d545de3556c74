"""Nothing decided is ever lost: a deletion's trash tag until it lands (held
by the mass-deletion guard, refused by the app), Drift's change time in a
"most recent change" conflict, and every delivery of a busy Drift inbox.
Also the matching blind spots of the engine: a counterpart gone without the
change feed saying so, emails that differ in case and spaces, and contacts
present on both sides before the first sync."""

from __future__ import annotations

import ast
import datetime as dt

import pytest
from django.contrib.auth.models import User
from django.urls import reverse
from django.utils.module_loading import import_string
from django_q.models import Schedule

from connections import actions
from connections.engine import read
from connections.engine.run import run_connection
from connections.engine.trash import pending_text
from connections.models import Connection, ContactLink, LinkStatus, SyncEvent, SyncRun, WebhookEvent
from connectors import sandbox
from connectors.base import TransientError, WriteResult

from .world import App, connect, identify_in_drift, inbox, sync

TRASH = "DriftSync Trash"


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=("drift", "google", "hubspot"))
    yield srv
    srv.stop()


@pytest.fixture
def apps(server, db):
    out = {key: App(server, key) for key in ("drift", "google", "hubspot")}
    for app in out.values():
        app.reset()
        app.make_account()
    return out


def deletions_world(apps, n: int = 5):
    """Google ↔ HubSpot with ``n`` contacts synced; HubSpot reports deletions."""
    google, hubspot = apps["google"], apps["hubspot"]
    ids = [hubspot.create(f"p{i}@example.com", "P", str(i)) for i in range(n)]
    conn = connect(google, hubspot, sync_deletions=True)
    sync(conn)
    assert len(google.contacts()) == n
    return google, hubspot, conn, ids


def trashed_in(app: App) -> set[str]:
    return {c.email for c in app.contacts() if TRASH in c.tags}


# ------------------------------------------------------------ trash tags


def test_tags_held_by_the_guard_stay_pending_and_go_out_once_the_limit_is_raised(apps, settings):
    settings.DRIFTSYNC_MAX_TRASH_SHARE = 0.2
    google, hubspot, conn, ids = deletions_world(apps)
    for cid in ids[:3]:
        hubspot.delete(cid)
    run = sync(conn)
    assert "3 trash tag(s) were not sent" in run.error
    assert trashed_in(google) == set()
    held = ContactLink.objects.filter(connection=conn).exclude(trash_pending="")
    assert held.count() == 3
    for link in held:
        assert link.status == LinkStatus.DELETED_B
        assert link.trash_pending == "a"
        assert pending_text(link).startswith(
            "trash tag pending: held by the mass-deletion guard: it would tag 3 of 5"
        )

    # a later run does not forget them, and still holds them
    sync(conn)
    assert trashed_in(google) == set()
    assert ContactLink.objects.filter(connection=conn).exclude(trash_pending="").count() == 3

    # the person checked HubSpot and raised the limit: the next run sends them
    settings.DRIFTSYNC_MAX_TRASH_SHARE = 0.8
    run = sync(conn)
    assert trashed_in(google) == {"p0@example.com", "p1@example.com", "p2@example.com"}
    assert run.counters["a"]["trashed"] == 3
    assert not ContactLink.objects.filter(connection=conn).exclude(trash_pending="").exists()
    assert SyncEvent.objects.filter(run=run, action="trashed").count() == 3
    # and nothing is sent twice
    assert sync(conn).counters["a"].get("trashed", 0) == 0


def test_held_tags_a_person_confirms_go_out_past_the_guard(apps, settings):
    settings.DRIFTSYNC_MAX_TRASH_SHARE = 0.2
    google, hubspot, conn, ids = deletions_world(apps)
    for cid in ids[:2]:
        hubspot.delete(cid)
    sync(conn)
    assert trashed_in(google) == set()
    held = ContactLink.objects.filter(connection=conn).exclude(trash_pending="")
    person = User.objects.create_superuser("ops", password="ops-password-1")
    assert actions.send_held_trash_tags(list(held), user=person) == 2
    for link in ContactLink.objects.filter(connection=conn).exclude(trash_pending=""):
        assert pending_text(link).endswith("(confirmed: sent on the next run)")
    sync(conn)
    assert trashed_in(google) == {"p0@example.com", "p1@example.com"}
    assert not ContactLink.objects.filter(connection=conn).exclude(trash_pending="").exists()


def test_a_tag_the_app_refuses_stays_pending_and_is_retried_after_its_backoff(apps):
    google, hubspot, conn, ids = deletions_world(apps)
    hubspot.delete(ids[0])
    failing = {"a": google.connector(), "b": hubspot.connector()}

    def unavailable(writes):
        raise TransientError("Service Unavailable", status=503)

    failing["a"].write_contacts = unavailable
    conn.refresh_from_db()
    run = run_connection(conn, connectors=failing)
    # the run goes on and says a contact failed; the tag is state on the link
    assert run.status == SyncRun.Status.PARTIAL, run.error
    link = ContactLink.objects.get(connection=conn, email="p0@example.com")
    assert link.status == LinkStatus.DELETED_B
    assert link.trash_pending == "a"
    assert link.trash_attempts == 1
    assert pending_text(link).startswith(
        "trash tag pending: Google Contacts refused (Service Unavailable)"
    )
    assert link.trash_retry_after is not None

    # not before its backoff has passed
    sync(conn)
    assert trashed_in(google) == set()
    # once it has, the next run sends it
    ContactLink.objects.filter(pk=link.pk).update(
        trash_retry_after=link.trash_retry_after - dt.timedelta(days=1)
    )
    run = sync(conn)
    assert trashed_in(google) == {"p0@example.com"}
    link.refresh_from_db()
    assert (link.trash_pending, link.trash_attempts, pending_text(link)) == ("", 0, "")
    assert run.status == SyncRun.Status.SUCCEEDED


def test_a_tag_refused_for_one_contact_is_retried_too(apps):
    google, hubspot, conn, ids = deletions_world(apps)
    hubspot.delete(ids[1])
    conns = {"a": google.connector(), "b": hubspot.connector()}

    def refuse(writes):
        return [WriteResult(w.ref, error=TransientError("try later", status=500)) for w in writes]

    conns["a"].write_contacts = refuse
    conn.refresh_from_db()
    run_connection(conn, connectors=conns)
    link = ContactLink.objects.get(connection=conn, email="p1@example.com")
    assert link.trash_pending == "a"
    assert "refused (try later)" in link.trash_reason
    ContactLink.objects.filter(pk=link.pk).update(trash_retry_after=None)
    sync(conn)
    assert trashed_in(google) == {"p1@example.com"}


# ------------------------------------------------------- the admin shows them


@pytest.fixture
def pending_link(make_connection):
    conn = make_connection()
    held = ContactLink.objects.create(
        connection=conn,
        id_a="1",
        id_b="2",
        email="held@example.com",
        status=LinkStatus.DELETED_B,
        trash_pending="a",
        trash_reason="held by the mass-deletion guard: it would tag 3 of 5 contacts at once",
    )
    ContactLink.objects.create(connection=conn, id_a="3", id_b="4", email="fine@example.com")
    return held


def test_the_contact_links_list_shows_and_filters_pending_trash_tags(admin_client, pending_link):
    url = reverse("admin:connections_contactlink_changelist")
    page = admin_client.get(url + "?trash=guard").content.decode()
    assert "trash tag pending: held by the mass-deletion guard" in page
    assert "held@example.com" in page
    assert "fine@example.com" not in page
    detail = admin_client.get(
        reverse("admin:connections_contactlink_change", args=[pending_link.pk])
    ).content.decode()
    assert "trash tag pending: held by the mass-deletion guard" in detail


def test_sending_held_tags_from_the_admin_needs_the_change_permission(
    client, admin_client, view_only_user, pending_link
):
    url = reverse("admin:connections_contactlink_changelist")
    post = {"action": "send_held_trash_tags", "_selected_action": [pending_link.pk]}
    client.force_login(view_only_user)
    assert "Send the held trash tags" not in client.get(url).content.decode()
    client.post(url, post)
    pending_link.refresh_from_db()
    assert not pending_link.trash_confirmed

    response = admin_client.post(url, post, follow=True)
    assert "1 trash tag(s) confirmed" in response.content.decode()
    pending_link.refresh_from_db()
    assert pending_link.trash_confirmed


# --------------------------------------------------- Drift's change time


def conflict_world(apps):
    drift, hubspot = apps["drift"], apps["hubspot"]
    conn = connect(drift, hubspot, conflict_policy="most_recent")
    cid = identify_in_drift(drift, "cat@example.com", "Cat Ng", phone="100")
    sync(conn)
    hid = hubspot.one("cat@example.com").id
    hubspot.edit(hid, phone="300")
    edited_at = hubspot.one("cat@example.com").updated_at
    assert edited_at is not None
    drift.edit(cid, phone="200")
    delivery = inbox(drift, "contact_updated", "updated", cid)
    return drift, hubspot, conn, cid, edited_at, delivery


def test_a_drift_edit_after_the_other_apps_edit_wins_a_most_recent_conflict(apps):
    drift, hubspot, conn, _cid, edited_at, delivery = conflict_world(apps)
    WebhookEvent.objects.filter(pk=delivery.pk).update(
        received_at=edited_at + dt.timedelta(seconds=5)
    )
    sync(conn)
    assert hubspot.one("cat@example.com").fields["phone"] == "200"
    assert drift.one("cat@example.com").fields["phone"] == "200"
    event = SyncEvent.objects.filter(email="cat@example.com", action="updated").latest("pk")
    conflict = next(c for c in event.changes if c.get("note", "").startswith("conflict"))
    assert "most recent change, in Drift" in conflict["note"]
    when = (edited_at + dt.timedelta(seconds=5)).astimezone(dt.UTC)
    assert when.strftime("%Y-%m-%d %H:%M:%S UTC") in conflict["note"]


def test_a_drift_edit_before_the_other_apps_edit_loses_it(apps):
    drift, hubspot, conn, cid, edited_at, _delivery = conflict_world(apps)
    WebhookEvent.objects.filter(contact_id=cid).update(
        received_at=edited_at - dt.timedelta(minutes=5)
    )
    sync(conn)
    assert hubspot.one("cat@example.com").fields["phone"] == "300"
    assert drift.one("cat@example.com").fields["phone"] == "300"
    event = SyncEvent.objects.filter(email="cat@example.com", action="updated").latest("pk")
    conflict = next(c for c in event.changes if c.get("note", "").startswith("conflict"))
    assert "most recent change, in HubSpot" in conflict["note"]


def test_a_drift_change_is_timed_by_its_webhook_not_by_a_late_arrival(apps):
    """Drift made the change before HubSpot's edit, but its webhook arrived
    after it (a retried delivery): the webhook's own time decides."""
    drift, hubspot, conn, _cid, edited_at, delivery = conflict_world(apps)
    WebhookEvent.objects.filter(pk=delivery.pk).update(
        occurred_at=edited_at - dt.timedelta(minutes=2),
        received_at=edited_at + dt.timedelta(minutes=3),
    )
    sync(conn)
    assert hubspot.one("cat@example.com").fields["phone"] == "300"
    assert drift.one("cat@example.com").fields["phone"] == "300"


def test_a_drift_webhook_time_after_its_arrival_counts_as_its_arrival(apps):
    """A clock that runs ahead cannot make a change newer than its delivery."""
    _drift, hubspot, conn, _cid, edited_at, delivery = conflict_world(apps)
    WebhookEvent.objects.filter(pk=delivery.pk).update(
        occurred_at=edited_at + dt.timedelta(days=1),
        received_at=edited_at - dt.timedelta(minutes=3),
    )
    sync(conn)
    assert hubspot.one("cat@example.com").fields["phone"] == "300"


# ------------------------------------------------------ a busy Drift inbox


def test_a_burst_of_identified_visitors_is_synced_in_one_run_and_followed_up(apps, monkeypatch):
    monkeypatch.setattr(read, "INBOX_PAGE", 10)
    drift, google = apps["drift"], apps["google"]
    conn = connect(drift, google)
    for i in range(25):
        identify_in_drift(drift, f"v{i:02d}@example.com", f"Visitor {i}")
    sync(conn)
    # every visitor is synced by the one run, although none has settled yet
    assert len(google.contacts()) == 25
    conn.refresh_from_db()
    assert conn.cursor_a == ""  # the cursor never passes an unsettled delivery
    follow_ups = Schedule.objects.filter(name=f"driftsync-follow-up-{conn.pk}")
    assert follow_ups.count() == 1
    newest = WebhookEvent.objects.filter(account=drift.account).latest("pk")
    assert follow_ups.get().next_run > newest.received_at + read.INBOX_SETTLE
    assert follow_ups.get().func == "connections.tasks.run_sync"
    # a second run while they are still unsettled does not add another
    sync(conn)
    assert follow_ups.count() == 1

    # the follow-up, once they have settled: the cursor passes them all, no more follow-ups
    WebhookEvent.objects.filter(account=drift.account).update(
        received_at=newest.received_at - dt.timedelta(minutes=1)
    )
    schedule = follow_ups.get()
    follow_ups.delete()  # the scheduler removes a once-schedule when it fires
    Connection.objects.filter(pk=conn.pk).update(state=Connection.State.ACTIVE)
    assert import_string(schedule.func)(*ast.literal_eval(schedule.args)) is not None
    conn.refresh_from_db()
    assert conn.cursor_a == str(newest.pk)
    assert conn.runs.latest("pk").trigger == SyncRun.Trigger.WEBHOOK
    assert not follow_ups.exists()
    assert len(google.contacts()) == 25


def test_a_run_reads_every_settled_page_of_the_inbox(apps, monkeypatch):
    monkeypatch.setattr(read, "INBOX_PAGE", 10)
    drift, google = apps["drift"], apps["google"]
    conn = connect(drift, google)
    for i in range(25):
        identify_in_drift(drift, f"s{i:02d}@example.com", f"Settled {i}")
    WebhookEvent.objects.update(
        received_at=WebhookEvent.objects.latest("pk").received_at - dt.timedelta(minutes=1)
    )
    sync(conn)
    assert len(google.contacts()) == 25
    conn.refresh_from_db()
    assert conn.cursor_a == str(WebhookEvent.objects.latest("pk").pk)
    assert not Schedule.objects.filter(name=f"driftsync-follow-up-{conn.pk}").exists()


# ------------------------------------------------------ matching blind spots


def test_a_counterpart_gone_without_a_word_gets_the_tag_when_the_other_side_changes(apps):
    """Drift reports no deletions: a contact deleted there is missing when
    fetched by id. An edit in Google then tags the Google contact for review;
    the Drift contact is never re-created."""
    drift, google = apps["drift"], apps["google"]
    conn = connect(drift, google, sync_deletions=True)
    cid = identify_in_drift(drift, "dee@example.com", "Dee Lee")
    sync(conn)
    gid = google.one("dee@example.com").id
    drift.delete(cid)
    google.edit(gid, phone="+1 555 0199")
    sync(conn)
    assert TRASH in google.one("dee@example.com").tags
    assert drift.by_email("dee@example.com") == []
    link = ContactLink.objects.get(connection=conn, email="dee@example.com")
    assert link.status == LinkStatus.DELETED_A
    assert link.trash_pending == ""
    google.edit(gid, phone="+1 555 0200")
    sync(conn)
    sync(conn, full=True)
    assert drift.by_email("dee@example.com") == []


def test_contacts_on_both_sides_before_the_first_sync_are_linked_whatever_the_case(apps):
    """The initial sync matches HubSpot against Google read in full: Google
    keeps an email's case, HubSpot folds it; no search saves a miss, and Google
    would take a second contact with the same email."""
    hubspot, google = apps["hubspot"], apps["google"]
    hubspot.create("ann.lee@example.com", "Ann", "Lee")
    google.create(" Ann.Lee@Example.COM ", "Ann", "Lee")
    hubspot.create("same@example.com", "Sam", "E")
    google.create("same@example.com", "Sam", "E")
    conn = connect(hubspot, google)
    sync(conn)
    for app in (google, hubspot):
        assert len(app.contacts()) == 2, [c.email for c in app.contacts()]
    links = ContactLink.objects.filter(connection=conn)
    assert sorted(links.values_list("email", flat=True)) == [
        "ann.lee@example.com",
        "same@example.com",
    ]
    assert all(x.id_a and x.id_b for x in links)
    assert set(links.values_list("status", flat=True)) == {LinkStatus.IN_SYNC}


def test_a_new_contact_matches_one_whose_email_differs_in_case_and_spaces(apps):
    """Between two runs, a Drift visitor gives an email Google holds already,
    typed differently."""
    drift, google = apps["drift"], apps["google"]
    conn = connect(drift, google)
    identify_in_drift(drift, "first@example.com", "First One")
    sync(conn)
    google.create("bob.ng@example.com", "Bob", "Ng")
    identify_in_drift(drift, " Bob.NG@Example.COM ", "Bob Ng")
    sync(conn)
    assert len(google.by_email("bob.ng@example.com")) == 1
    link = ContactLink.objects.get(connection=conn, email="bob.ng@example.com")
    assert link.id_a
    assert link.id_b == google.one("bob.ng@example.com").id
    assert ContactLink.objects.filter(connection=conn).count() == 2
