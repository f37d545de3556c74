"""A new connection is a draft: a person sets it up through the admin, reads a
dry run, and only "Start syncing" makes it write to the apps. Start checks the
setup first and says what is missing."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.messages import get_messages
from django.urls import reverse
from django_q.conf import Conf
from django_q.models import Schedule

from connections import actions
from connections.models import Account, Connection, SyncRun
from connections.readiness import start_problems
from connections.schedules import schedule_name
from connectors.sandbox import serve
from connectors.sandbox.base import SandboxServer
from tests.engine.world import App

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("google", "hubspot"))
    yield srv
    srv.stop()


@pytest.fixture
def apps(server: SandboxServer, db: None) -> dict[str, App]:
    """Google and HubSpot accounts, tested (their fields read); Ann in Google."""
    out = {key: App(server, key) for key in ("google", "hubspot")}
    for app in out.values():
        app.reset()
        app.make_account()
    out["google"].create("ann@example.com", "Ann", "Lee")
    return out


@pytest.fixture
def inline_tasks(settings: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A queued task runs at once, in the request that queued it (as a worker would)."""
    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": True}
    monkeypatch.setattr(Conf, "SYNC", True)


def requests_served(apps: dict[str, App]) -> dict[str, dict[str, int]]:
    return {key: {k: n for k, n in app.stats().items() if n} for key, app in apps.items()}


def said(response: Any) -> str:
    return " ".join(str(m) for m in get_messages(response.wsgi_request))


def op_url(conn: Connection, operation: str) -> str:
    return reverse(f"admin:connections_connection_{operation}", args=[conn.pk])


def change_url(conn: Connection) -> str:
    return reverse("admin:connections_connection_change", args=[conn.pk])


