"""One sync run of one connection: read, plan, apply, record.

Reads each side's changes page by page. For each page: look up the bindings
and the counterparts (in batches), plan every pair (``plan.plan_pair``),
send the writes in the largest batches the app allows,
then commit the bindings, the events and that page's cursor in one
transaction, so a crash redoes at most one page. The target is searched by
email before any create (and the connectors' create paths cope with an email
that exists, e.g. Mailchimp upserts by hash, HubSpot answers 409 with the
existing id), so a crash between a create and its commit, or a rerun, never
makes a second contact; two workers never race on one connection because a
run holds the connection's claim (``connections.locking``).

On a full sync where both sides can list, side B is read first into memory
and side A is then matched against it, so matching costs no per-contact
look-ups: the floor of requests is the list pages plus the batch writes.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connections, transaction
from django.db.models import Q
from django.utils import timezone

from connectors.base import (
    AuthError,
    ConfigError,
    Connector,
    ConnectorError,
    Contact,
    ContactWrite,
    Field,
    normalize_email,
)

from ..models import (
    Account,
    Connection,
    ContactLink,
    FieldMapping,
    LinkStatus,
    Rule,
    SyncEvent,
    SyncRun,
    WebhookEvent,
)
from .context import A, B, Context, MappingSpec, Options, other
from .plan import plan_pair
from .rules import ActionSpec, ConditionSpec, RuleSpec
from .state import LinkState, PairPlan, SideWrite, is_echo, snapshot
from .types import effective_flows, parse_value

log = logging.getLogger(__name__)

INBOX_PAGE = 200
INBOX_SETTLE = dt.timedelta(seconds=10)
MAX_RETRY_DELAY = dt.timedelta(hours=24)


@dataclass
class Pending:
    """A planned pair waiting for its writes."""

    link: ContactLink | None
    plan: PairPlan
    old: LinkState | None
    results: dict[str, Any] = field(default_factory=dict)


LINK_FIELDS = (
    "id_a",
    "id_b",
    "email",
    "base_a",
    "base_b",
    "rule_tags",
    "status",
    "status_reason",
    "unsubscribed_on",
    "failure_count",
    "retry_after",
    "version_a",
    "version_b",
    "last_synced_at",
    "first_synced_at",
    "updated_at",
)


def save_links(links: list[ContactLink], fields: tuple[str, ...]) -> None:
    """UPDATE many links in one executemany.

    Django's bulk_update builds one CASE per field over the whole batch, which
    costs seconds per thousand rows on SQLite; one prepared UPDATE per row is
    a hundred times faster and the same on PostgreSQL.
    """
    if not links:
        return
    now = timezone.now()
    meta = ContactLink._meta
    columns = [meta.get_field(name) for name in fields]
    conn = connections[ContactLink.objects.db]
    quote = conn.ops.quote_name
    sql = "UPDATE {} SET {} WHERE {} = %s".format(
        quote(meta.db_table),
        ", ".join(f"{quote(f.column)} = %s" for f in columns),
        quote(meta.pk.column),
    )
    rows = []
    for link in links:
        link.updated_at = now
        rows.append(
            [f.get_db_prep_save(getattr(link, f.attname), conn) for f in columns] + [link.pk]
        )
    with conn.cursor() as cursor:
        cursor.executemany(sql, rows)


def link_state(link: ContactLink) -> LinkState:
    return LinkState(
        id_a=link.id_a,
        id_b=link.id_b,
        email=link.email,
        base_a=dict(link.base_a or {}),
        base_b=dict(link.base_b or {}),
        rule_tags={k: list(v) for k, v in (link.rule_tags or {}).items()},
        status=link.status,
        status_reason=link.status_reason,
        unsubscribed_on=link.unsubscribed_on,
    )


def retry_delay(failures: int) -> dt.timedelta:
    return min(MAX_RETRY_DELAY, dt.timedelta(minutes=2 ** max(0, failures - 1)))


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
    ) -> None:
        self.conn = connection
        self.trigger = trigger
        self.user = user
        self.dry_run = dry_run
        #: an explicit full resync starts over; a pending one (activation, widened
        #: scope, or a full sync a crash interrupted) resumes from saved cursors
        self.fresh_full = full or (connection.needs_full_sync and not connection.full_sync_started)
        self.full = full or connection.needs_full_sync
        self.a_fully_listed = False
        self.progress = progress or (lambda side, n: None)
        self.connectors: dict[str, Connector] = connectors or {}
        #: side B's contacts, read in full, while an initial sync matches A against them
        self.store: dict[str, Contact] | None = None
        self.store_by_email: dict[str, list[str]] = {}
        self.counters: dict[str, Counter[str]] = {A: Counter(), B: Counter()}
        self.processed: set[int] = set()  # link pks handled in this run
        #: trash-tag writes and their events, held until the run's end (mass-trash guard)
        self.deferred_trash: list[tuple[str, SideWrite, Pending]] = []
        self.reads_complete = True
        self.warnings: list[str] = []
        self.run: SyncRun | None = None

    # ------------------------------------------------------------------ setup

    def connector(self, side: str) -> Connector:
        return self.connectors[side]

    def _setup(self) -> None:
        conn = self.conn
        if not self.connectors:
            self.connectors = {
                A: conn.account_a.build_connector(conn.settings_a),
                B: conn.account_b.build_connector(conn.settings_b),
            }
        self.fields: dict[str, dict[str, Field]] = {}
        for side in (A, B):
            account = conn.account(side)
            fields = self.connector(side).fields()
            self.fields[side] = {f.key: f for f in fields}
            schema = Account.dump_schema(fields)
            if schema != account.schema:
                Account.objects.filter(pk=account.pk).update(schema=schema)
        mappings = []
        for m in FieldMapping.objects.filter(connection=conn, enabled=True):
            fa, fb = self.fields[A].get(m.field_a), self.fields[B].get(m.field_b)
            if fa is None or fb is None:
                missing = m.field_a if fa is None else m.field_b
                self.warnings.append(f"mapping {m}: field {missing!r} no longer exists; skipped")
                continue
            a_to_b, b_to_a = effective_flows(fa, fb, m.direction, conn.direction)
            if a_to_b or b_to_a:
                mappings.append(MappingSpec(fa, fb, a_to_b, b_to_a))
        rules = []
        for rule in Rule.objects.filter(connection=conn, enabled=True).prefetch_related(
            "conditions", "actions"
        ):
            source = rule.source_side
            target = other(source)
            conditions = tuple(
                ConditionSpec(c.operator, self.fields[source].get(c.field), c.value)
                for c in rule.conditions.all()
            )
            actions = []
            for act in rule.actions.all():
                target_field = self.fields[target].get(act.field) if act.field else None
                value: Any = act.value
                if act.kind == "set_field":
                    if target_field is None or target_field.read_only:
                        self.warnings.append(f"{rule}: cannot set {act.field!r}; action skipped")
                        continue
                    try:
                        value = parse_value(act.value, target_field)
                    except ValueError as exc:
                        self.warnings.append(f"{rule}: {exc}; action skipped")
                        continue
                actions.append(ActionSpec(act.kind, value, target_field))
            rules.append(
                RuleSpec(
                    rule.pk, source, conditions, tuple(actions), rule.undo_on_unmatch, str(rule)
                )
            )
        caps = {s: self.connector(s).capabilities for s in (A, B)}
        options = Options(
            direction=conn.direction,
            conflict_policy=conn.conflict_policy,
            avoid_duplicates=conn.avoid_duplicates,
            sync_deletions=conn.sync_deletions,
            trash_tag=conn.trash_tag,
            sync_unsubscribes=conn.sync_unsubscribes,
            unsubscribe_tag=conn.unsubscribe_tag,
            can_tag_a=caps[A].tags,
            can_tag_b=caps[B].tags,
            name_a=self.connector(A).name,
            name_b=self.connector(B).name,
        )
        self.ctx = Context(mappings, rules, options)

    # -------------------------------------------------------------------- run

    def execute(self) -> SyncRun:
        conn = self.conn
        self.run = SyncRun.objects.create(
            connection=conn,
            trigger=self.trigger,
            started_by=self.user,
            dry_run=self.dry_run,
            full=self.full,
        )
        status = SyncRun.Status.SUCCEEDED
        error = ""
        try:
            self._setup()
            if self.fresh_full and not self.dry_run:
                self._start_full()
            if not self.dry_run:
                self._follow_email_changes()
            self._read_all()
            self._retry_failing()
            self._finish_trash()
        except AuthError as exc:
            status, error = SyncRun.Status.FAILED, f"Account needs re-authorization: {exc}"
            self._account_failed(exc)
        except ConfigError as exc:
            status, error = SyncRun.Status.FAILED, f"Configuration error: {exc}"
            if not self.dry_run:
                Connection.objects.filter(pk=conn.pk).update(
                    state=Connection.State.ERROR, state_reason=str(exc)[:2000]
                )
        except ConnectorError as exc:
            status, error = SyncRun.Status.FAILED, f"Run stopped: {exc}"
            self.reads_complete = False
        if status == SyncRun.Status.SUCCEEDED and self._failed_total():
            status = SyncRun.Status.PARTIAL
        if self.warnings:
            error = "\n".join([error, *self.warnings]).strip()
        now = timezone.now()
        self.run.status = status
        self.run.error = error
        self.run.finished_at = now
        self.run.counters = {s: dict(c) for s, c in self.counters.items()}
        self.run.save(update_fields=["status", "error", "finished_at", "counters"])
        if not self.dry_run and status != SyncRun.Status.FAILED:
            updates: dict[str, Any] = {"last_synced_at": now, "last_synced_by": self.user}
            Connection.objects.filter(pk=conn.pk).update(**updates)
            if self.full:
                # unless a new full sync was requested while this one ran
                Connection.objects.filter(pk=conn.pk, full_sync_started=True).update(
                    needs_full_sync=False, full_sync_started=False
                )
        return self.run

    def _failed_total(self) -> int:
        return sum(c["failed"] for c in self.counters.values())

    def _account_failed(self, exc: AuthError) -> None:
        # find which account is unusable: ask each one once more
        for side, connector in self.connectors.items():
            account = self.conn.account(side)
            try:
                connector.check()
            except AuthError as side_exc:
                Account.objects.filter(pk=account.pk).update(
                    status=Account.Status.NEEDS_REAUTH, status_reason=str(side_exc)[:2000]
                )
            except ConnectorError:
                pass
        if not self.dry_run:
            Connection.objects.filter(pk=self.conn.pk).update(
                state=Connection.State.NEEDS_REAUTH, state_reason=str(exc)[:2000]
            )

    # ------------------------------------------------------------------ reads

    def _read_all(self) -> None:
        listable = {s: self.connector(s).capabilities.list_changes for s in (A, B)}
        if self.full and listable[A] and listable[B]:
            self._full_both()
            return
        for side in (A, B):
            if listable[side]:
                cursor = self._start_cursor(side)
                for page in self.connector(side).changes(cursor, full=self.full and not cursor):
                    self._process(side, page.contacts, cursor=page.cursor)
            else:
                self._read_inbox(side)

    def _start_full(self) -> None:
        """Forget the listable sides' cursors: the next reads start from scratch."""
        updates = {
            f"cursor_{side}": ""
            for side in (A, B)
            if self.connector(side).capabilities.list_changes
        }
        updates["needs_full_sync"] = True
        updates["full_sync_started"] = True
        Connection.objects.filter(pk=self.conn.pk).update(**updates)
        for key, value in updates.items():
            setattr(self.conn, key, value)

    def _start_cursor(self, side: str) -> str | None:
        """Where this run's read of ``side`` starts: the saved cursor (for a
        full sync, the page after the last one committed), or the beginning."""
        if self.dry_run and self.fresh_full:
            return None
        return self.conn.cursor(side) or None

    def _full_both(self) -> None:
        """Initial sync: B into memory, A matched against it, B's rest after."""
        store: dict[str, Contact] = {}
        by_email: dict[str, list[str]] = defaultdict(list)
        cursor_b: str | None = None
        # only what planning reads is kept, so memory stays small at 100,000
        keep = self._keys_read(B)
        for page in self.connector(B).changes(None, full=True):
            for contact in page.contacts:
                if contact.deleted:
                    continue
                contact.fields = {k: v for k, v in contact.fields.items() if k in keep}
                store[contact.id] = contact
                key = normalize_email(contact.email)
                if key:
                    by_email[key].append(contact.id)
            cursor_b = page.cursor
        self.store, self.store_by_email = store, by_email
        cursor_a = self._start_cursor(A)
        self.a_fully_listed = cursor_a is None
        for page in self.connector(A).changes(cursor_a, full=cursor_a is None):
            self._process(A, page.contacts, cursor=page.cursor)
        leftovers = list(store.values())
        batch = max(self.connector(A).write_batch_size, 100)
        for start in range(0, len(leftovers), batch):
            chunk = leftovers[start : start + batch]
            last = start + batch >= len(leftovers)
            self._process(B, chunk, cursor=cursor_b if last else None)
        if not leftovers:
            self._commit_cursor(B, cursor_b)
        self.store, self.store_by_email = None, {}

    def _follow_email_changes(self) -> None:
        """An app that keys contacts by email (Mailchimp: the id is the hash
        of the email) announces an email change by webhook; move the binding
        to the new id before reading, or the new id would look like a new
        contact and the old one like a deletion."""
        rows = WebhookEvent.objects.filter(
            connection=self.conn, kind="email_changed", status=WebhookEvent.Status.RECEIVED
        ).order_by("pk")
        for row in rows:
            for side in (A, B):
                if self.conn.account(side).connector != row.source:
                    continue
                try:
                    parsed = self.connector(side).parse_webhook(
                        row.body.encode(), "application/x-www-form-urlencoded", {}
                    )
                except ConnectorError:
                    continue
                for event in parsed:
                    new_id = event.contact.id if event.contact else None
                    if event.kind != "email_changed" or not new_id or not event.contact_id:
                        continue
                    ContactLink.objects.filter(
                        connection=self.conn, **{f"id_{side}": event.contact_id}
                    ).exclude(**{f"id_{side}": new_id}).update(
                        **{f"id_{side}": new_id}, email=normalize_email(event.email)
                    )

    def _keys_read(self, side: str) -> frozenset[str]:
        """Field keys of ``side`` that planning reads: tracked (mapped or in a
        rule's condition), the parts of a full name, and fields actions set."""
        keys: set[str] = set()
        for f in self.ctx.tracked[side]:
            keys.add(f.key)
            keys.update(f.parts)
        for rule in self.ctx.rules:
            if rule.source != side:
                for action in rule.actions:
                    if action.field is not None:
                        keys.add(action.field.key)
                        keys.update(action.field.parts)
        return frozenset(keys)

    def _read_inbox(self, side: str) -> None:
        """Drift: contacts come in through its webhooks, stored in the inbox.

        The saved cursor trails the newest deliveries by ``INBOX_SETTLE``: on
        PostgreSQL a delivery can commit after one with a higher id, and a
        cursor at the newest id would skip it. Rereading a recent delivery is
        harmless: the contact is fetched fresh and planned against the base.
        """
        account = self.conn.account(side)
        try:
            last = int(self.conn.cursor(side) or 0)
        except ValueError:
            last = 0
        settled_before = timezone.now() - INBOX_SETTLE
        while True:
            events = list(
                WebhookEvent.objects.filter(account=account, pk__gt=last)
                .exclude(status__in=[WebhookEvent.Status.REJECTED, WebhookEvent.Status.IGNORED])
                .exclude(contact_id="")
                .order_by("pk")
                .values("pk", "kind", "contact_id", "received_at")[:INBOX_PAGE]
            )
            if not events:
                return
            last = events[-1]["pk"]
            settled = None
            for event in events:
                if event["received_at"] > settled_before:
                    break
                settled = event["pk"]
            ids = list(dict.fromkeys(e["contact_id"] for e in events))
            unsubscribed = {e["contact_id"] for e in events if e["kind"] == "unsubscribed"}
            found = self.connector(side).get_contacts(ids)
            contacts = []
            for cid in ids:
                contact = found.get(cid)
                if contact is None:
                    continue  # gone again before we read it
                if cid in unsubscribed:
                    contact.unsubscribed = True
                contacts.append(contact)
            cursor = str(settled) if settled is not None else None
            self._process(side, contacts, cursor=cursor, inbox_upto=last)
            if settled != last:
                return  # the rest is too recent to pass: the next run reads it again

    # --------------------------------------------------------------- process

    def _process(
        self,
        source: str,
        contacts: list[Contact],
        *,
        cursor: str | None,
        inbox_upto: int | None = None,
    ) -> None:
        target = other(source)
        conn = self.conn
        self.counters[source]["scanned"] += len(contacts)
        self.progress(source, len(contacts))
        id_field = f"id_{source}"
        ids = [c.id for c in contacts]
        links = {
            getattr(link, id_field): link
            for link in ContactLink.objects.filter(connection=conn, **{f"{id_field}__in": ids})
        }
        pending: list[Pending] = []
        events: list[SyncEvent] = []
        need_counterpart: dict[str, list[Contact]] = {}
        unlinked: list[Contact] = []
        for contact in contacts:
            link = links.get(contact.id)
            if link is not None:
                echo = is_echo(contact, link, source, self.ctx)
                if echo and link.pk in self.processed:
                    continue
                if link.status in (LinkStatus.DELETED_A, LinkStatus.DELETED_B):
                    continue  # never re-created, never synced again
                if (
                    not contact.deleted
                    and link.remote_id(target)
                    and link.status in (LinkStatus.IN_SYNC, LinkStatus.UNSUBSCRIBED)
                    and echo
                ):
                    self.counters[source]["unchanged"] += 1
                    if not self.full:
                        events.append(
                            self._event(
                                link,
                                source,
                                "echo",
                                "came back with the values last synced; nothing to do",
                            )
                        )
                    continue
                if link.remote_id(target):
                    need_counterpart.setdefault(link.remote_id(target), []).append(contact)
                else:
                    unlinked.append(contact)
            elif not contact.deleted:
                unlinked.append(contact)
        # counterparts of bound contacts, by id
        counterparts: dict[str, Contact] = {}
        if need_counterpart:
            counterparts = self._fetch(target, list(need_counterpart))
        for target_id, sources in need_counterpart.items():
            for contact in sources:
                link = links[contact.id]
                peer = counterparts.get(target_id)
                if peer is None:
                    peer = Contact(id=target_id, deleted=True)
                self._plan(link, source, contact, peer, pending)
        # unbound contacts: duplicates on this side, then match by email
        self._match(source, unlinked, links, pending, events)
        self._apply(pending, events, source, cursor, inbox_upto)

    def _fetch(self, side: str, ids: list[str]) -> dict[str, Contact]:
        found: dict[str, Contact] = {}
        missing = ids
        if side == B and self.store is not None:
            missing = []
            for cid in ids:
                contact = self.store.pop(cid, None)
                if contact is not None:
                    found[cid] = contact
                else:
                    missing.append(cid)
        if missing:
            found.update(self.connector(side).get_contacts(missing))
        return found

    def _match(
        self,
        source: str,
        contacts: list[Contact],
        links: dict[str, ContactLink],
        pending: list[Pending],
        events: list[SyncEvent],
    ) -> None:
        if not contacts:
            return
        target = other(source)
        oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
        by_email: dict[str, list[Contact]] = defaultdict(list)
        no_email: list[Contact] = []
        for contact in contacts:
            key = normalize_email(contact.email)
            (by_email[key] if key else no_email).append(contact)
        for contact in no_email:
            self._plan(links.get(contact.id), source, contact, None, pending)
        if not by_email:
            return
        # bindings that already hold these emails (made from either side)
        email_links: dict[str, list[ContactLink]] = defaultdict(list)
        for link in ContactLink.objects.filter(
            connection=self.conn, email__in=list(by_email)
        ).exclude(status__in=[LinkStatus.DUPLICATE, LinkStatus.EXCLUDED]):
            email_links[link.email].append(link)
        lookup: list[str] = []
        for key, group in by_email.items():
            group.sort(key=lambda c: (c.created_at or oldest, c.id))
            bound = [
                link
                for link in email_links.get(key, [])
                if link.remote_id(source) and link.remote_id(source) not in {c.id for c in group}
            ]
            if bound:
                for contact in group:
                    self._duplicate(source, contact, links.get(contact.id), bound[0], events)
                by_email[key] = []
                continue
            for contact in group[1:]:
                self._duplicate(
                    source, contact, links.get(contact.id), None, events, first=group[0]
                )
            by_email[key] = group[:1]
            adoptable = [link for link in email_links.get(key, []) if link.remote_id(target)]
            if adoptable:
                continue
            lookup.append(key)
        found: dict[str, list[Contact]] = {}
        if source == A and self.store is not None:
            for key in lookup:
                found[key] = [
                    self.store[i] for i in self.store_by_email.get(key, []) if i in self.store
                ]
            self.connector(target).searched(k for k in lookup if not found[k])
        elif source == B and self.store is not None and self.a_fully_listed:
            found = {}  # A was listed in full in this run: nothing more to find there
            self.connector(target).searched(lookup)
        elif lookup:
            found = self.connector(target).find_by_emails(lookup)
        adopted_ids: list[str] = []
        adopt: dict[str, ContactLink] = {}
        for key, group in by_email.items():
            if not group:
                continue
            for link in email_links.get(key, []):
                if link.remote_id(target) and not link.remote_id(source):
                    adopt[key] = link
                    adopted_ids.append(link.remote_id(target))
                    break
        adopted = self._fetch(target, adopted_ids) if adopted_ids else {}
        for key, group in by_email.items():
            if not group:
                continue
            contact = group[0]
            link = links.get(contact.id) or adopt.get(key)
            peer = None
            if key in adopt:
                peer = adopted.get(adopt[key].remote_id(target))
            else:
                candidates = sorted(
                    found.get(key, []), key=lambda c: (c.created_at or oldest, c.id)
                )
                if candidates:
                    peer = candidates[0]
                    for extra in candidates[1:]:
                        self._duplicate(target, extra, None, None, events, first=peer)
                    if self.store is not None:
                        for c in candidates:
                            self.store.pop(c.id, None)
            self._plan(link, source, contact, peer, pending)

    def _duplicate(
        self,
        side: str,
        contact: Contact,
        link: ContactLink | None,
        bound: ContactLink | None,
        events: list[SyncEvent],
        first: Contact | None = None,
    ) -> None:
        kept = (bound.remote_id(side) if bound else None) or (first.id if first else "?")
        reason = (
            f"another {self.connector(side).name} contact ({kept}) with the same email is "
            "already linked; the oldest is kept, this one is not synced"
        )
        self.counters[side]["duplicates"] += 1
        if self.dry_run:
            events.append(self._event(None, side, "duplicate", reason, email=contact.email))
            return
        if link is None:
            link = ContactLink.objects.filter(
                connection=self.conn, **{f"id_{side}": contact.id}
            ).first()
        if link is None:
            link = ContactLink(connection=self.conn, **{f"id_{side}": contact.id})
        if link.status == LinkStatus.DUPLICATE and link.status_reason == reason:
            return
        link.email = normalize_email(contact.email)
        link.status = LinkStatus.DUPLICATE
        link.status_reason = reason
        link.save()
        events.append(self._event(link, side, "duplicate", reason, email=contact.email))

    def _plan(
        self,
        link: ContactLink | None,
        source: str,
        contact: Contact,
        peer: Contact | None,
        pending: list[Pending],
    ) -> None:
        a, b = (contact, peer) if source == A else (peer, contact)
        old = link_state(link) if link else None
        if (
            link is not None
            and link.status == LinkStatus.FAILING
            and link.retry_after
            and link.retry_after > timezone.now()
            and not self.full
        ):
            # it failed recently; it is retried after its backoff
            self.counters[source]["failed"] += 1
            return
        plan = plan_pair(a, b, old, self.ctx)
        pending.append(Pending(link, plan, old))

    # ----------------------------------------------------------------- apply

    def _apply(
        self,
        pending: list[Pending],
        events: list[SyncEvent],
        source: str,
        cursor: str | None,
        inbox_upto: int | None = None,
    ) -> None:
        conn = self.conn
        # deletions wait for the end of the run (mass-trash guard)
        for item in pending:
            if item.plan.outcome == "deleted":
                for side, write in list(item.plan.writes.items()):
                    self.deferred_trash.append((side, write, item))
                    del item.plan.writes[side]
        # the writes, per side, in the connector's batches
        for side in (A, B):
            writes: list[ContactWrite] = []
            owners: list[Pending] = []
            for item in pending:
                w = item.plan.writes.get(side)
                if w is None:
                    continue
                writes.append(
                    ContactWrite(
                        id=w.id,
                        email=w.email,
                        fields=dict(w.fields),
                        add_tags=frozenset(w.add_tags),
                        remove_tags=frozenset(w.remove_tags),
                        version=w.current.version if w.current else None,
                        current=w.current,
                        ref=len(owners),
                    )
                )
                owners.append(item)
            if not writes or self.dry_run:
                continue
            for result in self.connector(side).write_contacts(writes):
                owners[result.ref].results[side] = result
        with transaction.atomic():
            self._record(pending, events, source)
            if events:
                SyncEvent.objects.bulk_create(events, batch_size=500)
            if not self.dry_run:
                self._commit_cursor(source, cursor)
                if inbox_upto is not None:
                    WebhookEvent.objects.filter(
                        account=conn.account(source),
                        pk__lte=inbox_upto,
                        status=WebhookEvent.Status.RECEIVED,
                    ).update(status=WebhookEvent.Status.PROCESSED, processed_at=timezone.now())

    def _record(self, pending: list[Pending], events: list[SyncEvent], source: str) -> None:
        now = timezone.now()
        to_save: list[ContactLink] = []
        to_create: list[ContactLink] = []
        for item in pending:
            plan = item.plan
            state = plan.link
            failures = {side: r.error for side, r in item.results.items() if r.error is not None}
            for side, result in item.results.items():
                if result.error is None and result.contact is not None:
                    if result.contact.id:
                        # a create's new id, or a new id after an email change
                        # (a Mailchimp member's id is the hash of its email)
                        state.set_id(side, result.contact.id)
                    # the base is what the app answered: its own normalization is no change
                    state.set_base(side, snapshot(result.contact, self.ctx.tracked[side]))
            outcome = plan.outcome
            if failures:
                outcome = "failed"
            self._count(item, outcome, source)
            for ev in plan.events:
                if ev.side in failures or ev.action == "trashed":
                    continue  # trash events are recorded when the tag is sent
                action = ev.action
                if action == "matched" and self.full and not self.dry_run:
                    continue
                events.append(
                    self._event(
                        item.link, ev.side, action, ev.reason, ev.changes, email=state.email
                    )
                )
            if self.dry_run:
                continue
            link = item.link
            if link is None:
                if outcome in ("out_of_scope", "skipped"):
                    continue
                link = ContactLink(connection=self.conn)
                item.link = link
                to_create.append(link)
            else:
                to_save.append(link)
            if failures:
                side, error = next(iter(failures.items()))
                old = item.old or LinkState()
                link.base_a, link.base_b = old.base_a, old.base_b
                link.failure_count = (link.failure_count or 0) + 1
                link.retry_after = now + retry_delay(link.failure_count)
                link.status = LinkStatus.FAILING
                link.status_reason = f"{self.connector(side).name} refused it: {error.message}"
                link.id_a = link.id_a or state.id_a
                link.id_b = link.id_b or state.id_b
                link.email = state.email or link.email
                events.append(
                    self._event(
                        link,
                        side,
                        "failed",
                        link.status_reason,
                        [c.as_dict() for c in plan.writes[side].changes],
                        email=state.email,
                    )
                )
                continue
            if outcome in ("out_of_scope",) and link.pk is None:
                continue
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
                contact = result.contact if result else plan.contacts.get(side)
                if contact is not None and contact.version:
                    setattr(link, f"version_{side}", contact.version[:200])
            link.last_synced_at = now
            link.first_synced_at = link.first_synced_at or now
        if to_create:
            ContactLink.objects.bulk_create(to_create, batch_size=500)
        if to_save:
            save_links(to_save, LINK_FIELDS)
        for item in pending:
            if item.link is not None and item.link.pk:
                self.processed.add(item.link.pk)

    def _count(self, item: Pending, outcome: str, source: str) -> None:
        plan = item.plan
        if outcome == "failed":
            for side, result in item.results.items():
                if result.error is not None:
                    self.counters[side]["failed"] += 1
            return
        if outcome == "excluded":
            self.counters[source]["excluded"] += 1
            return
        if outcome in ("unchanged", "matched", "out_of_scope", "skipped", "deleted"):
            key = {"out_of_scope": "out_of_scope", "deleted": "deleted"}.get(outcome, "unchanged")
            self.counters[source][key] += 1
        for side, write in plan.writes.items():
            self.counters[side][write.action] += 1

    def _commit_cursor(self, side: str, cursor: str | None) -> None:
        if cursor is None or self.dry_run:
            return
        Connection.objects.filter(pk=self.conn.pk).update(**{f"cursor_{side}": cursor})
        setattr(self.conn, f"cursor_{side}", cursor)

    def _event(
        self,
        link: ContactLink | None,
        side: str,
        action: str,
        reason: str,
        changes: list[dict[str, Any]] | None = None,
        *,
        email: str | None = None,
    ) -> SyncEvent:
        assert self.run is not None
        return SyncEvent(
            run=self.run,
            link=link,
            email=normalize_email(email) or (link.email if link else ""),
            side=side,
            action=action,
            reason=reason[:5000],
            changes=changes or [],
        )

    # ---------------------------------------------------------------- retries

    def _retry_failing(self) -> None:
        """Contacts an app refused earlier, once their backoff has passed.

        They go through the same path as a change on their source side, so a
        create that failed is searched for by email again before it is retried.
        """
        due = list(
            ContactLink.objects.filter(connection=self.conn, status=LinkStatus.FAILING)
            .filter(Q(retry_after__lte=timezone.now()) | Q(retry_after__isnull=True))
            .exclude(pk__in=self.processed)[:1000]
        )
        for side in (A, B):
            ids = [link.remote_id(side) for link in due if link.remote_id(side)]
            if not ids:
                continue
            found = self.connector(side).get_contacts(ids)
            contacts = [found[i] for i in ids if i in found]
            if contacts:
                self._process(side, contacts, cursor=None)
            due = [link for link in due if not link.remote_id(side)]

    # ------------------------------------------------------------------ trash

    def _finish_trash(self) -> None:
        if not self.deferred_trash:
            return
        held = self.deferred_trash
        total = ContactLink.objects.filter(connection=self.conn).count() or 1
        limit = settings.DRIFTSYNC_MAX_TRASH_SHARE
        events: list[SyncEvent] = []
        why = ""
        if not self.reads_complete:
            why = "the run's reads were incomplete"
        elif len(held) > 1 and len(held) / total > limit:
            why = (
                f"it would tag {len(held)} of {total} contacts at once (more than {limit:.0%}); "
                "check the other app, then raise DRIFTSYNC_MAX_TRASH_SHARE or tag by hand"
            )
        if why:
            self.warnings.append(f"Nothing was tagged as deleted: {why}.")
            for side, _write, item in held:
                events.append(self._event(item.link, side, "skipped", f"trash tag withheld: {why}"))
            SyncEvent.objects.bulk_create(events)
            return
        for side in (A, B):
            batch = [(w, item) for s, w, item in held if s == side]
            if not batch:
                continue
            results = {}
            if not self.dry_run:
                writes = [
                    ContactWrite(
                        id=w.id,
                        email=w.email,
                        add_tags=frozenset(w.add_tags),
                        current=w.current,
                        ref=i,
                    )
                    for i, (w, _item) in enumerate(batch)
                ]
                results = {r.ref: r for r in self.connector(side).write_contacts(writes)}
            for i, (_w, item) in enumerate(batch):
                result = results.get(i)
                for ev in item.plan.events:
                    if ev.action != "trashed":
                        continue
                    if result is not None and result.error is not None:
                        self.counters[side]["failed"] += 1
                        events.append(
                            self._event(
                                item.link,
                                side,
                                "failed",
                                f"trash tag refused: {result.error.message}",
                            )
                        )
                    else:
                        self.counters[side]["trashed"] += 1
                        events.append(self._event(item.link, side, "trashed", ev.reason))
        SyncEvent.objects.bulk_create(events)


def run_connection(
    connection: Connection | int,
    *,
    trigger: str = SyncRun.Trigger.MANUAL,
    user: Any = None,
    dry_run: bool = False,
    full: bool = False,
    progress: Callable[[str, int], None] | None = None,
    connectors: dict[str, Connector] | None = None,
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
    )
    return runner.execute()


__all__ = ["SyncRunner", "run_connection"]
