"""``manage.py bench_fleet [--connections 200] [--interval 5] [--json]``: what
idle connections cost each time their schedule fires (see
``connections.bench.fleet``)."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from connections.bench.database import bench_database, production_like
from connections.bench.fleet import render_fleet, run_fleet


class Command(BaseCommand):
    help = (
        "Benchmark a fleet of idle connections: requests, queries and time per idle run, "
        "and the share of one worker the fleet uses at its schedule's interval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connections", type=int, default=200)
        parser.add_argument("--interval", type=int, default=5, help="minutes between runs")
        parser.add_argument("--pair", default="hubspot-google")
        parser.add_argument("--contacts", type=int, default=20, help="contacts per side")
        parser.add_argument("--rounds", type=int, default=1, help="idle runs per connection")
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
            report = run_fleet(
                connections=opts["connections"],
                interval_minutes=opts["interval"],
                pair=opts["pair"],
                contacts=opts["contacts"],
                rounds=opts["rounds"],
                progress=say,
            )
        report["database"] = opts["db"]
        report["python"] = sys.version.split()[0]
        report["cpus"] = os.cpu_count()
        self.stdout.write(json.dumps(report) if opts["json"] else render_fleet(report))
