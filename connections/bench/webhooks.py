"""Webhook to app (``manage.py bench_webhooks``): how long a visitor
identified in Drift takes to become a contact in HubSpot, under a steady
stream of deliveries, with the real pieces: the Drift sandbox sends its
``contact_identified`` webhooks over HTTP to a real web server
(``manage.py runserver``), which stores them and queues runs for a real
worker cluster (``manage.py qcluster``) sharing this process's database and
broker (SQLite and the ORM broker by default; PostgreSQL and Redis when the
environment names them). The sandboxes keep the apps' real rate limits.

The clock starts just before the visitor is identified (the Drift sandbox
sends the webhook at once) and stops when a poll of the HubSpot sandbox
(every 0.2 s) first sees the contact.
"""

from __future__ import annotations

import os
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from django.db import connections
from django.urls import reverse

from connections.config import apply_defaults
from connections.engine.run import run_connection
from connections.models import Account, Connection, SyncRun, WebhookEvent

from .fleet import percentile
from .world import App, SandboxProcess

ROOT = Path(__file__).resolve().parent.parent.parent
TOKEN = "driftsync-bench-verification"
POLL_SECONDS = 0.2


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def database_url() -> str:
    db = connections["default"]
    if db.vendor == "sqlite":
        return f"sqlite:///{db.settings_dict['NAME']}"
    url = os.environ.get("DATABASE_URL", "")
    if not url:
        raise RuntimeError("the worker processes need DATABASE_URL to reach this database")
    return url


class Children:
    """The web server and the worker cluster, as separate processes."""

    def __init__(self, port: int, workers: int) -> None:
        env = {
            **os.environ,
            "DATABASE_URL": database_url(),
            "DEBUG": "true",
            "DRIFT_VERIFICATION_TOKEN": TOKEN,
            "Q_WORKERS": str(workers),
            "Q_LOG_LEVEL": "WARNING",
            "LOG_LEVEL": "WARNING",
        }
        manage = [sys.executable, "manage.py"]
        quiet = {"stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
        self.procs = [
            subprocess.Popen(
                [*manage, "runserver", "--noreload", f"127.0.0.1:{port}"],
                cwd=ROOT,
                env=env,
                **quiet,
            ),
            subprocess.Popen([*manage, "qcluster"], cwd=ROOT, env=env, **quiet),
        ]
        deadline = time.monotonic() + 60
        while True:
            try:
                requests.get(f"http://127.0.0.1:{port}/admin/login/", timeout=2)
                return
            except requests.RequestException:
                if time.monotonic() > deadline or any(p.poll() is not None for p in self.procs):
                    self.stop()
                    raise RuntimeError("the web server did not start") from None
                time.sleep(0.2)

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGINT)
        for proc in self.procs:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()


def run_webhook_latency(
    *,
    rate: float = 10.0,
    seconds: float = 60.0,
    workers: int = 1,
    drain: float = 120.0,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    tag = uuid.uuid4().hex[:8]
    server = SandboxProcess()
    drift, hubspot = App(server, "drift"), App(server, "hubspot")
    conn: Connection | None = None
    children: Children | None = None
    try:
        for app in (drift, hubspot):
            app.make_account(f"webhooks-{tag}")
        conn = Connection.objects.create(
            name=f"bench webhooks {tag}",
            account_a=drift.account,
            account_b=hubspot.account,
            settings_a=drift.settings,
            settings_b=hubspot.settings,
            interval_minutes=60,
            state=Connection.State.ACTIVE,
        )
        apply_defaults(conn)
        run_connection(conn)  # the initial sync: from now on only the webhooks trigger runs
        port = free_port()
        progress(f"web server on :{port} and a worker cluster of {workers}")
        # the children must see what this process wrote
        connections["default"].close()
        children = Children(port, workers)
        drift.control.register_webhook(f"http://127.0.0.1:{port}{reverse('webhooks:drift')}", TOKEN)
        sent: dict[str, float] = {}
        seen: dict[str, float] = {}
        done = threading.Event()

        def poll() -> None:
            while not done.is_set():
                now = time.monotonic()
                for contact in hubspot.control.contacts():
                    email = ((contact.get("properties") or {}).get("email") or "").lower()
                    if email in sent and email not in seen:
                        seen[email] = now
                done.wait(POLL_SECONDS)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        total = int(rate * seconds)
        progress(f"{total} visitors identified at {rate:g}/s for {seconds:g} s")
        start = time.monotonic()
        for i in range(total):
            wait = start + i / rate - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            email = f"visitor{i:05d}.{tag}@bench.example.com"
            sent[email] = time.monotonic()
            drift.control.identify(email=email, name=f"Visitor {i}", company="Bench")
        load_seconds = time.monotonic() - start
        progress(f"waiting up to {drain:g} s for the last ones")
        deadline = time.monotonic() + drain
        while len(seen) < len(sent) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
        done.set()
        poller.join(timeout=10)
        latencies = [seen[e] - sent[e] for e in sent if e in seen]
        runs = SyncRun.objects.filter(connection=conn).exclude(trigger=SyncRun.Trigger.MANUAL)
        return {
            "pair": "drift-hubspot",
            "database": connections["default"].vendor,
            "broker": "redis" if os.environ.get("REDIS_URL") else "orm",
            "workers": workers,
            "rate_per_s": rate,
            "seconds": seconds,
            "load_seconds": round(load_seconds, 1),
            "sent": len(sent),
            "arrived": len(latencies),
            "missing": len(sent) - len(latencies),
            "latency_s": {
                "p50": round(percentile(latencies, 0.5), 2) if latencies else None,
                "p95": round(percentile(latencies, 0.95), 2) if latencies else None,
                "max": round(max(latencies), 2) if latencies else None,
                "mean": round(statistics.mean(latencies), 2) if latencies else None,
            },
            "runs": runs.count(),
            "deliveries_stored": WebhookEvent.objects.filter(account=drift.account).count(),
        }
    finally:
        if children is not None:
            children.stop()
        if conn is not None:
            WebhookEvent.objects.filter(account__in=[drift.account, hubspot.account]).delete()
            Connection.objects.filter(pk=conn.pk).delete()
        Account.objects.filter(
            pk__in=[a.account.pk for a in (drift, hubspot) if a.account is not None]
        ).delete()
        server.stop()
        for app in (drift, hubspot):
            app.control.close()


def render_webhook_latency(report: dict[str, Any]) -> str:
    lat = report["latency_s"]
    return "\n".join(
        [
            f"Webhook → app: Drift visitor identified → HubSpot contact, "
            f"{report['rate_per_s']:g} deliveries/s for {report['seconds']:g} s "
            f"({report['database']}, {report['broker']} broker, {report['workers']} worker(s))",
            f"  arrived {report['arrived']} of {report['sent']} (missing {report['missing']})",
            f"  latency: p50 {lat['p50']} s, p95 {lat['p95']} s (target ≤ 5 s), "
            f"max {lat['max']} s, mean {lat['mean']} s",
            f"  sync runs the webhooks triggered: {report['runs']}; "
            f"deliveries stored: {report['deliveries_stored']}",
        ]
    )
