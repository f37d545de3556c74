"""Whole runs against the sandboxes over real HTTP, for each pair of apps:
creates both ways, updates both ways, a conflict, a tag rule, a deletion
tagged for review and never re-created, an unsubscribe tagged."""

from __future__ import annotations

import pytest

from connections.models import Action, Condition, ContactLink, LinkStatus, Rule, SyncEvent
from connectors import sandbox

from .world import PHONE_KEYS, App, connect, full_name, identify_in_drift, inbox, sync

PAIRS = [
    ("drift", "google"),
    ("drift", "mailchimp"),
    ("drift", "hubspot"),
    ("google", "mailchimp"),
]


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve()
    yield srv
    srv.stop()


@pytest.fixture
def apps(server, db):
    out = {key: App(server, key) for key in sandbox.SANDBOXES}
    for app in out.values():
        app.reset()
    return out


def pair(apps, key_a, key_b, **options):
    a, b = apps[key_a], apps[key_b]
    a.make_account()
    b.make_account()
    return a, b, connect(a, b, **options)


def new_on_a(a: App, email: str, first: str, last: str, **extra) -> str:
    if a.key == "drift":
        return identify_in_drift(a, email, f"{first} {last}", **extra)
    return a.create(email, first, last, **extra)


def edit_on(app: App, cid: str, **person) -> None:
    app.edit(cid, **person)
    if app.key == "drift":
        inbox(app, "contact_updated", "updated", cid)


@pytest.mark.parametrize(("key_a", "key_b"), PAIRS)
def test_creates_and_updates_flow_both_ways(apps, key_a, key_b):
    a, b, conn = pair(apps, key_a, key_b)
    ann = new_on_a(a, "ann@example.com", "Ann", "Lee", phone="+1 555 0101")
    bob = b.create("bob@example.com", "Bob", "van der Berg", phone="+1 555 0202")
    sync(conn)

    ann_b = b.one("ann@example.com")
    assert full_name(b, ann_b) == "Ann Lee"
    assert ann_b.fields[PHONE_KEYS[key_b]] == "+1 555 0101"
    bob_a = a.one("bob@example.com")
    assert full_name(a, bob_a) == "Bob van der Berg"
    assert ContactLink.objects.filter(connection=conn, status=LinkStatus.IN_SYNC).count() == 2

    # an edit on each side flows to the other
    edit_on(a, ann, last_name="Leigh", first_name="Ann")
    edit_on(b, bob, phone="+1 555 9999")
    sync(conn)
    assert full_name(b, b.one("ann@example.com")) == "Ann Leigh"
    assert a.one("bob@example.com").fields[PHONE_KEYS[key_a]] == "+1 555 9999"

    # and once converged, a run writes nothing: no echo, no ping-pong
    before_a, before_b = a.stats(), b.stats()
    run = sync(conn)
    assert run.total("created") == run.total("updated") == 0
    writes = [k for k in set(a.stats()) | set(b.stats()) if not k.startswith("GET")]
    changed = [
        k
        for k in writes
        if (a.stats().get(k, 0) - before_a.get(k, 0)) + (b.stats().get(k, 0) - before_b.get(k, 0))
        and "search" not in k
        and "batch/read" not in k
        and "batchGet" not in k
    ]
    assert changed == []


@pytest.mark.parametrize(("key_a", "key_b"), PAIRS)
def test_a_conflict_is_won_by_the_chosen_side_and_recorded(apps, key_a, key_b):
    a, b, conn = pair(apps, key_a, key_b, conflict_policy="b_wins")
    cid_a = new_on_a(a, "cat@example.com", "Cat", "Ng", phone="100")
    sync(conn)
    cid_b = b.one("cat@example.com").id
    edit_on(a, cid_a, phone="200")
    edit_on(b, cid_b, phone="300")
    sync(conn)
    assert a.one("cat@example.com").fields[PHONE_KEYS[key_a]] == "300"
    assert b.one("cat@example.com").fields[PHONE_KEYS[key_b]] == "300"
    event = SyncEvent.objects.filter(email="cat@example.com", action="updated").latest("pk")
    conflict = next(c for c in event.changes if c.get("note", "").startswith("conflict"))
    assert {conflict["new"], conflict["other"]} == {"300", "200"}


