"""Recording: a batch's bindings, events, counters and cursor, in ONE transaction.

The cursor is saved in the same transaction as the results of the page it
covers, so a crash redoes at most one page; and a create whose binding was
not committed is found again by the search by email that precedes every
create (the connectors cope with an email that exists), so the redo never
makes a second contact.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.base import normalize_email

from ..models import Connection, ContactLink, LinkStatus, SyncEvent, SyncRun
from . import bulk, storable
from .batch import Batch, Counters, Matched, Pending
from .context import A, B, Context
from .state import LinkState, Outcome, snapshot
from .writer import Writer

log = logging.getLogger(__name__)

MAX_RETRY_DELAY = dt.timedelta(hours=24)
EMAIL_MAX = ContactLink._meta.get_field("email").max_length or 320
EVENT_EMAIL_MAX = SyncEvent._meta.get_field("email").max_length or 320
VERSION_MAX = ContactLink._meta.get_field("version_a").max_length or 200
#: a page's many new events and bindings, as ``SyncEvent(...)`` / ``ContactLink(...)`` make them
new_event = bulk.Factory(SyncEvent)
new_link = bulk.Factory(ContactLink)


def retry_delay(failures: int) -> dt.timedelta:
    return min(MAX_RETRY_DELAY, dt.timedelta(minutes=2 ** max(0, failures - 1)))


def backing_off(link: ContactLink | None, full: bool) -> bool:
    """It failed recently: it is retried once its backoff has passed (or by a full sync)."""
    return (
        link is not None
        and link.status == LinkStatus.FAILING
        and bool(link.retry_after)
        and link.retry_after > timezone.now()
        and not full
    )


@dataclass
class Events:
    run: SyncRun

    def new(
        self,
        link: ContactLink | None,
        side: str,
        action: str,
        reason: str,
        changes: list[dict[str, Any]] | None = None,
        *,
        email: str | None = None,
    ) -> SyncEvent:
        email = normalize_email(email) or (link.email if link else "")
        return new_event(
            run=self.run,
            link=link,
            email=storable.cut(email, EVENT_EMAIL_MAX),
            side=side,
            action=action,
            reason=storable.text(reason[:5000]),
            changes=storable.json(changes or []),
        )


def save_events(events: list[SyncEvent]) -> None:
    """All in one go; else one by one, without those the database refuses."""
    try:
        with transaction.atomic():
            bulk.insert(events)
        return
    except Exception:
        for event in events:
            event.pk = None
            event._state.adding = True
    for event in events:
        try:
            with transaction.atomic():
                event.save()
        except Exception:
            log.exception("event %s of run %s could not be stored", event, event.run_id)


def make_storable(link: ContactLink) -> None:
    """What we keep of the contact, as the database can store it: a value cut
    to its column says so in the binding's reason."""
    note = storable.cut_note("Its email", link.email, EMAIL_MAX)
    link.email = storable.cut(link.email or "", EMAIL_MAX)
    link.version_a = storable.cut(link.version_a or "", VERSION_MAX)
    link.version_b = storable.cut(link.version_b or "", VERSION_MAX)
    link.base_a, link.base_b = storable.json(link.base_a), storable.json(link.base_b)
    link.rule_tags = storable.json(link.rule_tags)
    link.status_reason = storable.text(link.status_reason or "")
    if note and note not in link.status_reason:
        link.status_reason = f"{link.status_reason} {note}".strip()


@dataclass
class Row:
    """One planned pair's binding and events, saved together or not at all."""

    item: Pending
    link: ContactLink
    outcome: Outcome
    events: list[SyncEvent]
    created: bool