def add_through_admin(client: Any, apps: dict[str, App], name: str = "Google ↔ HubSpot") -> Any:
    response = client.post(
        reverse("admin:connections_connection_add"),
        {
            "name": name,
            "account_a": apps["google"].account.pk,
            "account_b": apps["hubspot"].account.pk,
            "direction": "two_way",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    conn = Connection.objects.get(name=name)
    # the second step is the change page, as Django's user add
    assert response.url == change_url(conn)
    return conn


def change_data(conn: Connection) -> dict[str, str]:
    """The change form as the browser sends it, with one custom mapping added."""
    data = {
        "name": conn.name,
        "account_a": str(conn.account_a_id),
        "account_b": str(conn.account_b_id),
        "direction": conn.direction,
        "conflict_policy": conn.conflict_policy,
        "avoid_duplicates": "on",
        "trash_tag": conn.trash_tag,
        "unsubscribe_tag": conn.unsubscribe_tag,
        "interval_minutes": "15",
        "rules-TOTAL_FORMS": "0",
        "rules-INITIAL_FORMS": "0",
    }
    mappings = list(conn.mappings.all())
    data |= {
        "mappings-TOTAL_FORMS": str(len(mappings) + 1),
        "mappings-INITIAL_FORMS": str(len(mappings)),
    }
    for i, m in enumerate(mappings):
        data |= {
            f"mappings-{i}-id": str(m.pk),
            f"mappings-{i}-connection": str(conn.pk),
            f"mappings-{i}-field_a": m.field_a,
            f"mappings-{i}-field_b": m.field_b,
            f"mappings-{i}-direction": m.direction,
            f"mappings-{i}-enabled": "on",
        }
    n = len(mappings)
    data |= {
        f"mappings-{n}-field_a": "birthday",
        f"mappings-{n}-field_b": "city",
        f"mappings-{n}-direction": "a_to_b",
        f"mappings-{n}-enabled": "on",
    }
    return data


def test_nothing_reaches_any_app_before_start_and_start_runs_the_initial_sync(
    admin_client, apps, inline_tasks, django_capture_on_commit_callbacks
):
    for app in apps.values():
        app.ctl("POST", "/stats/reset")

    conn = add_through_admin(admin_client, apps)
    assert conn.state == Connection.State.DRAFT
    page = admin_client.get(change_url(conn)).content.decode()
    assert "Start syncing" in page
    assert "this connection is a draft" in page

    # set it up: a mapping, a rule's condition; press Sync now (refused)
    response = admin_client.post(change_url(conn), change_data(conn))
    assert response.status_code == 302, response.content.decode()[:3000]
    assert conn.mappings.filter(field_a="birthday", field_b="city").exists()
    rule = conn.rules.get(direction="a_to_b")
    rule_data = {
        "name": "",
        "direction": "a_to_b",
        "position": "0",
        "enabled": "on",
        "conditions-TOTAL_FORMS": "1",
        "conditions-INITIAL_FORMS": "0",
        "conditions-0-operator": "set",
        "conditions-0-field": "email",
        "conditions-0-value": "",
        "actions-TOTAL_FORMS": "0",
        "actions-INITIAL_FORMS": "0",
    }
    response = admin_client.post(
        reverse("admin:connections_rule_change", args=[rule.pk]), rule_data
    )
    assert response.status_code == 302
    assert response.url == change_url(conn)  # back to its connection
    response = admin_client.post(op_url(conn, "sync_now"))
    assert "press Start syncing first" in said(response)

    assert requests_served(apps) == {"google": {}, "hubspot": {}}
    assert not SyncRun.objects.exists()
    assert not Schedule.objects.filter(name=schedule_name(conn.pk)).exists()
    assert apps["hubspot"].by_email("ann@example.com") == []

    # Start: the initial sync runs (here inline), then the schedule takes over
    with django_capture_on_commit_callbacks(execute=True):
        response = admin_client.post(op_url(conn, "start"))
    assert "started: the initial sync is queued" in said(response)
    conn.refresh_from_db()
    assert conn.state == Connection.State.ACTIVE
    run = SyncRun.objects.get(connection=conn)
    assert (run.trigger, run.full, run.dry_run) == (SyncRun.Trigger.INITIAL, True, False)
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert apps["hubspot"].one("ann@example.com").fields.get("firstname") == "Ann"
    assert Schedule.objects.filter(name=schedule_name(conn.pk)).exists()


def test_a_dry_run_works_on_a_draft_and_writes_nothing(admin_client, apps, inline_tasks):
    conn = add_through_admin(admin_client, apps)
    response = admin_client.post(op_url(conn, "dry_run"))
    assert response.status_code == 302
    run = SyncRun.objects.get(connection=conn)
    assert run.dry_run
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert run.total("created") == 1
    assert apps["hubspot"].by_email("ann@example.com") == []
    conn.refresh_from_db()
    assert conn.state == Connection.State.DRAFT
    # the checklist now shows the dry run done
    page = admin_client.get(change_url(conn)).content.decode()
    assert "Last dry run" in page


def test_start_refuses_and_says_what_is_missing(admin_client, make_account, make_connection):
    never_tested = make_account("google", status=Account.Status.UNCHECKED)
    mailchimp = make_account("mailchimp", status=Account.Status.OK)
    conn = make_connection(never_tested, mailchimp, state=Connection.State.DRAFT)
    problems = " ".join(start_problems(conn))
    assert "was never tested" in problems
    assert "Choose the Mailchimp audience" in problems
    assert "Map at least one field" in problems

    response = admin_client.post(op_url(conn, "start"))
    message = said(response)
    assert "cannot start yet" in message
    assert "was never tested" in message
    assert "audience" in message
    conn.refresh_from_db()
    assert conn.state == Connection.State.DRAFT
    assert not Schedule.objects.filter(name=schedule_name(conn.pk)).exists()

    reauth = make_account("hubspot", status=Account.Status.NEEDS_REAUTH)
    other = make_connection(reauth, make_account("google", status="ok"), state="draft")
    with pytest.raises(actions.NotReady, match="needs re-authorization"):
        actions.start(other, None)


def test_a_draft_is_neither_resumed_nor_paused_by_hand(admin_client, make_connection):
    conn = make_connection(state=Connection.State.DRAFT)
    for operation in ("resume", "pause"):
        response = admin_client.post(op_url(conn, operation))
        assert "is a draft" in said(response)
        conn.refresh_from_db()
        assert conn.state == Connection.State.DRAFT
    assert actions.resume(conn) is False
    assert conn.state == Connection.State.DRAFT


def test_the_state_is_not_a_form_field(admin_client, make_connection):
    conn = make_connection(state=Connection.State.ACTIVE)
    page = admin_client.get(change_url(conn)).content.decode()
    assert 'name="state"' not in page
    assert "Needs re-authorization</option>" not in page
