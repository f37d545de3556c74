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


def test_an_expired_claim_is_taken_over_and_its_run_marked_failed(conn: Connection) -> None:
    long_ago = timezone.now() - locking.lease() - dt.timedelta(minutes=1)
    Connection.objects.filter(pk=conn.pk).update(running_since=long_ago)
    dead = SyncRun.objects.create(connection=conn, started_at=long_ago)
    held = locking.claim(conn.pk)
    assert held is not None
    dead.refresh_from_db()
    assert dead.status == SyncRun.Status.FAILED
    assert "lease expired" in dead.error


def test_a_claim_within_its_lease_is_not_taken_over(conn: Connection) -> None:
    recently = timezone.now() - locking.lease() + dt.timedelta(minutes=1)
    Connection.objects.filter(pk=conn.pk).update(running_since=recently)
    assert locking.claim(conn.pk) is None


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
