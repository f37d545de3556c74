"""Recording: a batch's bindings, events, counters and cursor, in ONE transaction.

The cursor is saved in the same transaction as the results of the page it
covers, so a crash redoes at most one page; and a create whose binding was
not committed is found again by the search by email that precedes every
create (the connectors cope with an email that exists), so the redo never
makes a second contact.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from django.db import transaction
from django.utils import timezone

from connectors.base import normalize_email

from ..models import Connection, ContactLink, LinkStatus, SyncEvent, SyncRun
from .batch import Batch, Counters, Matched, Pending
from .context import A, B, Context
from .state import LinkState, Outcome, snapshot
from .writer import Writer

MAX_RETRY_DELAY = dt.timedelta(hours=24)


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
        return SyncEvent(
            run=self.run,
            link=link,
            email=normalize_email(email) or (link.email if link else ""),
            side=side,
            action=action,
            reason=reason[:5000],
            changes=changes or [],
        )


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
                report, link = self.writer.bind_duplicate(self.conn, dup)
                if report:
                    email = dup.contact.email
                    events.append(
                        self.events.new(link, dup.side, "duplicate", dup.reason, email=email)
                    )
            self.record_pending(pending, events, source)
            if events:
                SyncEvent.objects.bulk_create(events, batch_size=500)
            self.writer.commit_cursor(self.conn, source, batch.cursor)
            if batch.inbox_upto is not None:
                self.writer.mark_inbox_processed(self.conn.account(source), batch.inbox_upto)

    def record_pending(self, pending: list[Pending], events: list[SyncEvent], source: str) -> None:
        now = timezone.now()
        created: list[ContactLink] = []
        changed: list[ContactLink] = []
        # a new binding's events are built before it exists: linked once it is saved
        unlinked: list[tuple[int, int, ContactLink]] = []
        for item in pending:
            plan, state = item.plan, item.plan.link
            first = len(events)
            failures = item.failures()
            for side, result in item.results.items():
                if result.error is None and result.contact is not None:
                    if result.contact.id:
                        # a create's new id, or a new id after an email change
                        # (a Mailchimp member's id is the hash of its email)
                        state.set_id(side, result.contact.id)
                    # the base is what the app answered: its own normalization is no change
                    state.set_base(side, snapshot(result.contact, self.ctx.tracked[side]))
            outcome = Outcome.FAILED if failures else plan.outcome
            self.counters.count(item, outcome, source)
            for ev in plan.events:
                if ev.side in failures or ev.action == "trashed":
                    continue  # trash events are recorded when the tag is sent (``trash``)
                if ev.action == "matched" and self.full and not self.writer.reports_matches:
                    continue
                events.append(
                    self.events.new(
                        item.link, ev.side, ev.action, ev.reason, ev.changes, email=state.email
                    )
                )
            link = item.link
            if link is None:
                if outcome in (Outcome.OUT_OF_SCOPE, Outcome.SKIPPED):
                    continue
                link = item.link = ContactLink(connection=self.conn)
                created.append(link)
            else:
                changed.append(link)
            if failures:
                events.append(self.failed(item, link, failures, now))
            elif not (outcome == Outcome.OUT_OF_SCOPE and link.pk is None):
                self.synced(item, link, now)
            if link.pk is None:
                unlinked.append((first, len(events), link))
        self.writer.save_links(created, changed)
        for start, end, link in unlinked:
            if link.pk is not None:  # bulk_create set it (a dry run saves nothing)
                for event in events[start:end]:
                    event.link = link
        for item in pending:
            if item.link is not None and item.link.pk:
                self.processed.add(item.link.pk)

    def failed(
        self, item: Pending, link: ContactLink, failures: dict[str, Any], now: dt.datetime
    ) -> SyncEvent:
        """An app refused a write: keep the old bases (so the change is seen
        again), back off, and record the app's own reason."""
        state = item.plan.link
        side, error = next(iter(failures.items()))
        old = item.old or LinkState()
        link.base_a, link.base_b = old.base_a, old.base_b
        link.failure_count = (link.failure_count or 0) + 1
        link.retry_after = now + retry_delay(link.failure_count)
        link.status = LinkStatus.FAILING
        link.status_reason = f"{self.ctx.options.name(side)} refused it: {error.message}"
        link.id_a = link.id_a or state.id_a
        link.id_b = link.id_b or state.id_b
        link.email = state.email or link.email
        changes = [c.as_dict() for c in item.plan.writes[side].changes]
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
