"""The audit in the admin: a dry run's preview lists each contact once, in
parts, through every page; the event list marks and hides dry runs, filters
by connection, app, action and run, and finds contacts by part of an email
or a name."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from connections.admin.dry_run import PREVIEW_LIMIT
from connections.models import Connection, ContactLink, SyncEvent, SyncRun

pytestmark = pytest.mark.django_db


@pytest.fixture
def conn(make_connection) -> Connection:
    return make_connection(name="HubSpot ↔ Google")


def finished(conn: Connection, *, dry_run: bool) -> SyncRun:
    return SyncRun.objects.create(
        connection=conn,
        dry_run=dry_run,
        status=SyncRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
    )


def event(run: SyncRun, email: str, side: str, action: str, **values) -> SyncEvent:
    return SyncEvent.objects.create(run=run, email=email, side=side, action=action, **values)


def preview(client, conn: Connection, run: SyncRun, query: str = ""):
    url = reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk])
    return client.get(url + query)


def test_the_preview_lists_each_contact_once_and_apart_from_those_already_equal(admin_client, conn):
    run = finished(conn, dry_run=True)
    for n in range(7):
        email = f"c{n}@example.com"
        event(run, email, "a", "matched", reason="matched by email")
        event(run, email, "b", "updated", changes=[{"field": "phone", "old": "1", "new": "2"}])
    event(run, "same@example.com", "a", "matched", reason="matched by email; already equal")
    event(run, "", "a", "excluded", reason="no email")
    response = preview(admin_client, conn, run)
    change, skip, equal = response.context["parts"]
    assert [c.email for c in change.contacts] == [f"c{n}@example.com" for n in range(7)]
    assert all(len(c.diffs) == 2 for c in change.contacts)
    assert [c.email for c in equal.contacts] == ["same@example.com"]
    assert [d.event.reason for c in skip.contacts for d in c.diffs] == ["no email"]
    page = response.content.decode()
    assert page.count(">c3@example.com<") == 1


@pytest.mark.integration
def test_the_preview_pages_through_every_contact(admin_client, conn):
    run = finished(conn, dry_run=True)
    total = PREVIEW_LIMIT * 2 + 5
    SyncEvent.objects.bulk_create(
        SyncEvent(run=run, email=f"p{n:04d}@example.com", side="b", action="created")
        for n in range(total)
    )
    first = preview(admin_client, conn, run)
    change = first.context["parts"][0]
    assert change.page.paginator.count == total
    assert len(change.contacts) == PREVIEW_LIMIT
    assert "?change_page=3" in first.content.decode()
    last = preview(admin_client, conn, run, "?change_page=3")
    emails = [c.email for c in last.context["parts"][0].contacts]
    assert emails[-1] == f"p{total - 1:04d}@example.com"
    assert len(emails) == 5


# ------------------------------------------------------------- event list


def events_page(client, query: str = ""):
    return client.get(reverse("admin:connections_syncevent_changelist") + query)


def listed(response) -> list[SyncEvent]:
    return list(response.context["cl"].result_list)


def test_dry_run_events_are_hidden_by_default_and_marked_when_shown(admin_client, conn):
    live = event(finished(conn, dry_run=False), "ann@example.com", "b", "created")
    dry = event(finished(conn, dry_run=True), "ann@example.com", "b", "created")
    assert listed(events_page(admin_client)) == [live]
    shown = events_page(admin_client, "?dry_run=all")
    assert set(listed(shown)) == {live, dry}
    assert "dry run" in shown.content.decode()
    assert listed(events_page(admin_client, "?dry_run=dry")) == [dry]
    # a dry run's own "events" link shows them
    run_link = f"?run__id__exact={dry.run_id}"
    assert listed(events_page(admin_client, run_link)) == [dry]


def test_events_are_filtered_by_connection_app_action_and_run(
    admin_client, conn, make_connection, make_account
):
    other = make_connection(make_account("mailchimp"), make_account("google"))
    run = finished(conn, dry_run=False)
    in_hubspot = event(run, "a@example.com", "a", "updated")
    in_google = event(run, "b@example.com", "b", "created")
    elsewhere = event(finished(other, dry_run=False), "c@example.com", "a", "created")
    assert set(listed(events_page(admin_client, f"?connection={conn.pk}"))) == {
        in_hubspot,
        in_google,
    }
    assert listed(events_page(admin_client, "?app=hubspot")) == [in_hubspot]
    assert set(listed(events_page(admin_client, "?app=google"))) == {in_google}
    assert listed(events_page(admin_client, "?action__exact=created&app=mailchimp")) == [elsewhere]
    page = events_page(admin_client, f"?run={run.pk}")
    assert set(listed(page)) == {in_hubspot, in_google}


@pytest.mark.integration
def test_events_and_contacts_are_found_by_part_of_an_email_or_a_name(admin_client, conn):
    link = ContactLink.objects.create(
        connection=conn,
        email="ada.lovelace@example.com",
        base_a={"firstname": "Ada", "lastname": "Byron"},
    )
    run = finished(conn, dry_run=False)
    by_email = event(run, "ada.lovelace@example.com", "b", "created", link=link)
    by_name = event(
        run, "x@example.com", "b", "updated", changes=[{"field": "lastname", "new": "Byron"}]
    )
    event(run, "bob@example.com", "b", "created")
    assert listed(events_page(admin_client, "?q=lovelace")) == [by_email]
    assert set(listed(events_page(admin_client, "?q=byron"))) == {by_email, by_name}
    contacts = admin_client.get(reverse("admin:connections_contactlink_changelist") + "?q=Lovel")
    assert list(contacts.context["cl"].result_list) == [link]
    contacts = admin_client.get(reverse("admin:connections_contactlink_changelist") + "?q=byron")
    assert list(contacts.context["cl"].result_list) == [link]


@pytest.mark.integration
def test_a_name_with_accents_is_found_in_events_and_contacts(admin_client, conn):
    link = ContactLink.objects.create(
        connection=conn,
        email="zoe@example.com",
        base_a={"firstname": "Zoë", "lastname": "Ångström"},
    )
    run = finished(conn, dry_run=False)
    by_link = event(run, "zoe@example.com", "b", "created", link=link)
    by_change = event(
        run,
        "x@example.com",
        "b",
        "updated",
        changes=[{"field": "lastname", "new": "Müller-Ångström"}],
    )
    event(run, "bob@example.com", "b", "created")
    assert listed(events_page(admin_client, "?q=Zoë")) == [by_link]
    assert set(listed(events_page(admin_client, "?q=ångström"))) == {by_link, by_change}
    assert listed(events_page(admin_client, "?q=Müller ångström")) == [by_change]
    contacts = admin_client.get(reverse("admin:connections_contactlink_changelist") + "?q=Zoë")
    assert list(contacts.context["cl"].result_list) == [link]


def test_alerts_are_listed_open_first_and_a_viewer_can_read_but_not_change_them(
    client, view_only_user, conn
):
    from connections.models import Alert

    old = Alert.objects.create(
        connection=conn,
        kind=Alert.Kind.ERROR,
        reason="HubSpot answered 500",
        resolved_at=timezone.now(),
    )
    current = Alert.objects.create(
        connection=conn, kind=Alert.Kind.NEEDS_REAUTH, reason="Google refused the token"
    )
    client.force_login(view_only_user)
    url = reverse("admin:connections_alert_changelist")
    page = client.get(url)
    assert page.status_code == 200
    assert list(page.context["cl"].result_list) == [current, old]
    assert list(client.get(url + "?state=open").context["cl"].result_list) == [current]
    assert "Google refused the token" in page.content.decode()
    detail = client.get(reverse("admin:connections_alert_change", args=[current.pk]))
    assert detail.status_code == 200
    assert "Needs re-authorization" in detail.content.decode()
    refused = client.post(reverse("admin:connections_alert_change", args=[current.pk]), {})
    assert refused.status_code == 403
