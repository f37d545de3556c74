"""One run per connection at a time, held in the database: claims, coalesced
triggers, expired leases, and two workers racing for the same connection."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection as db_connection
from django.db import transaction
from django.utils import timezone

from connections import locking
from connections.models import Connection, SyncRun
from connections.tasks import run_sync

pytestmark = pytest.mark.integration


@pytest.fixture
def conn(make_connection: Callable[..., Connection]) -> Connection:
    return make_connection()


def row(conn: Connection) -> Connection:
    return Connection.objects.get(pk=conn.pk)


def test_a_claim_is_exclusive_until_released(conn: Connection) -> None:
    held = locking.claim(conn.pk)
    assert held is not None
    assert row(conn).running_since == held.since
    assert locking.claim(conn.pk) is None
    assert held.release_or_continue() is False
    assert row(conn).running_since is None
    assert locking.claim(conn.pk) is not None


def test_a_trigger_during_a_run_is_coalesced_and_the_holder_runs_again(conn: Connection) -> None:
    held = locking.claim(conn.pk)
    assert held is not None
    assert locking.claim_or_request(conn.pk) is None
    assert locking.claim_or_request(conn.pk) is None  # many triggers, one follow-up
    assert row(conn).run_requested_at is not None
    assert held.release_or_continue() is True  # run again, still holding the claim
    assert row(conn).run_requested_at is None
    assert row(conn).running_since == held.since
    assert held.release_or_continue() is False
    assert row(conn).running_since is None


def test_a_request_after_the_release_claims_instead_of_getting_lost(conn: Connection) -> None:
    # nobody holds the claim: a request must not be parked in run_requested_at
    assert locking.request_run(conn.pk) is False
    held = locking.claim_or_request(conn.pk)
    assert held is not None


def test_a_coalesced_full_request_marks_the_connection_for_a_full_sync(conn: Connection) -> None:
    Connection.objects.filter(pk=conn.pk).update(needs_full_sync=False)
    held = locking.claim(conn.pk)
    assert held is not None
    assert locking.claim_or_request(conn.pk, full=True) is None
    assert row(conn).needs_full_sync is True


def test_a_claim_whose_heartbeat_stopped_is_free_within_minutes(conn: Connection) -> None:
    # a worker killed mid-run 3 minutes ago: not the 31 minutes of the task timeout
    dead_since = timezone.now() - locking.stale_after() - dt.timedelta(minutes=1)
    Connection.objects.filter(pk=conn.pk).update(running_since=dead_since, heartbeat_at=dead_since)
    dead = SyncRun.objects.create(connection=conn, started_at=dead_since)
    assert locking.stale_after() <= dt.timedelta(minutes=2)
    held = locking.claim(conn.pk)
    assert held is not None
    dead.refresh_from_db()
    assert dead.status == SyncRun.Status.FAILED
    assert "heartbeat stopped" in dead.error


def test_a_long_run_that_keeps_beating_is_not_taken_over(conn: Connection) -> None:
    now = timezone.now()
    Connection.objects.filter(pk=conn.pk).update(
        running_since=now - dt.timedelta(hours=2), heartbeat_at=now - dt.timedelta(seconds=10)
    )
    assert locking.claim(conn.pk) is None


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_beats_from_its_own_thread_while_the_run_waits(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()
    monkeypatch.setattr(locking, "HEARTBEAT_EVERY", dt.timedelta(seconds=0.05))
    held = locking.claim(conn.pk)
    assert held is not None
    first = row(conn).heartbeat_at
    with held.keep_alive():
        time.sleep(0.4)  # one long request: no progress callback meanwhile
    assert row(conn).heartbeat_at > first
    assert row(conn).running_since == held.since  # the fencing token never moves


def test_a_stale_worker_that_wakes_up_cannot_commit_over_the_new_run(conn: Connection) -> None:
    stale = locking.claim(conn.pk)
    assert stale is not None
    # it stalls; its heartbeat stops; another worker takes over
    gone = timezone.now() - locking.stale_after() - dt.timedelta(seconds=1)
    Connection.objects.filter(pk=conn.pk).update(heartbeat_at=gone)
    fresh = locking.claim(conn.pk)
    assert fresh is not None

    def commit_page(claim: locking.Claim) -> None:
        with transaction.atomic():
            Connection.objects.filter(pk=conn.pk).update(cursor_a="written by the stale worker")
            claim.fence()

    with pytest.raises(locking.ClaimLost):
        commit_page(stale)
    assert row(conn).cursor_a == ""
    stale.last_beat = None
    assert stale.renew() is False  # its heartbeat no longer keeps anything alive
    fresh.fence()  # the new holder commits


def test_a_holder_that_lost_its_claim_does_not_release_the_new_holders(conn: Connection) -> None:
    held = locking.claim(conn.pk)
    assert held is not None
    later = held.since + dt.timedelta(seconds=1)
    Connection.objects.filter(pk=conn.pk).update(running_since=later)  # someone took over
    assert held.release_or_continue() is False
    assert row(conn).running_since == later


@pytest.mark.django_db(transaction=True)
def test_two_workers_never_run_one_connection_at_once_and_the_second_trigger_is_not_lost(
    make_connection: Callable[..., Connection], monkeypatch: pytest.MonkeyPatch
) -> None:
    conn = make_connection()
    spans: list[tuple[float, float]] = []
    second_trigger_at: list[float] = []
    started = threading.Event()

    def slow_engine(connection: Connection, **kwargs: Any) -> SyncRun:
        begin = time.monotonic()
        run = SyncRun.objects.create(connection=connection, trigger=kwargs["trigger"])
        started.set()
        time.sleep(0.4)
        run.status = SyncRun.Status.SUCCEEDED
        run.finished_at = timezone.now()
        run.save()
        spans.append((begin, time.monotonic()))
        return run

    monkeypatch.setattr("connections.tasks.run_connection", slow_engine)
    results: dict[str, Any] = {}

    def worker(name: str) -> None:
        try:
            if name == "second":
                started.wait(5)
                second_trigger_at.append(time.monotonic())
            results[name] = run_sync(conn.pk, trigger="webhook")
        except Exception as exc:  # pragma: no cover - shown by the assertion below
            results[name] = exc
        finally:
            db_connection.close()

    threads = [threading.Thread(target=worker, args=(n,)) for n in ("first", "second")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)

    assert not any(isinstance(r, Exception) for r in results.values()), results
    # the second worker found the connection busy and left its trigger behind
    assert results["second"] is None
    # the first ran twice: its own run, then the one the second trigger asked for
    assert len(spans) == 2
    (_first_begin, first_end), (second_begin, _second_end) = sorted(spans)
    assert second_begin >= first_end, "two runs overlapped"
    assert second_begin > second_trigger_at[0]
    assert results["first"] == SyncRun.objects.order_by("started_at").last().pk
    final = Connection.objects.get(pk=conn.pk)
    assert final.running_since is None
    assert final.run_requested_at is None
