"""``manage.py bench_webhooks [--rate 10] [--seconds 60] [--workers 1]``: the
time from a Drift visitor identified to the contact in HubSpot, through the
real web server and worker cluster (see ``connections.bench.webhooks``).

SQLite (the embedded default): a fresh temporary database file shared with
the child processes. PostgreSQL + Redis: run with ``DATABASE_URL`` and
``REDIS_URL`` set and ``--db configured``.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from connections.bench.command import BenchCommand
from connections.bench.webhooks import render_webhook_latency, run_webhook_latency


class Command(BenchCommand):
    help = "Benchmark webhook → other app latency under a steady stream of Drift deliveries."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--rate", type=float, default=10.0, help="deliveries per second")
        parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts")
        parser.add_argument("--workers", type=int, default=1, help="workers in the cluster")
        parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait after")

    def measure(self, opts: dict[str, Any], say: Any) -> dict[str, Any]:
        return run_webhook_latency(
            rate=opts["rate"],
            seconds=opts["seconds"],
            workers=opts["workers"],
            drain=opts["drain"],
            progress=say,
        )

    def render(self, report: dict[str, Any]) -> str:
        return render_webhook_latency(report)
