"""What the benchmark commands share: the ``--db`` and ``--json`` options,
the database they measure in, production-like settings, and the report's
machine facts."""

from __future__ import annotations

import abc
import json
import os
import sys
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from .database import bench_database, production_like


class BenchCommand(BaseCommand, abc.ABC):
    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--json", action="store_true", help="print one JSON object")
        parser.add_argument(
            "--db",
            default="temp",
            help="temp (default: a fresh SQLite file), configured, or a SQLite file path",
        )

    @abc.abstractmethod
    def measure(self, opts: dict[str, Any], say: Any) -> dict[str, Any]:
        """Run the measurement; the report, a JSON-able dict."""

    @abc.abstractmethod
    def render(self, report: dict[str, Any]) -> str:
        """The report as the table a person reads."""

    def handle(self, *args: Any, **opts: Any) -> None:
        def say(message: str) -> None:
            if not opts["json"]:
                self.stderr.write(f"… {message}")

        try:
            with bench_database(opts["db"], say), production_like():
                report = self.measure(opts, say)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        report.setdefault("database", opts["db"])
        report["python"] = sys.version.split()[0]
        report["cpus"] = os.cpu_count()
        self.stdout.write(json.dumps(report) if opts["json"] else self.render(report))
