"""``manage.py bench_webhooks [--rate 10] [--seconds 60] [--workers 1]``: the
time from a Drift visitor identified to the contact in HubSpot, through the
real web server and worker cluster (see ``connections.bench.webhooks``).

SQLite (the embedded default): a fresh temporary database file shared with
the child processes. PostgreSQL + Redis: run with ``DATABASE_URL`` and
``REDIS_URL`` set and ``--db configured``.
"""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections.bench.database import bench_database, production_like
from connections.bench.webhooks import render_webhook_latency, run_webhook_latency


class Command(BaseCommand):
    help = "Benchmark webhook → other app latency under a steady stream of Drift deliveries."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--rate", type=float, default=10.0, help="deliveries per second")
        parser.add_argument("--seconds", type=float, default=60.0, help="how long the load lasts")
        parser.add_argument("--workers", type=int, default=1, help="workers in the cluster")
        parser.add_argument("--drain", type=float, default=120.0, help="seconds to wait after")
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--db",
            default="temp",
            help="temp (default: a fresh SQLite file), configured, or a SQLite file path",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        def say(message: str) -> None:
            if not opts["json"]:
                self.stderr.write(f"… {message}")

        with bench_database(opts["db"], say), production_like():
            report = run_webhook_latency(
                rate=opts["rate"],
                seconds=opts["seconds"],
                workers=opts["workers"],
                drain=opts["drain"],
                progress=say,
            )
        report["python"] = sys.version.split()[0]
        report["cpus"] = os.cpu_count()
        self.stdout.write(json.dumps(report) if opts["json"] else render_webhook_latency(report))
