"""A run collects garbage less often (``connections.engine.gcpolicy``), and
the process's own setting comes back when the last run in it ends."""

from __future__ import annotations

import gc
import threading

import pytest

from connections.engine import gcpolicy
from connections.engine.run import SyncRunner, run_connection
from connections.models import SyncRun


@pytest.fixture
def default_threshold():
    saved = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield
    gc.set_threshold(*saved)


def test_a_run_collects_less_often_and_puts_the_setting_back(
    default_threshold, make_connection, monkeypatch
):
    seen = []
    # the pipeline itself (reads, plans, writes, records) is the one that runs
    monkeypatch.setattr(SyncRunner, "sync", lambda self: seen.append(gc.get_threshold()))
    run = run_connection(make_connection())
    assert run.status == SyncRun.Status.SUCCEEDED, run.error
    assert seen == [(gcpolicy.THRESHOLD, 10, 10)]
    assert gc.get_threshold() == (700, 10, 10)


def test_runs_in_threads_share_it_and_the_last_one_out_restores_it(default_threshold):
    inside, leave = threading.Event(), threading.Event()
    during = []

    def other_run():
        with gcpolicy.fewer_collections():
            inside.set()
            leave.wait(5)

    thread = threading.Thread(target=other_run)
    thread.start()
    assert inside.wait(5)
    with gcpolicy.fewer_collections():
        during.append(gc.get_threshold())
    during.append(gc.get_threshold())  # this run is over, the other is not
    leave.set()
    thread.join(5)
    assert during == [(gcpolicy.THRESHOLD, 10, 10)] * 2
    assert gc.get_threshold() == (700, 10, 10)


def test_a_process_that_turned_collection_off_keeps_it_off(default_threshold):
    gc.set_threshold(0)
    with gcpolicy.fewer_collections():
        assert gc.get_threshold()[0] == 0
    assert gc.get_threshold()[0] == 0


def test_an_error_in_the_run_still_restores_it(default_threshold):
    with pytest.raises(RuntimeError), gcpolicy.fewer_collections():
        raise RuntimeError("the run failed")
    assert gc.get_threshold() == (700, 10, 10)
