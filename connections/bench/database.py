"""Where a benchmark keeps its rows: a fresh SQLite file by default, so it
neither reads nor leaves rows in the configured database."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections
from django.test.utils import override_settings


@contextlib.contextmanager
def bench_database(mode: str, say: Callable[[str], None]) -> Iterator[None]:
    """``temp`` (a fresh SQLite file, migrated, deleted after), ``configured``
    (the configured database; the bench names its rows uniquely and deletes
    them), or a SQLite file path (migrated and kept)."""
    tmpdir = None
    default = connections["default"]
    original_name = default.settings_dict["NAME"]
    if mode != "configured":
        if default.vendor != "sqlite":
            raise CommandError("--db temp/PATH needs SQLite; use --db configured")
        if mode == "temp":
            tmpdir = tempfile.mkdtemp(prefix="driftsync-benchdb-")
            path = os.path.join(tmpdir, "bench.sqlite3")
        else:
            path = os.path.abspath(mode)
        default.close()
        default.settings_dict["NAME"] = path
        say(f"database: {path}")
        call_command("migrate", verbosity=0, interactive=False)
    try:
        yield
    finally:
        if mode != "configured":
            default.close()
            default.settings_dict["NAME"] = original_name
        if tmpdir:
            shutil.rmtree(tmpdir, ignore_errors=True)


@contextlib.contextmanager
def production_like() -> Iterator[None]:
    """DEBUG off (it would keep every SQL statement in memory: not what
    production runs); the bench accounts still point at loopback sandboxes,
    as DEBUG allowed when the command started."""
    allowed = settings.DEBUG or settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE
    with override_settings(DEBUG=False, DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE=allowed):
        yield
