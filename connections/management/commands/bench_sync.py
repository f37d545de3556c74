"""``manage.py bench_sync --pair A-B --contacts N --changes K [--json]``.

Starts its own sandboxes, seeds them, and measures the initial sync, the raw
time floor, an incremental run, the same over a connection 100 times smaller,
and peak memory (see ``connections.bench``).

Database: by default the benchmark works in a fresh temporary SQLite file
(migrated at start, deleted at the end), so it neither reads nor leaves rows
in the configured database. ``--db configured`` uses the configured database
instead (bench accounts and connection get unique names and are deleted
afterwards); ``--db PATH`` uses (and keeps) that SQLite file.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import CommandParser

from connections import bench
from connections.bench.command import BenchCommand


class Command(BenchCommand):
    help = "Benchmark the sync engine against in-process sandboxes."

    def add_arguments(self, parser: CommandParser) -> None:
        super().add_arguments(parser)
        parser.add_argument("--pair", default="google-mailchimp", help="e.g. google-mailchimp")
        parser.add_argument("--contacts", type=int, default=2000, help="contacts per side")
        parser.add_argument("--changes", type=int, default=10, help="edits for the incremental run")
        parser.add_argument(
            "--overlap", type=float, default=0.5, help="share of contacts on both sides (by email)"
        )
        parser.add_argument(
            "--differ",
            type=float,
            default=0.2,
            help="share of the shared contacts whose phone is on one side only",
        )
        parser.add_argument(
            "--latency",
            type=float,
            default=0.0,
            metavar="MS",
            help="milliseconds every sandbox request takes; > 0 also turns on each app's "
            "real limits and reports the latency floor",
        )
        parser.add_argument(
            "--no-raw", action="store_true", help="skip the raw replay (raw time floor)"
        )
        parser.add_argument(
            "--no-small", action="store_true", help="skip the 100x smaller connection"
        )
        parser.add_argument(
            "--keep", action="store_true", help="keep the bench accounts and connection"
        )

    def measure(self, opts: dict[str, Any], say: Any) -> dict[str, Any]:
        return bench.run_benchmark(
            opts["pair"],
            opts["contacts"],
            opts["changes"],
            overlap=opts["overlap"],
            differ=opts["differ"],
            raw=not opts["no_raw"],
            small=not opts["no_small"],
            cleanup=not opts["keep"],
            progress=say,
            latency_ms=opts["latency"],
        )

    def render(self, report: dict[str, Any]) -> str:
        return bench.render(report)
