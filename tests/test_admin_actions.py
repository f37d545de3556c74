"""The connection's admin actions and buttons: Sync now, Dry run (with its
preview and Apply), Pause, Resume, Full resync. They only queue work or
change state, write the admin history, and are refused to a view-only user."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule, Task

from connections.models import Connection, SyncEvent, SyncRun
from connectors import sandbox
from tests.engine.world import App, connect

pytestmark = pytest.mark.django_db

OPERATIONS = ["sync-now", "dry-run", "full-resync", "pause", "resume"]


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[tuple, dict]]:
    """What the admin hands to django-q2, instead of queueing it."""
    calls: list[tuple[tuple, dict]] = []

    def fake_async_task(*args: Any, **kwargs: Any) -> str:
        calls.append((args, kwargs))
        return f"task-{len(calls)}"

    monkeypatch.setattr("connections.tasks.async_task", fake_async_task)
    return calls


@pytest.fixture
def conn(make_connection) -> Connection:
    return make_connection(name="HubSpot ↔ Google")


def op_url(conn: Connection, operation: str) -> str:
    return reverse(f"admin:connections_connection_{operation.replace('-', '_')}", args=[conn.pk])


def change_url(conn: Connection) -> str:
    return reverse("admin:connections_connection_change", args=[conn.pk])


def run_action(client: Client, action: str, *conns: Connection) -> Any:
    return client.post(
        reverse("admin:connections_connection_changelist"),
        {"action": action, "_selected_action": [str(c.pk) for c in conns]},
        follow=True,
    )


def history(conn: Connection) -> list[str]:
    return [
        e.get_change_message()
        for e in LogEntry.objects.filter(object_id=str(conn.pk)).order_by("pk")
    ]


def messages_of(response: Any) -> list[str]:
    return [str(m) for m in response.context["messages"]]


def has_schedule(conn: Connection) -> bool:
    return Schedule.objects.filter(name=f"driftsync-connection-{conn.pk}").exists()


# ------------------------------------------------------------------ sync now


def test_sync_now_queues_a_manual_run_by_the_user_and_writes_the_history(
    admin_client, admin_user, conn, queued
):
    response = run_action(admin_client, "sync_now", conn)
    assert response.status_code == 200
    [(args, kwargs)] = queued
    assert args == ("connections.tasks.run_sync", conn.pk)
    assert kwargs["trigger"] == SyncRun.Trigger.MANUAL
    assert kwargs["user_id"] == admin_user.pk
    assert (kwargs["dry_run"], kwargs["full"]) == (False, False)
    assert any("sync queued" in m for m in messages_of(response))
    assert history(conn) == ["Sync queued."]
    assert not SyncRun.objects.exists()  # nothing ran inside the request


def test_the_sync_now_button_on_the_change_page_queues_a_run(
    admin_client, admin_user, conn, queued
):
    page = admin_client.get(change_url(conn)).content.decode()
    assert f'action="{op_url(conn, "sync-now")}"' in page
    response = admin_client.post(op_url(conn, "sync-now"))
    assert response.status_code == 302
    assert response["Location"] == change_url(conn)
    [(_args, kwargs)] = queued
    assert (kwargs["trigger"], kwargs["user_id"], kwargs["full"]) == (
        "manual",
        admin_user.pk,
        False,
    )


def test_sync_now_on_a_paused_connection_queues_nothing_and_says_why(
    admin_client, make_connection, queued
):
    paused = make_connection(state=Connection.State.PAUSED)
    response = run_action(admin_client, "sync_now", paused)
    assert queued == []
    assert any("paused: resume it first" in m for m in messages_of(response))
    assert history(paused) == []


def test_an_action_button_only_answers_post(admin_client, conn, queued):
    assert admin_client.get(op_url(conn, "sync-now")).status_code == 405
    assert queued == []


# --------------------------------------------------------------- full resync


def test_full_resync_queues_a_full_run(admin_client, admin_user, conn, queued):
    # once confirmed (tests/test_connection_health.py: the confirmation page)
    admin_client.post(
        reverse("admin:connections_connection_changelist"),
        {"action": "full_resync", "_selected_action": [str(conn.pk)], "confirmed": "yes"},
    )
    admin_client.post(op_url(conn, "full-resync"), {"confirmed": "yes"})
    assert [kw["full"] for _a, kw in queued] == [True, True]
    assert all(kw["user_id"] == admin_user.pk and not kw["dry_run"] for _a, kw in queued)
    assert history(conn) == ["Full resync queued.", "Full resync queued."]


# ------------------------------------------------------------ pause / resume


def test_pause_stops_the_connection_and_removes_its_schedule(admin_client, conn, queued):
    assert has_schedule(conn)
    response = run_action(admin_client, "pause", conn)
    conn.refresh_from_db()
    assert conn.state == Connection.State.PAUSED
    assert conn.state_reason == "Paused by admin in the admin."
    assert not has_schedule(conn)
    assert any("paused" in m for m in messages_of(response))
    assert history(conn) == ["State changed from active to paused."]
    assert queued == []
    # the change page now offers Resume only
    page = admin_client.get(change_url(conn)).content.decode()
    assert op_url(conn, "resume") in page
    assert op_url(conn, "sync-now") not in page


def test_resume_reactivates_clears_the_reason_and_restores_the_schedule(
    admin_client, make_connection, queued
):
    conn = make_connection(state=Connection.State.ERROR, state_reason="HubSpot said no")
    assert not has_schedule(conn)
    response = admin_client.post(op_url(conn, "resume"), follow=True)
    conn.refresh_from_db()
    assert (conn.state, conn.state_reason) == (Connection.State.ACTIVE, "")
    assert has_schedule(conn)
    assert any("resumed" in m for m in messages_of(response))
    assert history(conn) == ["State changed from error to active."]
    assert queued == []


def test_pausing_a_paused_connection_changes_nothing(admin_client, make_connection):
    conn = make_connection(state=Connection.State.PAUSED, state_reason="by hand")
    response = run_action(admin_client, "pause", conn)
    conn.refresh_from_db()
    assert conn.state_reason == "by hand"
    assert any("already paused" in m for m in messages_of(response))
    assert history(conn) == []


def test_actions_apply_to_every_selected_connection(admin_client, make_connection, queued):
    one, two = make_connection(), make_connection()
    run_action(admin_client, "pause", one, two)
    assert set(Connection.objects.values_list("state", flat=True)) == {"paused"}
    run_action(admin_client, "resume", one, two)
    run_action(admin_client, "sync_now", one, two)
    assert sorted(args[1] for args, _kw in queued) == sorted([one.pk, two.pk])


# ------------------------------------------------------------------- dry run


def test_dry_run_queues_a_dry_run_and_leads_to_its_preview(admin_client, admin_user, conn, queued):
    response = admin_client.post(op_url(conn, "dry-run"))
    [(_args, kwargs)] = queued
    assert (kwargs["dry_run"], kwargs["full"], kwargs["user_id"]) == (True, False, admin_user.pk)
    assert history(conn) == ["Dry run queued."]
    waiting_url = response["Location"]
    assert waiting_url.startswith(
        reverse("admin:connections_connection_dry_run_queued", args=[conn.pk, "task-1"])
    )

    # no worker has taken it yet: the page waits and refreshes
    waiting = admin_client.get(waiting_url)
    assert waiting.status_code == 200
    assert '<meta http-equiv="refresh" content="2">' in waiting.content.decode()

    # a worker starts it: the waiting page hands over to the preview
    run = SyncRun.objects.create(
        connection=conn, trigger="manual", started_by=admin_user, dry_run=True
    )
    started = admin_client.get(waiting_url)
    preview_url = reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk])
    assert started["Location"] == preview_url

    running = admin_client.get(preview_url).content.decode()
    assert "still running" in running
    assert '<meta http-equiv="refresh" content="2">' in running
    assert "Apply" not in running

    # it finishes: counts per side, the field diffs, and Apply
    SyncEvent.objects.create(
        run=run,
        email="ann@example.com",
        side="b",
        action="created",
        changes=[{"field": "firstname", "old": None, "new": "Ann"}],
        reason="new in HubSpot",
    )
    SyncEvent.objects.create(
        run=run,
        email="bob@example.com",
        side="a",
        action="updated",
        changes=[{"field": "phone", "old": "+1 555 0100", "new": "+1 555 0199"}],
    )
    SyncEvent.objects.create(run=run, email="cy@example.com", side="a", action="unchanged")
    SyncRun.objects.filter(pk=run.pk).update(
        status=SyncRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        counters={"a": {"scanned": 3, "updated": 1, "unchanged": 1}, "b": {"created": 1}},
    )
    done = admin_client.get(preview_url)
    page = done.content.decode()
    assert "http-equiv" not in page
    assert done.context["counter_rows"] == [
        ("scanned", 3, 0),
        ("created", 0, 1),
        ("updated", 1, 0),
        ("unchanged", 1, 0),
    ]
    assert "HubSpot" in page
    assert "Google Contacts" in page
    diffs = [(r.event.email, r.side_name, r.event.action) for r in done.context["events"]]
    assert diffs == [
        ("ann@example.com", "Google Contacts", "created"),
        ("bob@example.com", "HubSpot", "updated"),
    ]
    assert "<td>+1 555 0100</td><td>→</td><td>+1 555 0199</td>" in page
    assert "1 contact already in sync is counted but not listed" in page
    assert 'value="Apply"' in page

    # Apply queues a real sync
    applied = admin_client.post(
        reverse("admin:connections_connection_apply_dry_run", args=[conn.pk, run.pk])
    )
    assert applied["Location"] == change_url(conn)
    _args, kwargs = queued[-1]
    assert (kwargs["dry_run"], kwargs["trigger"], kwargs["user_id"]) == (
        False,
        "manual",
        admin_user.pk,
    )
    assert history(conn)[-1] == f"Applied dry run #{run.pk}: sync queued."


def test_the_dry_run_action_on_one_connection_redirects_to_its_preview(admin_client, conn, queued):
    response = admin_client.post(
        reverse("admin:connections_connection_changelist"),
        {"action": "dry_run", "_selected_action": [str(conn.pk)]},
    )
    assert response.status_code == 302
    assert f"/{conn.pk}/dry-run/queued/task-1/" in response["Location"]
    assert queued[0][1]["dry_run"] is True


def test_a_dry_run_that_did_not_start_says_so(admin_client, conn):
    Task.objects.create(
        id="a" * 32,
        name="sync",
        func="connections.tasks.run_sync",
        args=(conn.pk,),
        kwargs={"trigger": "manual", "dry_run": True, "full": False},
        started=timezone.now(),
        stopped=timezone.now(),
        success=True,
        result=None,
    )
    page = admin_client.get(
        reverse("admin:connections_connection_dry_run_queued", args=[conn.pk, "a" * 32])
    )
    text = page.content.decode()
    assert "did not start" in text
    assert "http-equiv" not in text


def test_apply_is_refused_while_the_dry_run_runs(admin_client, conn, queued):
    run = SyncRun.objects.create(connection=conn, dry_run=True)
    admin_client.post(reverse("admin:connections_connection_apply_dry_run", args=[conn.pk, run.pk]))
    assert queued == []


def test_a_real_run_has_no_preview_page(admin_client, conn):
    run = SyncRun.objects.create(connection=conn, dry_run=False)
    url = reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk])
    assert admin_client.get(url).status_code == 404


# ---------------------------------------------------------------- permissions


def test_a_view_only_user_sees_no_action_and_is_refused_every_one(
    view_only_user, conn, queued, admin_user
):
    client = Client()
    client.force_login(view_only_user)
    changelist = client.get(reverse("admin:connections_connection_changelist"))
    assert changelist.status_code == 200
    assert changelist.context["action_form"] is None or all(
        name not in {"sync_now", "dry_run", "pause", "resume", "full_resync"}
        for name, _label in changelist.context["action_form"].fields["action"].choices
    )
    page = client.get(change_url(conn)).content.decode()
    assert "Health" in page  # they may read the health...
    for operation in OPERATIONS:  # ...but see no buttons and may press none
        assert op_url(conn, operation) not in page
        assert client.post(op_url(conn, operation)).status_code == 403
    response = client.post(
        reverse("admin:connections_connection_changelist"),
        {"action": "sync_now", "_selected_action": [str(conn.pk)]},
    )
    assert response.status_code in (200, 302)

    run = SyncRun.objects.create(
        connection=conn,
        dry_run=True,
        status=SyncRun.Status.SUCCEEDED,
        finished_at=timezone.now(),
        started_by=admin_user,
    )
    preview = client.get(reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk]))
    assert preview.status_code == 200
    assert 'value="Apply"' not in preview.content.decode()
    apply_url = reverse("admin:connections_connection_apply_dry_run", args=[conn.pk, run.pk])
    assert client.post(apply_url).status_code == 403

    conn.refresh_from_db()
    assert conn.state == Connection.State.ACTIVE
    assert queued == []
    assert history(conn) == []


def test_a_user_without_any_connection_permission_gets_no_preview(
    django_user_model, conn, admin_user
):
    staff = django_user_model.objects.create_user("nobody", password="pw-123456789", is_staff=True)
    client = Client()
    client.force_login(staff)
    run = SyncRun.objects.create(connection=conn, dry_run=True, started_by=admin_user)
    preview = reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk])
    assert client.get(preview).status_code == 403


# ------------------------------------------------- a dry run against the apps


@pytest.fixture(scope="module")
def server():
    srv = sandbox.serve(keys=("google", "hubspot"))
    yield srv
    srv.stop()


def test_a_dry_run_through_django_q_previews_a_create_and_writes_nothing(
    server, admin_client, monkeypatch
):
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs the task inline
    google, hubspot = App(server, "google"), App(server, "hubspot")
    for app in (google, hubspot):
        app.reset()
        app.make_account()
    conn = connect(google, hubspot)
    google.create("ann@example.com", "Ann", "Lee")

    response = admin_client.post(op_url(conn, "dry-run"), follow=True)

    run = SyncRun.objects.get(connection=conn)
    assert run.dry_run
    assert run.status == SyncRun.Status.SUCCEEDED
    assert response.redirect_chain[-1][0] == reverse(
        "admin:connections_connection_dry_run", args=[conn.pk, run.pk]
    )
    page = response.content.decode()
    rows = [(r.event.email, r.side_name, r.event.action) for r in response.context["events"]]
    assert ("ann@example.com", "HubSpot", "created") in rows
    assert "<td>Ann</td>" in page
    assert 'value="Apply"' in page
    assert hubspot.by_email("ann@example.com") == []  # a dry run writes nothing
