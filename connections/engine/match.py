"""Matching: each contact of a batch with its binding and its counterpart.

A binding, once made, is kept by remote ids: a bound contact's counterpart
is fetched by id. An unbound one is matched by email (trimmed, case-folded):
first against bindings that already hold the email (made from the other
side, or waiting for this side), then by searching the other side. Where one
side holds several contacts with the same email, the oldest is bound and
the others are reported as duplicates. A contact that came back with the
values last synced (an echo of our own write) is not matched at all.

A contact whose id changed (Google gives a contact linked to a profile a new
resource name and lists the old one in ``Contact.previous_ids``) keeps its
binding: the binding moves from the old id to the new one, through the
writer, so a dry run moves nothing.
"""

from __future__ import annotations

import datetime as dt
from collections import defaultdict
from typing import TYPE_CHECKING

from connectors.base import Contact, normalize_email

from ..models import ContactLink, LinkStatus
from . import storable
from .batch import Batch, Counters, Duplicate, Matched, Pair
from .context import Context, other
from .state import is_echo

EMAIL_MAX = ContactLink._meta.get_field("email").max_length or 320

if TYPE_CHECKING:
    from .writer import Writer

OLDEST = dt.datetime.min.replace(tzinfo=dt.UTC)


def age(contact: Contact) -> tuple[dt.datetime, str]:
    return (contact.created_at or OLDEST, contact.id)


class Matcher:
    def __init__(
        self,
        conn_id: int,
        ctx: Context,
        counters: Counters,
        processed: set[int],
        writer: Writer | None = None,
    ) -> None:
        self.conn_id = conn_id
        #: moves the binding of a contact whose id changed (None: in memory only)
        self.writer = writer
        self.ctx = ctx
        self.counters = counters
        #: link pks handled in this run: their echo later in the run is no news
        self.processed = processed

    def match(self, batch: Batch) -> Matched:
        source, target = batch.source, other(batch.source)
        out = Matched()
        id_field = f"id_{source}"
        ids = [c.id for c in batch.contacts]
        links = {
            getattr(link, id_field): link
            for link in ContactLink.objects.filter(
                connection_id=self.conn_id, **{f"{id_field}__in": ids}
            )
        }
        self.rebind(batch, links)
        need_counterpart: dict[str, list[Contact]] = {}
        unlinked: list[Contact] = []
        for contact in batch.contacts:
            link = links.get(contact.id)
            if link is None:
                if not contact.deleted:
                    unlinked.append(contact)
                continue
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
                out.echoes.append(link)
                continue
            if link.remote_id(target):
                need_counterpart.setdefault(link.remote_id(target), []).append(contact)
            else:
                unlinked.append(contact)
        # counterparts of bound contacts, by id; one that is gone was deleted
        # (one that cannot have changed since the last sync comes from its base)
        counterparts = batch.counterparts.by_ids(
            target,
            list(need_counterpart),
            {tid: links[group[0].id] for tid, group in need_counterpart.items()},
        )
        for target_id, sources in need_counterpart.items():
            for contact in sources:
                peer = counterparts.get(target_id)
                if peer is None:
                    peer = Contact(id=target_id, deleted=True)
                out.pairs.append(Pair(links[contact.id], source, contact, peer))
        self.match_by_email(batch, unlinked, links, out)
        return out

    def rebind(self, batch: Batch, links: dict[str, ContactLink]) -> None:
        """Contacts whose new id is unbound and whose previous id is bound
        take over that binding (``links`` is updated: the new id finds it,
        the old one, if it comes back deleted, finds nothing)."""
        source = batch.source
        id_field = f"id_{source}"
        renamed: dict[str, Contact] = {}
        for contact in batch.contacts:
            if contact.deleted or contact.id in links:
                continue
            for previous in contact.previous_ids:
                if previous and previous != contact.id:
                    renamed.setdefault(previous, contact)
        if not renamed:
            return
        for link in ContactLink.objects.filter(
            connection_id=self.conn_id, **{f"{id_field}__in": list(renamed)}
        ).order_by("pk"):
            old_id = getattr(link, id_field)
            contact = renamed[old_id]
            if contact.id in links:
                continue  # two previous ids bound: the oldest binding is kept
            if self.writer is not None:
                self.writer.rebind(link, source, contact.id)
            setattr(link, id_field, contact.id)
            links.pop(old_id, None)
            links[contact.id] = link

    def match_by_email(
        self,
        batch: Batch,
        contacts: list[Contact],
        links: dict[str, ContactLink],
        out: Matched,
    ) -> None:
        """Unbound contacts: duplicates on this side, then bindings that hold
        the email already, then a search of the other side."""
        if not contacts:
            return
        source, target = batch.source, other(batch.source)
        by_email: dict[str, list[Contact]] = defaultdict(list)
        for contact in contacts:
            key = normalize_email(contact.email)
            if key:
                by_email[key].append(contact)
            else:
                out.pairs.append(Pair(links.get(contact.id), source, contact, None))
        if not by_email:
            return
        # bindings that already hold these emails (made from either side)
        email_links: dict[str, list[ContactLink]] = defaultdict(list)
        stored = {storable.cut(key, EMAIL_MAX): key for key in by_email}  # as bindings keep them
        for link in ContactLink.objects.filter(
            connection_id=self.conn_id, email__in=list(stored)
        ).exclude(status__in=[LinkStatus.DUPLICATE, LinkStatus.EXCLUDED]):
            email_links[stored.get(link.email, link.email)].append(link)
        lookup: list[str] = []
        adopt: dict[str, ContactLink] = {}
        for key, group in by_email.items():
            group.sort(key=age)
            ids = {c.id for c in group}
            held = email_links.get(key, [])
            bound = [x for x in held if x.remote_id(source) and x.remote_id(source) not in ids]
            if bound:
                for contact in group:
                    self.duplicate(out, source, contact, links.get(contact.id), kept=bound[0])
                by_email[key] = []
                continue
            for contact in group[1:]:
                self.duplicate(out, source, contact, links.get(contact.id), first=group[0])
            by_email[key] = group[:1]
            if not any(x.remote_id(target) for x in held):
                lookup.append(key)
            for x in held:
                if x.remote_id(target) and not x.remote_id(source):
                    adopt[key] = x  # a binding made from the other side waits for this one
                    break
        found = batch.counterparts.by_emails(target, lookup)
        adopted_ids = [x.remote_id(target) for x in adopt.values()]
        adopted = batch.counterparts.by_ids(target, adopted_ids) if adopted_ids else {}
        for key, group in by_email.items():
            if not group:
                continue
            contact = group[0]
            link = links.get(contact.id) or adopt.get(key)
            peer = None
            if key in adopt:
                peer = adopted.get(adopt[key].remote_id(target))
            else:
                candidates = sorted(found.get(key, []), key=age)
                if candidates:
                    peer = candidates[0]
                    for extra in candidates[1:]:
                        self.duplicate(out, target, extra, None, first=peer)
                    batch.counterparts.claim(candidates)
            out.pairs.append(Pair(link, source, contact, peer))

    def duplicate(
        self,
        out: Matched,
        side: str,
        contact: Contact,
        link: ContactLink | None,
        *,
        kept: ContactLink | None = None,
        first: Contact | None = None,
    ) -> None:
        kept_id = (kept.remote_id(side) if kept else None) or (first.id if first else "?")
        reason = (
            f"another {self.ctx.options.name(side)} contact ({kept_id}) with the same email is "
            "already linked; the oldest is kept, this one is not synced"
        )
        self.counters[side]["duplicates"] += 1
        out.duplicates.append(Duplicate(side, contact, link, reason))
