"""``manage.py sync CONNECTION|--all [--dry-run] [--full] [--user U] [--wait]``."""

from __future__ import annotations

import getpass
import time
from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone

from connections import locking
from connections.management import resolve_connections
from connections.models import Connection, SyncRun
from connections.tasks import ConnectionBusy, ConnectionNotActive, sync_connection

#: how often --wait asks for the claim again
WAIT_POLL_SECONDS = 2.0


class Progress:
    """Contacts read per side: one rewritten line on a terminal, a plain
    line at most every few seconds otherwise."""

    def __init__(self, command: BaseCommand, conn: Connection, tty: bool) -> None:
        self.out = command.stdout
        self.tty = tty
        self.names = {
            "a": conn.account_a.connector_class.name,
            "b": conn.account_b.connector_class.name,
        }
        self.counts = {"a": 0, "b": 0}
        self.last_line = 0.0
        self.shown = False

    def line(self) -> str:
        return " · ".join(
            f"{side.upper()} {self.names[side]}: {n} read" for side, n in self.counts.items()
        )

    def __call__(self, side: str, n: int) -> None:
        self.counts[side] = self.counts.get(side, 0) + n
        now = time.monotonic()
        if self.tty:
            self.out.write(f"\r  {self.line()}\x1b[K", ending="")
            self.out.flush()
            self.shown = True
        elif now - self.last_line >= 2.0 or not self.shown:
            self.out.write(f"  progress: {self.line()}")
            self.last_line = now
            self.shown = True

    def done(self) -> None:
        if self.tty and self.shown:
            self.out.write("")
        self.counts = {"a": 0, "b": 0}
        self.shown = False


class Command(BaseCommand):
    help = (
        "Run a sync now, in this process (not through the task queue), and print a summary. "
        "CONNECTION is a connection's id or name; --all runs every active connection in turn. "
        "The run takes the connection's database claim like a worker does: when another run "
        "holds it the command says so and fails, or waits with --wait. Paused connections and "
        "those needing re-authorization or in error are not run. Exit status is 1 when a run "
        "failed, a connection was busy, or it could not run (with --all: any connection that "
        "needs re-authorization or is in error; paused ones are skipped on purpose)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("connection", nargs="?", help="Connection id or name.")
        parser.add_argument("--all", action="store_true", help="Run every active connection.")
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Plan and record what would change without writing to any app.",
        )
        parser.add_argument(
            "--full", action="store_true", help="Read every contact (as an initial sync does)."
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="Record the runs as started by this Django user (default: the OS user when "
            "a Django user has that name, else nobody).",
        )
        parser.add_argument(
            "--wait",
            action="store_true",
            help="When the connection is already running, wait for that run to finish "
            "instead of failing.",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        connections = resolve_connections(options["connection"], all_=options["all"])
        user = self._user(options["user"])
        tty = self.stdout.isatty()
        every = options["all"]
        problems: list[str] = []
        failed: list[Connection] = []

        def problem(conn: Connection, message: str) -> None:
            # said once: as it happens with --all (the closing error only
            # counts), or as the closing error alone for one connection
            problems.append(message)
            failed.append(conn)
            if every:
                self.stderr.write(message)

        for conn in connections:
            if conn.state != Connection.State.ACTIVE:
                what = {
                    Connection.State.PAUSED: "is paused",
                    Connection.State.NEEDS_REAUTH: "needs re-authorization",
                    Connection.State.ERROR: "is in error",
                }.get(conn.state, f"is {conn.get_state_display().lower()}")
                message = f'"{conn}" (#{conn.pk}) {what}: not run.'
                if every and conn.state == Connection.State.PAUSED:
                    # paused on purpose: --all means every active connection
                    self.stdout.write(f"Skipped {message}")
                    continue
                if conn.state_reason and conn.state != Connection.State.PAUSED:
                    message = f"{message} {conn.state_reason}"
                problem(conn, message)
                continue
            self.stdout.write(
                f'Syncing "{conn}" (#{conn.pk}): {conn.account_a} ↔ {conn.account_b}'
                + (" [dry run]" if options["dry_run"] else "")
                + (" [full]" if options["full"] else "")
            )
            progress = Progress(self, conn, tty)
            try:
                runs = self._run(conn, user, options, progress)
            except (ConnectionBusy, ConnectionNotActive, Connection.DoesNotExist) as exc:
                progress.done()
                problem(conn, str(exc))
                continue
            progress.done()
            for run in runs:
                self._summary(conn, run)
                if run.status == SyncRun.Status.FAILED:
                    problem(conn, f'run #{run.pk} of "{conn}" failed')
        if not problems:
            return
        if not every:
            raise CommandError("; ".join(problems))
        names = ", ".join(dict.fromkeys(f'"{c}"' for c in failed))
        raise CommandError(
            f"{len(set(failed))} of {len(connections)} connections did not sync: {names} "
            "(the reasons are above)."
        )

    def _run(
        self, conn: Connection, user: Any, options: dict[str, Any], progress: Progress
    ) -> list[SyncRun]:
        deadline = time.monotonic() + locking.lease().total_seconds()
        told = False
        while True:
            try:
                return sync_connection(
                    conn.pk,
                    trigger=SyncRun.Trigger.COMMAND,
                    user=user,
                    dry_run=options["dry_run"],
                    full=options["full"],
                    progress=progress,
                    coalesce=False,
                )
            except ConnectionBusy as exc:
                if not options["wait"]:
                    raise ConnectionBusy(
                        f'"{conn}" is already running (since {self._since(conn)}); '
                        "try again later or use --wait."
                    ) from exc
                if time.monotonic() > deadline:
                    raise ConnectionBusy(f'"{conn}" stayed busy; gave up waiting.') from exc
                if not told:
                    self.stdout.write("  already running; waiting for that run to finish…")
                    told = True
                time.sleep(WAIT_POLL_SECONDS)

    @staticmethod
    def _since(conn: Connection) -> str:
        since = (
            Connection.objects.filter(pk=conn.pk).values_list("running_since", flat=True).first()
        )
        return f"{timezone.localtime(since):%Y-%m-%d %H:%M:%S}" if since else "a moment ago"

    def _user(self, username: str | None) -> Any:
        users = get_user_model().objects
        if username:
            user = users.filter(username=username).first()
            if user is None:
                raise CommandError(f"No Django user {username!r}.")
            return user
        try:
            return users.filter(username=getpass.getuser()).first()
        except (KeyError, OSError):  # no name for this uid (containers)
            return None

    def _summary(self, conn: Connection, run: SyncRun) -> None:
        seconds = (run.finished_at - run.started_at).total_seconds() if run.finished_at else 0.0
        style = {
            SyncRun.Status.SUCCEEDED: self.style.SUCCESS,
            SyncRun.Status.PARTIAL: self.style.WARNING,
            SyncRun.Status.FAILED: self.style.ERROR,
        }.get(run.status, str)
        label = run.get_status_display().lower()
        self.stdout.write(style(f"Run #{run.pk}: {label} in {seconds:.1f} s"))
        counters = run.counters or {}
        for side in ("a", "b"):
            account = conn.account(side)
            counts = counters.get(side) or {}
            shown = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()) if v) or "nothing"
            self.stdout.write(f"  {side.upper()} {account.connector_class.name}: {shown}")
        if run.error:
            for line in run.error.splitlines():
                self.stdout.write(f"  error: {line}")
