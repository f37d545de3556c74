"""Schedules follow their connection; the task functions take ids, refuse
connections that are not active, and queue through django-q2."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

import pytest
from django.utils import timezone
from django_q.conf import Conf
from django_q.models import Schedule

from connections import locking, schedules, tasks
from connections.models import Connection, SyncRun, WebhookEvent

pytestmark = pytest.mark.integration


def schedule_of(conn: Connection) -> Schedule | None:
    return Schedule.objects.filter(name=f"driftsync-connection-{conn.pk}").first()


@pytest.fixture
def engine(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The engine replaced by one that records its calls and succeeds."""
    calls: list[dict[str, Any]] = []

    def fake(connection: Connection, **kwargs: Any) -> SyncRun:
        calls.append({"connection": connection.pk, **kwargs})
        return SyncRun.objects.create(
            connection=connection,
            trigger=kwargs["trigger"],
            started_by=kwargs.get("user"),
            dry_run=kwargs.get("dry_run", False),
            status=SyncRun.Status.SUCCEEDED,
            finished_at=timezone.now(),
        )

    monkeypatch.setattr("connections.tasks.run_connection", fake)
    return calls


# --------------------------------------------------------------- schedules


def test_a_schedule_follows_its_connection_through_its_life(
    make_connection: Callable[..., Connection],
) -> None:
    conn = make_connection(interval_minutes=30)
    schedule = schedule_of(conn)
    assert schedule is not None
    assert schedule.func == "connections.tasks.scheduled_sync"
    assert schedule.args == f"({conn.pk},)"
    assert (schedule.schedule_type, schedule.minutes, schedule.repeats) == ("I", 30, -1)
    assert schedule.next_run <= timezone.now()  # the initial sync comes at once

    # a shorter interval takes effect now, not after the old one ran out
    Schedule.objects.filter(pk=schedule.pk).update(next_run=timezone.now() + dt.timedelta(hours=1))
    conn.interval_minutes = 5
    conn.save()
    schedule = schedule_of(conn)
    assert schedule.minutes == 5
    assert schedule.next_run <= timezone.now() + dt.timedelta(minutes=5)

    conn.state = Connection.State.PAUSED
    conn.save()
    assert schedule_of(conn) is None

    conn.state = Connection.State.ACTIVE
    conn.save()
    assert schedule_of(conn).minutes == 5

    pk = conn.pk
    conn.delete()
    assert not Schedule.objects.filter(name=f"driftsync-connection-{pk}").exists()


@pytest.mark.parametrize("state", ["paused", "needs_reauth", "error"])
def test_a_connection_that_is_not_active_has_no_schedule(
    make_connection: Callable[..., Connection], state: str
) -> None:
    conn = make_connection(state=state)
    assert schedule_of(conn) is None


def test_saving_without_a_change_leaves_a_hand_edited_next_run_alone(
    make_connection: Callable[..., Connection],
) -> None:
    conn = make_connection()
    later = timezone.now() + dt.timedelta(hours=3)
    Schedule.objects.filter(pk=schedule_of(conn).pk).update(next_run=later)
    conn.name = "renamed"
    conn.save()
    assert schedule_of(conn).next_run == later
    assert Schedule.objects.count() == 1


def test_reconcile_repairs_every_schedule_and_is_idempotent(
    make_connection: Callable[..., Connection],
) -> None:
    active, paused = make_connection(), make_connection(state="paused")
    # what signals never see: queryset updates, schedules edited or left behind
    Connection.objects.filter(pk=paused.pk).update(state="active")
    Connection.objects.filter(pk=active.pk).update(interval_minutes=7)
    Schedule.objects.create(
        name="driftsync-connection-999999", func=schedules.SCHEDULE_FUNC, args="(999999,)"
    )
    counts = schedules.reconcile()
    assert counts == {"created": 1, "updated": 1, "removed": 1, "unchanged": 0}
    assert schedule_of(active).minutes == 7
    assert schedule_of(paused) is not None
    assert schedules.reconcile() == {"created": 0, "updated": 0, "removed": 0, "unchanged": 2}


# ------------------------------------------------------------------- tasks


def test_scheduled_sync_runs_the_connection_and_returns_the_run_id(
    make_connection: Callable[..., Connection], engine: list
) -> None:
    conn = make_connection()
    run_id = tasks.scheduled_sync(conn.pk)
    assert run_id == SyncRun.objects.get().pk
    assert engine[0]["trigger"] == "schedule"
    assert Connection.objects.get(pk=conn.pk).running_since is None


@pytest.mark.parametrize("state", ["paused", "needs_reauth", "error"])
def test_a_connection_that_is_not_active_never_runs_and_loses_its_stale_schedule(
    make_connection: Callable[..., Connection], engine: list, state: str
) -> None:
    conn = make_connection()
    # the engine sets these states with queryset.update: no signal, the schedule stays
    Connection.objects.filter(pk=conn.pk).update(state=state)
    assert schedule_of(conn) is not None
    assert tasks.run_sync(conn.pk) is None
    assert engine == []
    assert schedule_of(conn) is None


def test_a_task_for_a_deleted_connection_does_nothing(db: None, engine: list) -> None:
    assert tasks.run_sync(123456) is None
    assert engine == []


