"""A connection shows its accounts' health: on its page and in the list
(with last synced, failing contacts and the reason, without a query per
row); Full resync asks first, saying how many contacts it will read."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone

from connections import actions
from connections.models import Account, Connection, ContactLink, LinkStatus, SyncRun

pytestmark = pytest.mark.django_db

LIST = "admin:connections_connection_changelist"


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    calls: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "connections.tasks.async_task", lambda *a, **kw: calls.append(kw) or "task-1"
    )
    return calls


def test_a_broken_account_shows_on_every_connection_that_uses_it(
    admin_client, make_connection, make_account
):
    shared = make_account("hubspot", label="Sales portal")
    first = make_connection(shared, make_account("google"))
    second = make_connection(make_account("mailchimp"), shared)
    actions.mark_account_needs_reauth(shared, "The token was revoked.")
    account_url = reverse("admin:connections_account_change", args=[shared.pk])
    for conn in (first, second):
        page = admin_client.get(
            reverse("admin:connections_connection_change", args=[conn.pk])
        ).content.decode()
        assert "Sales portal" in page
        assert "The token was revoked." in page
        assert f'href="{account_url}"' in page
    listing = admin_client.get(reverse(LIST)).content.decode()
    assert listing.count(f'href="{account_url}"') == 2


def test_the_list_shows_last_synced_failing_and_the_reason_without_a_query_per_row(
    admin_client, make_connection
):
    conn = make_connection(name="Busy", last_synced_at=timezone.now())
    ContactLink.objects.bulk_create(
        ContactLink(connection=conn, id_a=str(n), status=LinkStatus.FAILING) for n in range(3)
    )
    stopped = make_connection(name="Stopped")
    actions.mark_error(stopped, "The audience is gone.")
    with CaptureQueriesContext(db) as two:
        admin_client.get(reverse(LIST))
    for _ in range(5):
        make_connection()
    with CaptureQueriesContext(db) as seven:
        response = admin_client.get(reverse(LIST))
    assert len(seven) == len(two)
    page = response.content.decode()
    assert "Last synced" in page
    assert "just now" in page
    failing_url = reverse("admin:connections_contactlink_changelist")
    assert f'href="{failing_url}?connection__id__exact={conn.pk}&amp;status__exact=failing">3<' in (
        page
    )
    assert "The audience is gone." in page


def test_full_resync_asks_first_and_says_how_many_contacts_it_will_read(
    admin_client, make_connection, queued
):
    conn = make_connection()
    SyncRun.objects.create(
        connection=conn,
        full=True,
        status=SyncRun.Status.SUCCEEDED,
        counters={"a": {"scanned": 2500}, "b": {"scanned": 1700}},
    )
    url = reverse("admin:connections_connection_full_resync", args=[conn.pk])
    page = admin_client.post(url)
    assert page.status_code == 200
    assert queued == []
    assert "4,200" in page.content.decode()
    assert page.context["total"] == 4200
    admin_client.post(url, {"confirmed": "yes"})
    assert [kw["full"] for kw in queued] == [True]


def test_the_full_resync_action_asks_first_too(admin_client, make_connection, queued):
    conns = [make_connection(), make_connection()]
    ContactLink.objects.create(connection=conns[0], id_a="1")
    data = {"action": "full_resync", "_selected_action": [str(c.pk) for c in conns]}
    page = admin_client.post(reverse(LIST), data)
    assert queued == []
    assert page.context["total"] == 1
    body = page.content.decode()
    assert 'name="action" value="full_resync"' in body
    admin_client.post(reverse(LIST), {**data, "confirmed": "yes"})
    assert len(queued) == 2
    assert Connection.objects.count() == 2
    assert Account.objects.count() == 4
