"""A fleet of idle connections (``manage.py bench_fleet``): what a connection
with nothing to do costs each time its schedule fires, and what share of
one worker a fleet of them takes.

Every connection of the fleet syncs the same two small sandbox accounts (the
sandboxes cannot hand out many identities); each has its own cursors, so
its idle run is exactly the run a scheduled connection makes when nothing
changed: claim the connection, read each side's changes since its cursor,
find none, record the run, release. The run goes through
``connections.tasks.run_sync`` — the function the schedule calls — so the
claim, the heartbeat thread, the run record and the release are counted.

Measured per idle run: requests served by the sandboxes, database queries
(of the worker's connection), wall time. The worker share is the wall time
of one round of the fleet divided by the interval: the fraction of one
worker the fleet keeps busy. The apps' rate limits are off while measuring
(the rounds run back to back, far faster than any schedule would); the
report gives the requests per minute the fleet sends each app at its real
interval, to compare with the app's limit.
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from django.test.utils import override_settings

from connections.config import apply_defaults
from connections.models import Account, Connection, SyncRun
from connections.tasks import run_sync

from .runs import count_queries
from .world import App, SandboxProcess, seed_people

#: client-side pacing off: the rounds run back to back (see the module doc)
NO_PACING = {
    app: {"limit": 0, "search_limit": 0, "concurrency": 0}
    for app in ("google", "hubspot", "drift", "mailchimp")
}
SANDBOX_LIMITS_OFF = {"rate_limit": 0, "search_rate_limit": 0, "daily_limit": 0}


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


def run_fleet(
    *,
    connections: int = 200,
    interval_minutes: int = 5,
    pair: str = "hubspot-google",
    contacts: int = 20,
    rounds: int = 1,
    progress: Callable[[str], None] = lambda message: None,
) -> dict[str, Any]:
    key_a, key_b = pair.split("-", 1)
    server = SandboxProcess()
    apps = {"a": App(server, key_a), "b": App(server, key_b)}
    made: list[Connection] = []
    try:
        for side, app in apps.items():
            current = app.control.config()
            app.control.configure(
                error_rate=0.0,
                drop_rate=0.0,
                **{k: v for k, v in SANDBOX_LIMITS_OFF.items() if k in current},
            )
            app.seed(seed_people(side, contacts, contacts // 2, 0))
            app.make_account(f"fleet-{time.monotonic_ns()}")
        with override_settings(DRIFTSYNC_RATE_LIMITS=NO_PACING):
            progress(f"{connections} connections: initial syncs")
            for i in range(connections):
                conn = Connection.objects.create(
                    name=f"fleet {i:04d} {time.monotonic_ns()}",
                    account_a=apps["a"].account,
                    account_b=apps["b"].account,
                    settings_a=apps["a"].settings,
                    settings_b=apps["b"].settings,
                    interval_minutes=interval_minutes,
                    state=Connection.State.ACTIVE,
                )
                apply_defaults(conn)
                made.append(conn)
                run_sync(conn.pk, SyncRun.Trigger.MANUAL)
                run_sync(conn.pk, SyncRun.Trigger.MANUAL)  # the echoes of its own writes
            walls: list[float] = []
            queries: list[int] = []
            requests: list[int] = []
            by_route: Counter[str] = Counter()
            progress(f"{connections} idle runs × {rounds} round(s)")
            for _ in range(rounds):
                for conn in made:
                    before = {side: app.control.stats() for side, app in apps.items()}
                    with count_queries() as counted:
                        start = time.perf_counter()
                        run_id = run_sync(conn.pk)
                        walls.append(time.perf_counter() - start)
                    queries.append(counted.count)
                    served = 0
                    for side, app in apps.items():
                        diff = Counter(app.control.stats()) - Counter(before[side])
                        diff.pop("429", None)
                        served += sum(diff.values())
                        by_route.update({f"{app.key} {r}": n for r, n in diff.items()})
                    requests.append(served)
                    run = SyncRun.objects.get(pk=run_id)
                    if run.status != SyncRun.Status.SUCCEEDED:
                        raise RuntimeError(f"idle run of {conn} {run.status}: {run.error}")
                    if any(
                        run.counters.get(s, {}).get(k) for s in "ab" for k in ("created", "updated")
                    ):
                        raise RuntimeError(f"the idle run of {conn} wrote: {run.counters}")
        round_wall = sum(walls) / rounds
        interval = interval_minutes * 60
        per_app_rpm = {
            app.key: round(
                sum(n for r, n in by_route.items() if r.startswith(f"{app.key} "))
                / rounds
                / interval_minutes,
                1,
            )
            for app in apps.values()
        }
        return {
            "pair": pair,
            "connections": connections,
            "interval_minutes": interval_minutes,
            "rounds": rounds,
            "requests_per_idle_run": {
                "mean": round(statistics.mean(requests), 2),
                "max": max(requests),
            },
            "requests_by_route": dict(sorted(by_route.items())),
            "queries_per_idle_run": {
                "mean": round(statistics.mean(queries), 1),
                "max": max(queries),
            },
            "idle_run_ms": {
                "mean": round(1000 * statistics.mean(walls), 1),
                "p50": round(1000 * percentile(walls, 0.5), 1),
                "p95": round(1000 * percentile(walls, 0.95), 1),
                "max": round(1000 * max(walls), 1),
            },
            "round_seconds": round(round_wall, 2),
            "worker_share": round(round_wall / interval, 4),
            "requests_per_minute_per_app": per_app_rpm,
        }
    finally:
        accounts = [app.account for app in apps.values() if app.account is not None]
        Connection.objects.filter(pk__in=[c.pk for c in made]).delete()
        Account.objects.filter(pk__in=[a.pk for a in accounts]).delete()
        server.stop()
        for app in apps.values():
            app.control.close()


def render_fleet(report: dict[str, Any]) -> str:
    req, q, ms = (
        report["requests_per_idle_run"],
        report["queries_per_idle_run"],
        report["idle_run_ms"],
    )
    rpm = ", ".join(f"{k} {v}/min" for k, v in report["requests_per_minute_per_app"].items())
    lines = [
        f"Fleet: {report['connections']} idle connections ({report['pair']}), "
        f"every {report['interval_minutes']} min, {report['rounds']} round(s)",
        f"  requests per idle run: mean {req['mean']}, max {req['max']}   (target ≤ 4)",
        f"  queries per idle run:  mean {q['mean']}, max {q['max']}   (target ≤ 25)",
        f"  idle run: mean {ms['mean']} ms, p50 {ms['p50']} ms, p95 {ms['p95']} ms, "
        f"max {ms['max']} ms",
        f"  one round of the fleet: {report['round_seconds']} s of one worker per "
        f"{report['interval_minutes'] * 60} s = {report['worker_share']:.1%} of one worker "
        "(target ≤ 10%)",
        f"  requests the fleet sends at that interval: {rpm}",
        "  by route: "
        + ", ".join(f"{route} {n}" for route, n in report["requests_by_route"].items()),
    ]
    return "\n".join(lines)