@pytest.mark.parametrize(("key_a", "key_b"), PAIRS)
def test_a_tag_rule_adds_its_tag_on_the_target(apps, key_a, key_b):
    a, b, conn = pair(apps, key_a, key_b)
    rule = Rule.objects.get(connection=conn, direction="a_to_b")
    Condition.objects.create(rule=rule, operator="has_tag", value="VIP")
    Action.objects.create(rule=rule, kind="add_tag", value="VIP lead")
    vip = new_on_a(a, "vip@example.com", "Vera", "Ip")
    a.tag(vip, "VIP")
    if key_a == "drift":
        inbox(a, "contact_updated", "updated", vip)
    new_on_a(a, "plain@example.com", "Paul", "Lain")
    sync(conn)
    assert "VIP lead" in b.one("vip@example.com").tags
    assert b.by_email("plain@example.com") == []


@pytest.mark.parametrize(("key_a", "key_b"), PAIRS)
def test_a_deletion_tags_the_counterpart_and_it_is_never_recreated(apps, key_a, key_b):
    a, b, conn = pair(apps, key_a, key_b, sync_deletions=True)
    for i in range(6):
        b.create(f"keep{i}@example.com", "Keep", str(i))
    gone = b.create("gone@example.com", "Gone", "Soon")
    sync(conn)
    assert a.one("gone@example.com")
    caps = b.connector().capabilities
    if not caps.detect_deletions:
        pytest.skip(f"{key_b} cannot detect deletions")  # pragma: no cover - all B sides can
    b.delete(gone)
    sync(conn)
    assert "DriftSync Trash" in a.one("gone@example.com").tags
    link = ContactLink.objects.get(connection=conn, email="gone@example.com")
    assert link.status == f"deleted_{'b'}"
    # a later full resync does not bring it back on B
    sync(conn, full=True)
    assert b.by_email("gone@example.com") == []
    assert len(a.by_email("gone@example.com")) == 1


@pytest.mark.parametrize(("key_a", "key_b"), PAIRS)
def test_an_unsubscribe_tags_the_counterpart(apps, key_a, key_b):
    a, b, conn = pair(apps, key_a, key_b, sync_unsubscribes=True)
    # the side that can unsubscribe: Mailchimp by status, Drift by webhook
    unsub_side = b if key_b == "mailchimp" else a
    tagged_side = a if unsub_side is b else b
    if unsub_side.key not in ("mailchimp", "drift"):
        pytest.skip("neither side has unsubscribes")  # pragma: no cover
    cid = new_on_a(a, "una@example.com", "Una", "Sub")
    sync(conn)
    if unsub_side is b:
        cid = b.one("una@example.com").id
    unsub_side.unsubscribe(cid)
    if unsub_side.key == "drift":
        inbox(unsub_side, "user_unsubscribed", "unsubscribed", cid)
    sync(conn)
    assert "DriftSync Unsubscribes" in tagged_side.one("una@example.com").tags
    assert ContactLink.objects.get(connection=conn, email="una@example.com").status == (
        LinkStatus.UNSUBSCRIBED
    )


def test_several_contacts_with_one_email_bind_the_oldest_and_report_the_rest(apps):
    a, b, conn = pair(apps, "drift", "hubspot")
    first = identify_in_drift(a, "dup@example.com", "First Dup")
    second = a.ctl(
        "POST",
        "/contacts",
        {"email": "dup@example.com", "name": "Second Dup", "custom": {"externalId": "x-2"}},
    )["id"]
    inbox(a, "contact_identified", "identified", second)
    run = sync(conn)
    assert len(b.by_email("dup@example.com")) == 1
    dup = ContactLink.objects.get(connection=conn, id_a=second)
    assert dup.status == LinkStatus.DUPLICATE
    assert ContactLink.objects.get(connection=conn, id_a=first).status == LinkStatus.IN_SYNC
    assert run.total("duplicates") == 1


