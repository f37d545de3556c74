"""Real django-q2 clusters: two qcluster processes share the queue (the ORM
broker, or Redis when REDIS_URL is set) and the database (SQLite file, or
PostgreSQL when DATABASE_URL is set). Triggers fired at one connection never
overlap and none is lost."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection as db_connection
from django_q.brokers import get_broker
from django_q.models import Task

from connections.models import Connection, SyncRun
from connections.tasks import enqueue_sync
from connectors import sandbox
from tests.engine.world import App, connect

ROOT = Path(__file__).resolve().parent.parent


def database_url() -> str:
    cfg = db_connection.settings_dict
    if cfg["ENGINE"].endswith("sqlite3"):
        return f"sqlite:///{cfg['NAME']}"
    return (
        f"postgres://{cfg['USER']}:{cfg['PASSWORD']}@{cfg['HOST'] or '127.0.0.1'}:"
        f"{cfg['PORT'] or 5432}/{cfg['NAME']}"
    )


@pytest.fixture
def shared_db(transactional_db, tmp_path):
    """A database the worker processes can open too. On SQLite, a fresh file
    of this test's own (the suite's test database is not shared with other
    processes); on PostgreSQL, the test database itself."""
    cfg = db_connection.settings_dict
    if not cfg["ENGINE"].endswith("sqlite3"):
        yield
        return
    original = cfg["NAME"]
    db_connection.close()
    cfg["NAME"] = str(tmp_path / "workers.sqlite3")
    call_command("migrate", verbosity=0, interactive=False)
    try:
        yield
    finally:
        db_connection.close()
        cfg["NAME"] = original


@pytest.fixture
def workers(shared_db, tmp_path):
    get_broker().purge_queue()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "driftsync.settings",
        "DRIFTSYNC_ENV_FILE": "/nonexistent",
        "LOG_LEVEL": "INFO",
        "DATABASE_URL": database_url(),
        "Q_WORKERS": "1",
        "Q_POLL": "0.2",
    }
    logs = [tmp_path / f"qcluster-{n}.log" for n in range(2)]
    procs = [
        subprocess.Popen(
            [sys.executable, "manage.py", "qcluster"],
            cwd=ROOT,
            env=env,
            stdout=log.open("w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for log in logs
    ]
    yield procs
    for log in logs:
        # shown by pytest when the test failed
        print(f"--- {log.name}\n{log.read_text()[-3000:]}")
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


@pytest.fixture
def world(shared_db):
    server = sandbox.serve(keys=("google", "hubspot"))
    google, hubspot = App(server, "google"), App(server, "hubspot")
    for app in (google, hubspot):
        app.reset()
        app.make_account()
    for i in range(30):
        google.create(f"worker{i}@example.com", "Worker", str(i))
    conn = connect(google, hubspot)
    yield google, hubspot, conn
    server.stop()


def wait_until_quiet(conn: Connection, runs_at_least: int, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        # a fresh connection each time: on SQLite a statement an earlier test
        # left open would otherwise pin this process to an old snapshot
        db_connection.close()
        conn.refresh_from_db()
        runs = SyncRun.objects.filter(connection=conn)
        idle = (
            conn.running_since is None
            and conn.run_requested_at is None
            and not runs.filter(status=SyncRun.Status.RUNNING).exists()
        )
        if idle and runs.count() >= runs_at_least and get_broker().queue_size() == 0:
            return
        time.sleep(0.3)
    tasks = list(Task.objects.values_list("name", "success", "result"))
    raise AssertionError(
        f"the workers did not settle on {database_url()}: runs {list(runs.values('status'))}, "
        f"connection {conn.pk} "
        f"{conn.state} {conn.state_reason!r} running_since={conn.running_since}, tasks {tasks}"
    )


@pytest.mark.integration
def test_two_workers_never_overlap_runs_of_one_connection_and_lose_no_trigger(workers, world):
    google, hubspot, conn = world
    for _ in range(6):
        enqueue_sync(conn, trigger=SyncRun.Trigger.WEBHOOK)
    wait_until_quiet(conn, runs_at_least=1)

    # a contact added after those triggers, then one more trigger: it must be synced
    first_wave = SyncRun.objects.filter(connection=conn).count()
    google.create("late@example.com", "Late", "Comer")
    enqueue_sync(conn, trigger=SyncRun.Trigger.WEBHOOK)
    enqueue_sync(conn, trigger=SyncRun.Trigger.WEBHOOK)
    wait_until_quiet(conn, runs_at_least=first_wave + 1)

    runs = list(SyncRun.objects.filter(connection=conn).order_by("started_at"))
    assert all(r.status == SyncRun.Status.SUCCEEDED for r in runs), [r.error for r in runs]
    for earlier, later in itertools.pairwise(runs):
        assert earlier.finished_at <= later.started_at, "two runs of one connection overlapped"
    emails = sorted(c.email for c in hubspot.contacts())
    assert len(emails) == 31
    assert "late@example.com" in emails
    assert len(set(emails)) == len(emails)
