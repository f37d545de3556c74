"""One timed engine run of a bench world: wall time, database queries, the
requests the connectors counted and those the sandboxes served."""

from __future__ import annotations

import contextlib
import gc
import resource
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from django.db import connection as db_connection

from connections.engine.run import run_connection
from connections.models import Connection, SyncRun
from connectors.base import Connector
from connectors.http import HttpClient

from .world import SIDES, World

if TYPE_CHECKING:
    from .floor import Recorder


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far (Linux: ru_maxrss in KiB)."""
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def current_rss_mb() -> float | None:
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return round(int(line.split()[1]) / 1024, 1)
    except OSError:  # pragma: no cover - not Linux
        return None
    return None  # pragma: no cover


class QueryCounter:
    """Counts database queries with an execute wrapper (no SQL kept)."""

    def __init__(self) -> None:
        self.count = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        self.count += 1
        return execute(sql, params, many, context)


@contextlib.contextmanager
def count_queries() -> Iterator[QueryCounter]:
    counter = QueryCounter()
    with db_connection.execute_wrapper(counter):
        yield counter


def http_client_of(connector: Connector) -> HttpClient:
    """Where the connector keeps its HttpClient (Mailchimp: on its client)."""
    http = getattr(connector, "http", None)
    if isinstance(http, HttpClient):
        return http
    client = getattr(connector, "client", None)  # Mailchimp builds it on first use
    http = getattr(client, "http", None)
    if isinstance(http, HttpClient):
        return http
    raise TypeError(f"{type(connector).__name__}: no HttpClient found")


@dataclass
class RunResult:
    run: SyncRun
    wall: float
    queries: int
    requests: dict[str, Counter[str]]  # side -> endpoint -> count (connectors)
    served: dict[str, Counter[str]]  # side -> route -> count (sandboxes)


def timed_run(world: World, *, recorder: Recorder | None = None) -> RunResult:
    """One engine run over fresh connectors (as a worker would build them)."""
    assert world.conn is not None
    conn = Connection.objects.select_related("account_a", "account_b").get(pk=world.conn.pk)
    connectors = {
        "a": conn.account_a.build_connector(conn.settings_a),
        "b": conn.account_b.build_connector(conn.settings_b),
    }
    https = {side: http_client_of(c) for side, c in connectors.items()}
    if recorder is not None:
        for side, http in https.items():
            recorder.wrap(side, http)
    before = world.served()
    gc.collect()
    with count_queries() as queries:
        start = time.perf_counter()
        run = run_connection(conn, connectors=connectors)
        wall = time.perf_counter() - start
    after = world.served()
    served = {side: after[side] - before[side] for side in SIDES}
    if run.status not in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL):
        raise RuntimeError(f"bench run {run.status}: {run.error}")
    return RunResult(
        run,
        wall,
        queries.count,
        {side: Counter(http.stats) for side, http in https.items()},
        served,
    )


def classify(endpoint: str, connector: type[Connector]) -> str:
    """list / batch_write / single_write / read, as the connector names its requests."""
    if endpoint in connector.list_endpoints:
        return "list"
    if endpoint in connector.batch_write_endpoints:
        return "batch_write"
    method = endpoint.split(" ", 1)[0]
    if method in ("POST", "PUT", "PATCH", "DELETE") and not endpoint.endswith(
        ("/batch/read", "/search")
    ):
        return "single_write"
    return "read"


def describe(result: RunResult, world: World) -> dict[str, Any]:
    requests_by_side = {}
    for side in SIDES:
        app = world.apps[side]
        counted = result.requests[side]
        kinds: Counter[str] = Counter()
        for endpoint, n in counted.items():
            kinds[classify(endpoint, app.connector_class)] += n
        requests_by_side[side] = {
            "app": app.key,
            "total": sum(counted.values()),
            "served_by_sandbox": sum(result.served[side].values()),
            "by_kind": dict(kinds),
            "by_endpoint": dict(sorted(counted.items())),
            "served_by_route": dict(sorted(result.served[side].items())),
        }
    return {
        "wall_s": round(result.wall, 3),
        "requests": sum(r["total"] for r in requests_by_side.values()),
        "db_queries": result.queries,
        "counters": result.run.counters,
        "by_side": requests_by_side,
    }
