"""An incremental run against an app whose change feed is current (Mailchimp):
its changes are read first and a counterpart it did not report is taken from
the binding's base, so no member is read again by id (issue 13) — and no
edit made on either side is lost for it."""

from __future__ import annotations

import pytest

from connections.engine import store
from connections.models import ContactLink, LinkStatus
from connectors import sandbox

from .world import App, connect, identify_in_drift, inbox, sync

GET_MEMBER = "GET /3.0/lists/{list_id}/members/{hash}"
PATCH_MEMBER = "PATCH /3.0/lists/{list_id}/members/{hash}"


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve()
    yield srv
    srv.stop()


@pytest.fixture
def apps(server, db):
    out = {key: App(server, key) for key in ("drift", "google", "mailchimp")}
    for app in out.values():
        app.reset()
        app.make_account()
    return out


def synced(apps, key_a="google", key_b="mailchimp", **options):
    """A connection with Ann on both sides, past its initial and settling runs."""
    a, b = apps[key_a], apps[key_b]
    conn = connect(a, b, **options)
    a.create("ann@example.com", "Ann", "Lee", phone="100")
    sync(conn)
    sync(conn)  # reads back the initial sync's own writes (echoes)
    return a, b, conn


def served(app: App, route: str, before: dict[str, int]) -> int:
    return app.stats().get(route, 0) - before.get(route, 0)


def test_a_google_edit_reaches_mailchimp_without_reading_the_member_again(apps):
    google, mailchimp, conn = synced(apps)
    google.edit(google.one("ann@example.com").id, phone="200")
    before = mailchimp.stats()
    run = sync(conn)
    assert mailchimp.one("ann@example.com").fields["PHONE"] == "200"
    assert run.total("updated") == 1
    assert served(mailchimp, GET_MEMBER, before) == 0
    assert served(mailchimp, PATCH_MEMBER, before) == 1


def test_edits_on_both_sides_of_one_contact_both_survive(apps):
    google, mailchimp, conn = synced(apps)
    google.edit(google.one("ann@example.com").id, phone="200")
    mailchimp.edit(mailchimp.one("ann@example.com").id, last_name="Leigh")
    before = mailchimp.stats()
    sync(conn)
    ann_m, ann_g = mailchimp.one("ann@example.com"), google.one("ann@example.com")
    assert (ann_m.fields["PHONE"], ann_m.fields["LNAME"]) == ("200", "Leigh")
    assert (ann_g.fields["phone"], ann_g.fields["family_name"]) == ("200", "Leigh")
    # the member came with Mailchimp's changes: it is not read again by id
    assert served(mailchimp, GET_MEMBER, before) == 0


def test_a_conflict_on_one_field_is_still_seen_and_resolved_by_the_policy(apps):
    google, mailchimp, conn = synced(apps, conflict_policy="b_wins")
    google.edit(google.one("ann@example.com").id, phone="200")
    mailchimp.edit(mailchimp.one("ann@example.com").id, phone="300")
    sync(conn)
    assert google.one("ann@example.com").fields["phone"] == "300"
    assert mailchimp.one("ann@example.com").fields["PHONE"] == "300"


def test_a_feed_read_too_long_ago_means_the_member_is_read(apps, monkeypatch):
    google, mailchimp, conn = synced(apps)
    monkeypatch.setattr(store, "FEED_CURRENT_FOR", -1.0)
    google.edit(google.one("ann@example.com").id, phone="200")
    before = mailchimp.stats()
    sync(conn)
    assert served(mailchimp, GET_MEMBER, before) == 1
    assert mailchimp.one("ann@example.com").fields["PHONE"] == "200"


def test_mailchimp_as_side_a_gives_google_changes_their_counterpart_from_the_base(apps):
    mailchimp, google, conn = synced(apps, "mailchimp", "google")
    google.edit(google.one("ann@example.com").id, phone="200")
    before = mailchimp.stats()
    sync(conn)
    assert mailchimp.one("ann@example.com").fields["PHONE"] == "200"
    assert served(mailchimp, GET_MEMBER, before) == 0


def test_a_drift_edit_reaches_mailchimp_without_reading_the_member_again(apps):
    drift, mailchimp = apps["drift"], apps["mailchimp"]
    conn = connect(drift, mailchimp)
    dee = identify_in_drift(drift, "dee@example.com", "Dee Lee", phone="100")
    sync(conn)
    sync(conn)
    drift.edit(dee, phone="200")
    inbox(drift, "contact_updated", "updated", dee)
    before = mailchimp.stats()
    sync(conn)
    assert mailchimp.one("dee@example.com").fields["PHONE"] == "200"
    assert served(mailchimp, GET_MEMBER, before) == 0


def test_a_member_deleted_outright_fails_once_then_counts_as_deleted(apps):
    """Mailchimp's feed does not report a permanent deletion (only archiving):
    the update to it fails as not found, with the reason, and the retry reads
    the member and finds it gone."""
    google, mailchimp, conn = synced(apps)
    member = mailchimp.one("ann@example.com")
    client = mailchimp.connector().client
    client.http.request(
        "POST",
        f"/lists/{client_list(mailchimp)}/members/{member.id}/actions/delete-permanent",
        ok=(204,),
    )
    google.edit(google.one("ann@example.com").id, phone="200")
    run = sync(conn)
    link = ContactLink.objects.get(connection=conn)
    assert run.total("failed") == 1
    assert link.status == LinkStatus.FAILING
    assert "could not be found" in link.status_reason
    ContactLink.objects.filter(pk=link.pk).update(retry_after=None)
    sync(conn)
    link.refresh_from_db()
    assert link.status == LinkStatus.DELETED_B
    assert mailchimp.by_email("ann@example.com") == []  # never re-created


def client_list(app: App) -> str:
    return app.settings["audience"]


# -- the counterpart rebuilt from the base (pure) ------------------------------


def name_context():
    from connections.engine.context import Context, MappingSpec
    from connectors.base import Field, FieldType, full_name_field

    drift_name = Field("name", "Name", FieldType.TEXT)
    return Context([MappingSpec(drift_name, full_name_field("FNAME", "LNAME"), True, True)], [])


def test_a_full_name_in_the_base_is_split_back_into_the_parts_it_came_from():
    from connections.engine.context import B
    from connections.engine.state import snapshot
    from connectors.base import Contact

    ctx = name_context()
    member = Contact(
        "m1",
        "ann@example.com",
        {"FNAME": "Anna Maria", "LNAME": "van der Berg"},
        tags=frozenset({"VIP"}),
    )
    base = snapshot(member, ctx.tracked[B])
    link = ContactLink(status=LinkStatus.IN_SYNC, email="ann@example.com", base_b=base)
    built = store.from_base(link, B, "m1", ctx)
    assert built is not None
    assert snapshot(built, ctx.tracked[B]) == base
    assert (built.id, built.email, built.tags) == ("m1", "ann@example.com", frozenset({"VIP"}))


def test_no_counterpart_is_rebuilt_from_a_failing_binding_or_an_empty_base():
    from connections.engine.context import B

    ctx = name_context()
    base = {"full_name": "Ann Lee", "__tags__": []}
    failing = ContactLink(status=LinkStatus.FAILING, email="a@example.com", base_b=base)
    assert store.from_base(failing, B, "m1", ctx) is None
    empty = ContactLink(status=LinkStatus.IN_SYNC, email="a@example.com", base_b={})
    assert store.from_base(empty, B, "m1", ctx) is None