def test_a_contact_the_target_rejects_is_recorded_and_the_run_goes_on(apps):
    a, b, conn = pair(apps, "google", "hubspot")
    a.create("good@example.com", "Good", "One")
    a.create("not-an-email", "Bad", "Address")
    run = sync(conn)
    assert b.one("good@example.com")
    failing = ContactLink.objects.get(connection=conn, status=LinkStatus.FAILING)
    assert "HubSpot refused it" in failing.status_reason
    assert failing.retry_after is not None
    assert run.total("failed") == 1
    assert run.status == "partial"


def test_a_dry_run_plans_without_writing(apps):
    a, b, conn = pair(apps, "google", "mailchimp")
    a.create("dry@example.com", "Dry", "Run")
    run = sync(conn, dry_run=True)
    assert run.dry_run
    assert run.total("created") == 1
    assert b.by_email("dry@example.com") == []
    event = run.events.get(action="created")
    assert {"field": "First Name", "old": None, "new": "Dry"} in event.changes
    assert not ContactLink.objects.filter(connection=conn).exists()


def test_a_revoked_token_stops_the_run_and_marks_the_connection(apps):
    a, b, conn = pair(apps, "google", "hubspot")
    a.create("x@example.com", "X", "Y")
    b.ctl("POST", "/tokens/revoke")
    conn.refresh_from_db()
    from connections.engine.run import run_connection

    run = run_connection(conn)
    assert run.status == "failed"
    conn.refresh_from_db()
    assert conn.state == "needs_reauth"
    b.account.refresh_from_db()
    assert b.account.status == "needs_reauth"


def test_an_email_change_follows_the_contact_and_keeps_its_binding(apps):
    a, b, conn = pair(apps, "google", "mailchimp", sync_deletions=True)
    cid = a.create("old@example.com", "Eve", "Mail")
    sync(conn)
    assert b.one("old@example.com")
    a.edit(cid, email="new@example.com")
    sync(conn)
    assert b.by_email("old@example.com") == []
    member = b.one("new@example.com")
    link = ContactLink.objects.get(connection=conn, id_a=cid)
    assert link.id_b == member.id
    assert link.email == "new@example.com"
    # later runs neither trash it nor make a second member
    run = sync(conn)
    assert run.total("trashed") == 0
    assert "DriftSync Trash" not in a.one("new@example.com").tags
    assert len(b.by_email("new@example.com")) == 1


def test_an_email_changed_in_mailchimp_keeps_its_binding_through_the_webhook(apps):
    import urllib.parse

    from connections.models import WebhookEvent

    a, b, conn = pair(apps, "google", "mailchimp", sync_deletions=True)
    a.create("before@example.com", "Ed", "Mail")
    sync(conn)
    member = b.one("before@example.com")
    b.edit(member.id, email="after@example.com")
    # the upemail delivery, stored as the webhook view stores it
    body = urllib.parse.urlencode(
        {
            "type": "upemail",
            "fired_at": "2026-11-29 12:00:00",
            "data[list_id]": b.settings["audience"],
            "data[new_id]": "x",
            "data[new_email]": "after@example.com",
            "data[old_email]": "before@example.com",
        }
    )
    (event,) = b.connector().parse_webhook(body.encode(), "application/x-www-form-urlencoded", {})
    WebhookEvent.objects.create(
        source="mailchimp",
        connection=conn,
        account=b.account,
        event_type="upemail",
        kind=event.kind,
        contact_id=event.contact_id,
        new_contact_id=event.contact.id,
        email=event.email,
        body=body,
    )
    run = sync(conn)
    assert run.total("created") == 0
    assert a.by_email("before@example.com") == []
    assert len(a.by_email("after@example.com")) == 1
    assert "DriftSync Trash" not in a.one("after@example.com").tags
    assert ContactLink.objects.get(connection=conn).id_b == b.one("after@example.com").id