class Recorder:
    def __init__(
        self,
        conn: Connection,
        ctx: Context,
        writer: Writer,
        events: Events,
        counters: Counters,
        processed: set[int],
        *,
        full: bool,
    ) -> None:
        self.conn = conn
        self.ctx = ctx
        self.writer = writer
        self.events = events
        self.counters = counters
        self.processed = processed
        self.full = full

    def record(self, batch: Batch, matched: Matched, pending: list[Pending]) -> None:
        source = batch.source
        if not (pending or matched.echoes or matched.duplicates or batch.inbox_upto is not None):
            # nothing but the cursor (an idle run's pages): one fenced UPDATE
            self.writer.commit_cursor(self.conn, source, batch.cursor)
            return
        with transaction.atomic():
            # a worker that stalled past its heartbeat and lost its claim to
            # another run must not commit over that run
            self.writer.fence()
            events: list[SyncEvent] = []
            if not self.full:
                why = "came back with the values last synced; nothing to do"
                events += [self.events.new(x, source, "echo", why) for x in matched.echoes]
            for dup in matched.duplicates:
                try:
                    with transaction.atomic():
                        report, link = self.writer.bind_duplicate(self.conn, dup)
                except Exception:  # its binding cannot be stored: reported, not marked
                    log.warning("duplicate %s of %s not marked", dup.contact.id, self.conn)
                    report, link = True, None
                if report:
                    email = dup.contact.email
                    events.append(
                        self.events.new(link, dup.side, "duplicate", dup.reason, email=email)
                    )
            self.record_pending(pending, events, source)
            if events:
                save_events(events)
            self.writer.commit_cursor(self.conn, source, batch.cursor)
            if batch.inbox_upto is not None:
                self.writer.mark_inbox_processed(self.conn.account(source), batch.inbox_upto)

    def record_pending(self, pending: list[Pending], events: list[SyncEvent], source: str) -> None:
        now = timezone.now()
        rows: list[Row] = []
        for item in pending:
            plan, state = item.plan, item.plan.link
            failures = item.failures()
            for side, result in item.results.items():
                if result.error is None and result.contact is not None:
                    if result.contact.id:
                        # a create's new id, or a new id after an email change
                        # (a Mailchimp member's id is the hash of its email)
                        state.set_id(side, result.contact.id)
                    # the base is what the app answered: its own normalization is no change
                    state.set_base(side, snapshot(result.contact, self.ctx.tracked[side]))
            outcome = Outcome.FAILED if failures or item.error else plan.outcome
            row_events: list[SyncEvent] = []
            for ev in plan.events:
                if ev.side in failures or ev.action == "trashed":
                    continue  # trash events are recorded when the tag is sent (``trash``)
                if ev.action == "matched" and self.full and not self.writer.reports_matches:
                    continue
                row_events.append(
                    self.events.new(
                        item.link, ev.side, ev.action, ev.reason, ev.changes, email=state.email
                    )
                )
            link = item.link
            if link is None:
                if outcome in (Outcome.OUT_OF_SCOPE, Outcome.SKIPPED):
                    self.counters.count(item, outcome, source)
                    events += row_events
                    continue
                link = item.link = new_link(connection=self.conn)
            if item.error:
                row_events.append(self.failed(item, link, source, item.error, [], now))
            elif failures:
                side, error = next(iter(failures.items()))
                reason = f"{self.ctx.options.name(side)} refused it: {error.message}"
                changes = [c.as_dict() for c in item.plan.writes[side].changes]
                row_events.append(self.failed(item, link, side, reason, changes, now))
            elif not (outcome == Outcome.OUT_OF_SCOPE and link.pk is None):
                self.synced(item, link, now)
            make_storable(link)
            rows.append(Row(item, link, outcome, row_events, created=link.pk is None))
        self.save_rows(rows, source, now)
        for row in rows:
            if row.outcome == Outcome.FAILED and not row.item.failures():
                self.counters[source][Outcome.FAILED] += 1  # planning or storing failed
            else:
                self.counters.count(row.item, row.outcome, source)
            if row.link is not None and row.link.pk is not None:
                # a new binding's events were built before it existed: linked now it is saved
                for event in row.events:
                    if event.link_id is None:
                        event.link = row.link
            events += row.events
        for item in pending:
            if item.link is not None and item.link.pk:
                self.processed.add(item.link.pk)

    def save_rows(self, rows: list[Row], source: str, now: dt.datetime) -> None:
        """Every binding in one go; when one cannot be saved, each in its own
        savepoint, so only the contacts whose rows the database refuses fail."""
        created = [r.link for r in rows if r.created]
        changed = [r.link for r in rows if not r.created]
        try:
            with transaction.atomic():
                self.writer.save_links(created, changed)
            return
        except Exception:
            for link in created:  # rolled back: not saved after all
                link.pk = None
                link._state.adding = True
        for row in rows:
            try:
                with transaction.atomic():
                    one = [row.link]
                    self.writer.save_links(one if row.created else [], [] if row.created else one)
            except Exception as exc:
                if row.created:
                    row.link.pk = None
                    row.link._state.adding = True
                self.unstorable(row, source, exc, now)

    def unstorable(self, row: Row, source: str, exc: Exception, now: dt.datetime) -> None:
        """The database refused this contact's binding: it is failing, with the
        database's reason, and its stored binding (if any) keeps its old state."""
        log.warning("contact %s of %s could not be stored: %s", row.link, self.conn, exc)
        first_line = (str(exc).strip().splitlines() or [""])[0]
        reason = f"could not be stored: {type(exc).__name__}: {first_line}"
        link: ContactLink | None = row.link
        assert link is not None
        if link.pk is not None:
            link.refresh_from_db()
        self.failed(row.item, link, source, reason, [], now)
        make_storable(link)
        try:
            with transaction.atomic():
                one = [link]
                self.writer.save_links(one if link.pk is None else [], one if link.pk else [])
        except Exception:  # not even as failing (its ids clash, or do not fit)
            link = None
        row.item.link = link
        row.outcome = Outcome.FAILED
        email = row.item.plan.link.email
        row.events = [self.events.new(link, source, "failed", reason, email=email)]

    def failed(
        self,
        item: Pending,
        link: ContactLink,
        side: str,
        reason: str,
        changes: list[dict[str, Any]],
        now: dt.datetime,
    ) -> SyncEvent:
        """An app refused a write (or the contact could not be planned or
        stored): keep the old bases (so the change is seen again), back off,
        and record the reason (the app's own where it gave one)."""
        state = item.plan.link
        old = item.old or LinkState()
        link.base_a, link.base_b = old.base_a, old.base_b
        link.failure_count = (link.failure_count or 0) + 1
        link.retry_after = now + retry_delay(link.failure_count)
        link.status = LinkStatus.FAILING
        link.status_reason = reason
        link.id_a = link.id_a or state.id_a
        link.id_b = link.id_b or state.id_b
        link.email = state.email or link.email
        return self.events.new(link, side, "failed", link.status_reason, changes, email=state.email)

    def synced(self, item: Pending, link: ContactLink, now: dt.datetime) -> None:
        """The binding takes the plan's state, as it is now that the writes landed."""
        state = item.plan.link
        link.id_a, link.id_b = state.id_a, state.id_b
        link.email = state.email
        link.base_a, link.base_b = state.base_a, state.base_b
        link.rule_tags = state.rule_tags
        link.status = state.status
        if link.status == LinkStatus.PENDING:
            link.status = LinkStatus.IN_SYNC
        link.status_reason = state.status_reason
        link.unsubscribed_on = state.unsubscribed_on
        link.failure_count = 0
        link.retry_after = None
        for side in (A, B):
            result = item.results.get(side)
            contact = result.contact if result else item.plan.contacts.get(side)
            if contact is not None and contact.version:
                setattr(link, f"version_{side}", contact.version[:200])
        link.last_synced_at = now
        link.first_synced_at = link.first_synced_at or now
