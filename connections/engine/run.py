"""One sync run of one connection: for each batch, read → match → plan → apply → record.

Reads each side's changes page by page (``read``). For each page: find the
bindings and the counterparts, in batches (``match``); plan every pair
(``plan.plan_pair``, pure); send the writes in the largest batches the app
allows (``apply``); then commit the bindings, the events and that page's
cursor in one transaction (``record``), so a crash redoes at most one page.
The target is searched by email before any create, so a crash between a
create and its commit, or a rerun, never makes a second contact; two workers
never race on one connection because a run holds the connection's claim
(``connections.locking``). Trash tags wait for the run's end (``trash``).

A dry run goes through every stage the same way, with a writer that writes
nothing (``writer.DryRunWriter``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.utils import timezone

from connectors.base import AuthError, ConfigError, Connector, ConnectorError, normalize_email

from .. import actions, alerts
from ..locking import Claim
from ..models import Connection, ContactLink, SyncRun
from .apply import apply_writes
from .batch import Batch, Counters, Pair, Pending, link_state
from .context import A, B, other
from .gcpolicy import fewer_collections
from .match import Matcher
from .plan import plan_pair
from .read import Reader
from .record import Events, Recorder, backing_off
from .setup import build_connectors, build_context
from .state import LinkState, Outcome, PairPlan
from .trash import TrashBin
from .writer import DryRunWriter, LiveWriter, Writer

log = logging.getLogger(__name__)


class SyncRunner:
    def __init__(
        self,
        connection: Connection,
        *,
        trigger: str = SyncRun.Trigger.MANUAL,
        user: Any = None,
        dry_run: bool = False,
        full: bool = False,
        progress: Callable[[str, int], None] | None = None,
        connectors: dict[str, Connector] | None = None,
        claim: Claim | None = None,
    ) -> None:
        self.conn = connection
        self.trigger = trigger
        self.user = user
        self.writer: Writer = DryRunWriter() if dry_run else LiveWriter(claim)
        #: an explicit full resync starts over; a pending one (activation, widened
        #: scope, or a full sync a crash interrupted) resumes from saved cursors
        self.fresh_full = full or (connection.needs_full_sync and not connection.full_sync_started)
        self.full = full or connection.needs_full_sync
        self.progress = progress or (lambda side, n: None)
        self.connectors: dict[str, Connector] = connectors or {}
        self.counters = Counters()
        self.processed: set[int] = set()  # link pks handled in this run
        self.trash = TrashBin()
        self.reads_complete = True
        self.warnings: list[str] = []
        self.run: SyncRun | None = None

    def execute(self) -> SyncRun:
        self.run = SyncRun.objects.create(
            connection=self.conn,
            trigger=self.trigger,
            started_by=self.user,
            dry_run=self.writer.dry_run,
            full=self.full,
        )
        status, error = SyncRun.Status.SUCCEEDED, ""
        try:
            self.sync()
        except AuthError as exc:
            status, error = SyncRun.Status.FAILED, f"Account needs re-authorization: {exc}"
            self.connection_unusable(exc)
        except ConfigError as exc:
            status, error = SyncRun.Status.FAILED, f"Configuration error: {exc}"
            self.connection_unusable(exc)
        except ConnectorError as exc:
            status, error = SyncRun.Status.FAILED, f"Run stopped: {exc}"
            self.reads_complete = False
        return self.finish(status, error)

    def sync(self) -> None:
        """The pipeline."""
        assert self.run is not None
        conn, writer = self.conn, self.writer
        self.connectors = self.connectors or build_connectors(conn)
        for side, connector in self.connectors.items():
            connector.bound_elsewhere = bound_elsewhere(conn, side)
        self.ctx = build_context(conn, self.connectors, self.warnings, full=self.full)
        reader = Reader(conn, self.connectors, self.ctx, full=self.full, fresh_full=self.fresh_full)
        if self.fresh_full:
            writer.start_full_sync(conn, [s for s in (A, B) if reader.listable(s)])
        writer.follow_email_changes(conn, reader.email_changes())
        self.matcher = Matcher(conn.pk, self.ctx, self.counters, self.processed, writer)
        events = Events(self.run)
        self.recorder = Recorder(
            conn, self.ctx, writer, events, self.counters, self.processed, full=self.full
        )
        for batch in reader.batches():
            self.sync_batch(batch)
        if reader.unsettled_until is not None:
            # the inbox cursor stopped before deliveries too recent to pass:
            # a run once they have settled moves it on
            writer.follow_up(conn, reader.unsettled_until)
        for batch in reader.retries(self.processed):
            self.sync_batch(batch)
        warning = self.trash.finish(
            conn,
            self.ctx,
            self.connectors,
            writer,
            events,
            self.counters,
            reads_complete=self.reads_complete,
        )
        if warning:
            self.warnings.append(warning)

    def sync_batch(self, batch: Batch) -> None:
        if batch.only_cursor:
            self.writer.commit_cursor(self.conn, batch.source, batch.cursor)
            return
        self.counters[batch.source]["scanned"] += len(batch.contacts)
        self.progress(batch.source, len(batch.contacts))
        matched = self.matcher.match(batch)
        pending = self.plan(matched.pairs)
        self.trash.hold(pending)  # trash tags wait for the run's end (mass-trash guard)
        apply_writes(pending, self.connectors, self.writer)
        self.recorder.record(batch, matched, pending)

    def plan(self, pairs: list[Pair]) -> list[Pending]:
        pending = []
        for pair in pairs:
            if backing_off(pair.link, self.full):
                self.counters[pair.source]["failed"] += 1
                continue
            old = link_state(pair.link) if pair.link else None
            try:
                plan = plan_pair(pair.a, pair.b, old, self.ctx)
            except Exception as exc:  # one contact's values must not stop the run
                log.exception("planning contact %s of %s failed", pair.contact.id, self.conn)
                pending.append(unplannable(pair, old, exc))
                continue
            pending.append(Pending(pair.link, plan, old))
        return pending

    def finish(self, status: str, error: str) -> SyncRun:
        assert self.run is not None
        if status == SyncRun.Status.SUCCEEDED and self.counters.failed_total():
            status = SyncRun.Status.PARTIAL
        if self.warnings:
            error = "\n".join([error, *self.warnings]).strip()
        now = timezone.now()
        self.run.status = status
        self.run.error = error
        self.run.finished_at = now
        self.run.counters = self.counters.as_dict()
        self.run.save(update_fields=["status", "error", "finished_at", "counters"])
        if status != SyncRun.Status.FAILED:
            self.writer.finish_sync(self.conn, self.user, full=self.full, now=now)
        alerts.after_run(self.conn, self.run)  # contacts that keep failing mail the owners
        return self.run

    def connection_unusable(self, exc: AuthError | ConfigError) -> None:
        """The account or the configuration cannot work: pause the connection
        with a clear status instead of retrying forever. A revoked account is
        marked on the account too (even in a dry run: it is a fact about the
        account, not a write the run decided)."""
        if self.writer.dry_run and not isinstance(exc, AuthError):
            return
        if isinstance(exc, AuthError):
            # find which account is unusable: ask each one once more
            for side, connector in self.connectors.items():
                try:
                    connector.check()
                except AuthError as side_exc:
                    actions.mark_account_needs_reauth(self.conn.account(side), str(side_exc))
                except ConnectorError:
                    pass
            if not self.writer.dry_run:
                actions.mark_needs_reauth(self.conn, str(exc))
        else:
            actions.mark_error(self.conn, str(exc))


def unplannable(pair: Pair, old: LinkState | None, exc: Exception) -> Pending:
    """A pair whose planning failed: nothing is written, the contact is failing."""
    state = old.copy() if old else LinkState()
    for contact in (pair.a, pair.b):
        if contact is not None and contact.id:
            side = pair.source if contact is pair.contact else other(pair.source)
            state.set_id(side, state.id(side) or contact.id)
    if not state.email and isinstance(pair.contact.email, str):
        state.email = normalize_email(pair.contact.email)
    plan = PairPlan(state, outcome=Outcome.FAILED)
    return Pending(pair.link, plan, old, error=f"unexpected error: {type(exc).__name__}: {exc}")


def bound_elsewhere(conn: Connection, side: str) -> Callable[[str], bool]:
    """Does a binding of this connection hold ``remote_id`` on ``side``?"""

    def held(remote_id: str) -> bool:
        return ContactLink.objects.filter(connection=conn, **{f"id_{side}": remote_id}).exists()

    return held


def run_connection(
    connection: Connection | int,
    *,
    trigger: str = SyncRun.Trigger.MANUAL,
    user: Any = None,
    dry_run: bool = False,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
    connectors: dict[str, Connector] | None = None,
    claim: Claim | None = None,
) -> SyncRun:
    if not isinstance(connection, Connection):
        connection = Connection.objects.select_related("account_a", "account_b").get(pk=connection)
    runner = SyncRunner(
        connection,
        trigger=trigger,
        user=user,
        dry_run=dry_run,
        full=full,
        progress=progress,
        connectors=connectors,
        claim=claim,
    )
    with fewer_collections():
        return runner.execute()


__all__ = ["SyncRunner", "run_connection"]
