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

import json
import os
import shutil
import sys
import tempfile
from typing import Any

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections
from django.test.utils import override_settings

from connections import bench


class Command(BaseCommand):
    help = "Benchmark the sync engine against in-process sandboxes."

    def add_arguments(self, parser: CommandParser) -> None:
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
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--no-raw", action="store_true", help="skip the raw replay (raw time floor)"
        )
        parser.add_argument(
            "--no-small", action="store_true", help="skip the 100x smaller connection"
        )
        parser.add_argument(
            "--db",
            default="temp",
            help="temp (default: a fresh SQLite file), configured, or a SQLite file path",
        )
        parser.add_argument(
            "--keep", action="store_true", help="keep the bench accounts and connection"
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        quiet = opts["json"]

        def say(message: str) -> None:
            if not quiet:
                self.stderr.write(f"… {message}")

        tmpdir = None
        default = connections["default"]
        original_name = default.settings_dict["NAME"]
        db_mode = opts["db"]
        if db_mode != "configured":
            if default.vendor != "sqlite":
                raise CommandError("--db temp/PATH needs SQLite; use --db configured")
            if db_mode == "temp":
                tmpdir = tempfile.mkdtemp(prefix="driftsync-benchdb-")
                path = os.path.join(tmpdir, "bench.sqlite3")
            else:
                path = os.path.abspath(db_mode)
            default.close()
            default.settings_dict["NAME"] = path
            say(f"database: {path}")
            call_command("migrate", verbosity=0, interactive=False)
        try:
            # DEBUG would keep every SQL statement in memory: not what production runs;
            # the bench accounts still point at its loopback sandboxes, as DEBUG allowed
            sandboxes_allowed = settings.DEBUG or settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE
            with override_settings(
                DEBUG=False, DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE=sandboxes_allowed
            ):
                report = bench.run_benchmark(
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
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            if db_mode != "configured":
                default.close()
                default.settings_dict["NAME"] = original_name
            if tmpdir:
                shutil.rmtree(tmpdir, ignore_errors=True)
        report["database"] = db_mode
        report["python"] = sys.version.split()[0]
        report["cpus"] = os.cpu_count()
        if opts["json"]:
            self.stdout.write(json.dumps(report))
        else:
            self.stdout.write(bench.render(report))
