"""Pacing shared by every worker of an account: two processes on one
account, together, stay within the app's window (the database store, or
Redis when REDIS_URL is set: ``connections.pacing_store``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid

import pytest

from connectors import pacing
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.control import SandboxControl
from tests.test_workers import ROOT, database_url, shared_db  # noqa: F401  (fixture)

#: the window both processes share: 12 requests per second. The sandbox
#: refuses a 15th in any rolling second: room for loopback jitter, none for
#: two processes each pacing alone (2 x 12 per second)
LIMIT, WINDOW, SANDBOX_LIMIT = 12, 1.0, 14
#: requests per process: together twice the window
EACH = LIMIT

WORKER = """
import json, os, sys, time
import django
django.setup()
from connectors.http import HttpClient
from connectors.base import Credentials
from connectors.pacing import RateLimits
base_url, token, key, go, each, limit, window = sys.argv[1:8]
http = HttpClient(
    base_url,
    credentials=Credentials(access_token=token),
    account_key=key,
    limits=RateLimits(
        "drift", limit=int(limit), window=float(window),
        retry_first=0.05, retry_cap=0.2, max_wait=30.0,
    ),
)
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.01)
for _ in range(int(each)):
    http.get_json("/contacts/attributes")
print(json.dumps({"store": type(__import__("connectors.pacing").pacing._shared).__name__}))
"""


@pytest.mark.integration
def test_two_processes_of_one_account_stay_within_the_window_together(shared_db, tmp_path):  # noqa: F811
    server = serve(keys=("drift",))
    try:
        ctl = SandboxControl.of(server, "drift")
        ctl.defaults(rate_limit=SANDBOX_LIMIT, rate_window=WINDOW)
        token = ctl.new_token()["access_token"]
        ctl.reset_stats()
        go = tmp_path / "go"
        key = f"account-pacing-{uuid.uuid4().hex[:8]}"
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "DATABASE_URL": database_url(),
        }
        args = [api_base_url(server, "drift"), token, key, str(go), str(EACH), str(LIMIT)]
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", WORKER, *args, str(WINDOW)],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        try:
            for proc in procs:
                assert proc.stdout is not None
                assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
            go.touch()
            outputs = [proc.communicate(timeout=120) for proc in procs]
        finally:
            for proc in procs:
                if proc.poll() is None:
                    proc.kill()
        for proc, (out, err) in zip(procs, outputs, strict=True):
            assert proc.returncode == 0, err
            expected = "RedisStore" if os.environ.get("REDIS_URL") else "DatabaseStore"
            assert json.loads(out.strip().splitlines()[-1])["store"] == expected
        stats = ctl.stats()
        # every request served, none refused: together within the window
        assert stats.get("429", 0) == 0, stats
        assert sum(v for k, v in stats.items() if k.startswith("GET")) == 2 * EACH
    finally:
        server.stop()


def test_a_bucket_in_the_database_is_shared_and_spent_once(transactional_db) -> None:
    from connections.pacing_store import DatabaseStore, PaceBucket

    one, two = DatabaseStore(), DatabaseStore()  # two workers
    assert one.take("account-1", 3, 4.0, 0.001) == (3, 0.0)
    granted, wait = two.take("account-1", 3, 4.0, 0.001)
    assert granted == 1
    assert wait == 0.0
    granted, wait = one.take("account-1", 3, 4.0, 0.001)
    assert granted == 0
    assert wait > 100
    two.drain("account-1", 5.0, 1.0)
    assert PaceBucket.objects.get(key="account-1").tokens <= -5.0


def test_the_shared_store_is_installed_at_start_up() -> None:
    from connections.pacing_store import DatabaseStore, RedisStore

    expected = RedisStore if os.environ.get("REDIS_URL") else DatabaseStore
    assert isinstance(pacing._shared, expected)
