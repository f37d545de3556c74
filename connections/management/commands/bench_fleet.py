"""``manage.py bench_fleet [--connections 200] [--interval 5] [--json]``: what
idle connections cost each time their schedule fires (see
``connections.bench.fleet``)."""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from connections.bench.command import BenchCommand
from connections.bench.fleet import render_fleet, run_fleet


class Command(BenchCommand):
    help = (
        "Benchmark a fleet of idle connections: requests, queries and time per idle run, "
        "and the share of one worker the fleet uses at its schedule's interval."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--connections", type=int, default=200)
        parser.add_argument("--interval", type=int, default=5, help="minutes between runs")
        parser.add_argument("--pair", default="hubspot-google")
        parser.add_argument("--contacts", type=int, default=20, help="contacts per side")
        parser.add_argument("--rounds", type=int, default=1, help="idle runs per connection")

    def measure(self, opts: dict[str, Any], say: Any) -> dict[str, Any]:
        return run_fleet(
            connections=opts["connections"],
            interval_minutes=opts["interval"],
            pair=opts["pair"],
            contacts=opts["contacts"],
            rounds=opts["rounds"],
            progress=say,
        )

    def render(self, report: dict[str, Any]) -> str:
        return render_fleet(report)
