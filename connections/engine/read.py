"""Reading: the batches a run syncs, from cursor pages, a full read of both
sides, the Drift webhook inbox, and the contacts due for a retry.

Each side reports changes since a cursor kept on the connection; every
batch carries the cursor that resumes after it, saved with the batch's
results (``record``), so a crash redoes at most one batch.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass

from django.db.models import Q
from django.utils import timezone

from connectors.base import Connector, Contact, normalize_email

from ..models import Connection, ContactLink, LinkStatus, WebhookEvent
from .batch import Batch
from .context import A, B, Context
from .store import ChangesStore, Counterparts, InitialSyncStore

INBOX_PAGE = 200
INBOX_SETTLE = dt.timedelta(seconds=10)
#: a delivery that carries the whole contact (Drift ``contact_identified``)
#: stands in for a read of it while it is this fresh; an older one, or one
#: that only names the contact, is read from the app
INBOX_RECORD_FRESH = dt.timedelta(seconds=60)
#: A's write batches one batch of B's leftovers fills (an account's writes in
#: flight: HubSpot allows 5 of its 100-contact creates at once)
LEFTOVER_WRITES = 5
#: the deliveries whose record can stand in for a read
RECORD_KINDS = frozenset({"identified"})


class Reader:
    def __init__(
        self,
        conn: Connection,
        connectors: dict[str, Connector],
        ctx: Context,
        *,
        full: bool,
        fresh_full: bool,
    ) -> None:
        self.conn = conn
        self.connectors = connectors
        self.ctx = ctx
        self.full = full
        self.fresh_full = fresh_full
        self.remote = Counterparts(connectors, ctx)
        #: when the inbox deliveries this run read but could not pass have settled
        self.unsettled_until: dt.datetime | None = None

    def listable(self, side: str) -> bool:
        return self.connectors[side].capabilities.list_changes

    def batches(self) -> Iterator[Batch]:
        """Every side's changes, side A first; an initial sync of two listable
        sides reads B in full first (``full_both``)."""
        if self.full and self.listable(A) and self.listable(B):
            yield from self.full_both()
            return
        if not self.full and self.listable(B) and self.connectors[B].capabilities.current_changes:
            yield from self.changes_b_first()
            return
        for side in (A, B):
            if self.listable(side):
                cursor = self.start_cursor(side)
                for page in self.connectors[side].changes(cursor, full=self.full and not cursor):
                    self.remote.feed_read(side, (c.id for c in page.contacts))
                    yield Batch(side, page.contacts, self.remote, cursor=page.cursor)
                self.remote.feed_done(side)
            else:
                yield from self.inbox(side)

    def start_cursor(self, side: str) -> str | None:
        """Where this run's read of a listable ``side`` starts: the beginning for
        a fresh full sync, else the saved cursor (for a full sync a crash
        interrupted, the page after the last one committed)."""
        if self.fresh_full:
            return None
        return self.conn.cursor(side) or None

    def leftovers(self, store: InitialSyncStore, cursor_b: str | None) -> Iterator[Batch]:
        """B's contacts A did not claim, in batches; B's cursor goes with the
        last. A batch holds ``LEFTOVER_WRITES`` of A's write batches, which
        the connector sends in flight together (HubSpot's creates of 100), at
        most a list page."""
        leftovers = store.leftovers()
        size = min(max(self.connectors[A].write_batch_size * LEFTOVER_WRITES, 100), 1000)
        for start in range(0, len(leftovers), size):
            last = start + size >= len(leftovers)
            chunk = leftovers[start : start + size]
            yield Batch(B, chunk, store, cursor=cursor_b if last else None)
        if not leftovers:
            yield Batch(B, [], store, cursor=cursor_b, only_cursor=True)

    def full_both(self) -> Iterator[Batch]:
        """Initial sync: B into memory, A matched against it, B's rest after."""
        store = InitialSyncStore(self.connectors, self.ctx.keys_read(B))
        cursor_b: str | None = None
        for page in self.connectors[B].changes(None, full=True):
            for contact in page.contacts:
                if not contact.deleted:
                    store.add(contact)
            cursor_b = page.cursor
        cursor_a = self.start_cursor(A)
        store.a_fully_listed = cursor_a is None
        for page in self.connectors[A].changes(cursor_a, full=cursor_a is None):
            yield Batch(A, page.contacts, store, cursor=page.cursor)
        yield from self.leftovers(store, cursor_b)

    def changes_b_first(self) -> Iterator[Batch]:
        """Incremental run, B's feed current: B's changes into memory, A's
        changes (its feed, or the Drift inbox) matched against them and
        against the bases of what B did not report, then B's unclaimed
        changes. B's cursor is saved with its last batch, so a crash before
        it reads B's changes again."""
        store = ChangesStore(self.connectors, self.ctx.keys_read(B), self.ctx)
        cursor_b = self.start_cursor(B)
        for page in self.connectors[B].changes(cursor_b):
            for contact in page.contacts:
                store.add(contact)
            cursor_b = page.cursor
        store.feed_done(B)
        if self.listable(A):
            for page in self.connectors[A].changes(self.start_cursor(A)):
                store.feed_read(A, (c.id for c in page.contacts))
                yield Batch(A, page.contacts, store, cursor=page.cursor)
            store.feed_done(A)
        else:
            yield from self.inbox(A, store)
        yield from self.leftovers(store, cursor_b)

    def inbox(self, side: str, counterparts: Counterparts | None = None) -> Iterator[Batch]:
        """Drift: contacts come in through its webhooks, stored in the inbox.

        The saved cursor trails the newest deliveries by ``INBOX_SETTLE``: on
        PostgreSQL a delivery can commit after one with a higher id, and a
        cursor at the newest id would skip it. Rereading a recent delivery is
        harmless: the contact is fetched fresh and planned against the base.
        The run reads the whole inbox, page by page; the cursor stops before
        the first delivery that has not settled, and ``unsettled_until`` says
        when they all have (the run then schedules a follow-up for then).

        Drift keeps no modification time: a contact's change time is the
        time its webhook arrived (used by the "most recent change" policy).
        """
        account = self.conn.account(side)
        try:
            last = int(self.conn.cursor(side) or 0)
        except ValueError:
            last = 0
        now = timezone.now()
        settled_before = now - INBOX_SETTLE
        fresh_after = now - INBOX_RECORD_FRESH
        stalled = False  # an unsettled delivery was seen: the cursor stays before it
        while True:
            events = list(
                WebhookEvent.objects.filter(account=account, pk__gt=last)
                .exclude(status__in=[WebhookEvent.Status.REJECTED, WebhookEvent.Status.IGNORED])
                .exclude(contact_id="")
                .order_by("pk")
                .values("pk", "kind", "contact_id", "received_at", "occurred_at", "body")[
                    :INBOX_PAGE
                ]
            )
            if not events:
                return
            last = events[-1]["pk"]
            settled = None
            changed_at: dict[str, dt.datetime] = {}
            for event in events:
                received = event["received_at"]
                cid = event["contact_id"]
                # the change's time is the webhook's own (it cannot be later than
                # its arrival), or its arrival when the delivery carries none
                when = min(event["occurred_at"] or received, received)
                changed_at[cid] = max(when, changed_at.get(cid, when))
                if received > settled_before:
                    stalled = True
                    until = received + INBOX_SETTLE + dt.timedelta(seconds=1)
                    self.unsettled_until = max(until, self.unsettled_until or until)
                elif not stalled:
                    settled = event["pk"]
            ids = list(changed_at)
            unsubscribed = {e["contact_id"] for e in events if e["kind"] == "unsubscribed"}
            delivered = self.delivered_contacts(side, events, fresh_after)
            wanted = [cid for cid in ids if cid not in delivered]
            found = self.connectors[side].get_contacts(wanted) if wanted else {}
            found.update(delivered)
            contacts = []
            for cid in ids:
                contact = found.get(cid)
                if contact is None:
                    continue  # gone again before we read it
                if cid in unsubscribed:
                    contact.unsubscribed = True
                if contact.updated_at is None or contact.updated_at < changed_at[cid]:
                    contact.updated_at = changed_at[cid]
                contacts.append(contact)
            cursor = str(settled) if settled is not None else None
            yield Batch(side, contacts, counterparts or self.remote, cursor=cursor, inbox_upto=last)

    def delivered_contacts(
        self, side: str, events: list[dict], fresh_after: dt.datetime
    ) -> dict[str, Contact]:
        """The contacts whose deliveries in this page carry the whole contact
        and are fresh: those need no read from the app (at 10 deliveries a
        second, Drift's pace would otherwise bound the latency).

        Only when every delivery of the contact in the page is a fresh
        ``RECORD_KINDS`` one with a record: the newest one's record is used. A
        delivery that only names the contact (``contact_updated``), an old
        one (a backlog: the contact may have changed since without a word
        reaching us), or one that cannot be parsed again means a read."""
        connector = self.connectors[side]
        newest: dict[str, dict] = {}
        refetch: set[str] = set()
        for event in events:
            cid = event["contact_id"]
            if event["kind"] in RECORD_KINDS and event["received_at"] >= fresh_after:
                newest[cid] = event
            else:
                refetch.add(cid)
        out: dict[str, Contact] = {}
        for cid, event in newest.items():
            if cid in refetch:
                continue
            try:
                parsed = connector.parse_webhook(
                    (event["body"] or "").encode(), "application/json", {}
                )
            except Exception:  # not parseable again (an excerpt, a test row): read it
                continue
            for item in parsed:
                contact = item.contact
                if item.contact_id == cid and contact is not None and contact.id == cid:
                    out[cid] = contact
        return out

    def retries(self, processed: set[int]) -> Iterator[Batch]:
        """Contacts an app refused earlier, once their backoff has passed.

        They go through the same path as a change on their source side, so a
        create that failed is searched for by email again before it is retried.
        """
        # the links this run handled are left out here, not in SQL: after an
        # initial sync of 100,000 contacts that would be a statement of as many
        # parameters (~35 MB of it, the run's peak of memory; and past
        # SQLite's limit where it keeps its default of 32,766)
        failing = ContactLink.objects.filter(
            connection=self.conn, status=LinkStatus.FAILING
        ).filter(Q(retry_after__lte=timezone.now()) | Q(retry_after__isnull=True))
        due: list[ContactLink] = []
        for link in failing.iterator(chunk_size=1000):
            if link.pk not in processed:
                due.append(link)
                if len(due) == 1000:
                    break
        for side in (A, B):
            ids = [link.remote_id(side) for link in due if link.remote_id(side)]
            if not ids:
                continue
            found = self.connectors[side].get_contacts(ids)
            contacts = [found[i] for i in ids if i in found]
            if contacts:
                yield Batch(side, contacts, self.remote)
            due = [link for link in due if not link.remote_id(side)]

    def email_changes(self) -> Iterator[EmailChange]:
        """An app that keys contacts by email (Mailchimp: the id is the hash
        of the email) announces an email change by webhook; the binding must
        move to the new id before reading, or the new id would look like a
        new contact and the old one like a deletion.

        The webhook view stored the ids the app's parser found on the row
        (``contact_id``, the old one, and ``new_contact_id``): nothing here
        parses a stored body again. Deliveries can come late, twice or out of
        order (A→B after B→C): the new id is followed through the later
        changes the connection received, and only an id the app has now is
        reported as found."""
        if not any(c.webhooks is not None for c in self.connectors.values()):
            return  # neither app sends webhooks: nothing can have announced a change
        rows = list(
            WebhookEvent.objects.filter(connection=self.conn, kind="email_changed")
            .exclude(contact_id="")
            .exclude(new_contact_id="")
            .exclude(status__in=[WebhookEvent.Status.REJECTED, WebhookEvent.Status.IGNORED])
            .order_by("pk")
            .values("pk", "source", "status", "contact_id", "new_contact_id", "email")
        )
        moves = {(r["source"], r["contact_id"]): r["new_contact_id"] for r in rows}
        for row in rows:
            if row["status"] != WebhookEvent.Status.RECEIVED:
                continue
            for side in (A, B):
                if self.conn.account(side).connector != row["source"]:
                    continue
                old = row["contact_id"]
                chain = [row["new_contact_id"]]
                while (nxt := moves.get((row["source"], chain[-1]))) not in (None, old, *chain):
                    chain.append(nxt)
                found: dict[str, Contact] = {}
                if ContactLink.objects.filter(connection=self.conn, **{f"id_{side}": old}).exists():
                    found = self.connectors[side].get_contacts(chain)
                now = next((i for i in reversed(chain) if i in found), None)
                email = normalize_email(found[now].email) if now else normalize_email(row["email"])
                yield EmailChange(
                    side, old, now or row["new_contact_id"], email, row["pk"], found=now is not None
                )


@dataclass(frozen=True)
class EmailChange:
    side: str
    old_id: str
    #: where the contact is now (the end of the changes received), when ``found``
    new_id: str
    email: str
    #: the delivery's row, marked processed once followed
    event_id: int | None = None
    #: the app has a contact with ``new_id`` (else the delivery is stale)
    found: bool = True