def test_run_sync_passes_the_user_and_flags(
    make_connection: Callable[..., Connection], engine: list, django_user_model: Any
) -> None:
    conn = make_connection()
    user = django_user_model.objects.create_user("ops")
    tasks.run_sync(conn.pk, trigger="manual", user_id=user.pk, dry_run=True, full=True)
    assert engine[0]["user"] == user
    assert (engine[0]["dry_run"], engine[0]["full"]) == (True, True)


def test_a_busy_connection_coalesces_a_trigger_but_skips_a_dry_run(
    make_connection: Callable[..., Connection], engine: list
) -> None:
    conn = make_connection()
    held = locking.claim(conn.pk)
    assert held is not None
    assert tasks.run_sync(conn.pk, dry_run=True) is None
    assert Connection.objects.get(pk=conn.pk).run_requested_at is None
    assert tasks.run_sync(conn.pk, trigger="webhook") is None
    assert Connection.objects.get(pk=conn.pk).run_requested_at is not None
    assert engine == []


def test_a_crashing_run_releases_the_claim_and_is_recorded_as_failed(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()

    def crash(connection: Connection, **kwargs: Any) -> SyncRun:
        SyncRun.objects.create(connection=connection, trigger=kwargs["trigger"])
        raise RuntimeError("boom")

    monkeypatch.setattr("connections.tasks.run_connection", crash)
    with pytest.raises(RuntimeError):
        tasks.run_sync(conn.pk)
    assert Connection.objects.get(pk=conn.pk).running_since is None
    run = SyncRun.objects.get()
    assert run.status == SyncRun.Status.FAILED
    assert "RuntimeError: boom" in run.error


def test_a_successful_run_marks_the_connections_mailchimp_deliveries_processed(
    make_connection: Callable[..., Connection], make_account: Callable[..., Any], engine: list
) -> None:
    conn = make_connection(account_b=make_account("mailchimp"))
    event = WebhookEvent.objects.create(source="mailchimp", connection=conn, contact_id="x")
    tasks.run_sync(conn.pk, trigger="webhook")
    event.refresh_from_db()
    assert event.status == WebhookEvent.Status.PROCESSED


def test_enqueue_sync_queues_the_task_by_its_dotted_path(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()
    queued: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(
        "connections.tasks.async_task", lambda *a, **kw: queued.append((a, kw)) or "id"
    )
    tasks.enqueue_sync(conn, trigger="manual", full=True)
    ((args, kwargs),) = queued
    assert args == ("connections.tasks.run_sync", conn.pk)
    assert kwargs["trigger"] == "manual"
    assert (kwargs["user_id"], kwargs["dry_run"], kwargs["full"]) == (None, False, True)


def test_enqueue_sync_runs_through_django_q(
    make_connection: Callable[..., Connection],
    engine: list,
    monkeypatch: pytest.MonkeyPatch,
    django_user_model: Any,
) -> None:
    monkeypatch.setattr(Conf, "SYNC", True)  # django-q2 runs the task inline
    conn = make_connection()
    user = django_user_model.objects.create_user("staff")
    tasks.enqueue_sync(conn, trigger="manual", user=user)
    assert engine[0]["trigger"] == "manual"
    assert SyncRun.objects.get().started_by == user


def test_a_trigger_during_a_dry_run_is_handed_to_the_queue_as_a_real_run(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()
    queued: list[dict[str, Any]] = []
    monkeypatch.setattr(
        "connections.tasks.enqueue_sync", lambda c, **kw: queued.append({"pk": c.pk, **kw})
    )
    runs: list[bool] = []

    def engine(connection: Connection, **kwargs: Any) -> SyncRun:
        runs.append(kwargs["dry_run"])
        if len(runs) == 1:  # a webhook arrives while the dry run goes
            assert tasks.run_sync(connection.pk, trigger="webhook") is None
        return SyncRun.objects.create(
            connection=connection, dry_run=kwargs["dry_run"], status=SyncRun.Status.SUCCEEDED
        )

    monkeypatch.setattr("connections.tasks.run_connection", engine)
    tasks.run_sync(conn.pk, trigger="manual", dry_run=True)
    assert runs == [True]
    assert queued == [{"pk": conn.pk, "trigger": "schedule"}]
    assert Connection.objects.get(pk=conn.pk).running_since is None


def test_a_webhook_during_a_run_is_coalesced_without_queueing_a_task(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()
    queued: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(
        "connections.tasks.async_task", lambda *a, **kw: queued.append((a, kw)) or "id"
    )
    held = locking.claim(conn.pk)
    assert held is not None
    for _ in range(5):
        assert tasks.enqueue_sync(conn, trigger="webhook") == ""
    assert queued == []
    # the run in progress runs once more for them, then lets go
    assert held.release_or_continue() is True
    assert held.release_or_continue() is False
    # nothing running: the next delivery queues a task
    tasks.enqueue_sync(conn, trigger="webhook")
    assert len(queued) == 1


def test_a_webhook_finding_a_dead_workers_claim_queues_a_task(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()
    queued: list[tuple[tuple, dict]] = []
    monkeypatch.setattr(
        "connections.tasks.async_task", lambda *a, **kw: queued.append((a, kw)) or "id"
    )
    long_ago = timezone.now() - locking.stale_after() - dt.timedelta(seconds=5)
    Connection.objects.filter(pk=conn.pk).update(running_since=long_ago, heartbeat_at=long_ago)
    tasks.enqueue_sync(conn, trigger="webhook")
    assert len(queued) == 1
