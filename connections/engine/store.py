"""Where matching finds counterparts: the apps, the run's own reads, or the
bindings' bases.

On a full sync where both sides can list, side B is read first into memory
(``InitialSyncStore``) and side A is then matched against it, so matching
costs no per-contact look-ups: the floor of requests is the list pages plus
the batch writes. An incremental run whose side B has a current change feed
reads B's changes first (``ChangesStore``). Every other batch asks the apps
(``Counterparts``), except for a counterpart that cannot have changed: its
side's current feed was read to its end moments ago in this run and did not
report it, so the values last synced (the binding's base) are its values
(``unchanged``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from connectors.base import NO_TAGS, Connector, Contact, normalize_email

from ..models import LinkStatus
from .context import A, B, Context
from .names import split_name
from .state import TAGS_KEY, UNSUBSCRIBED_KEY, snapshot

if TYPE_CHECKING:
    from ..models import ContactLink

#: how long after a side's current feed was read to its end a contact absent
#: from it counts as unchanged. A change made after the read is not in it:
#: this bounds the window in which such a change could be written over
#: (reading the contact by id has the same window between its read and our
#: write, only shorter), and keeps it to runs of the usual size
FEED_CURRENT_FOR = 60.0


class Counterparts:
    """Finds counterparts by asking the apps, or from the bases of bindings
    whose contact a current feed just said is unchanged."""

    def __init__(self, connectors: dict[str, Connector], ctx: Context | None = None) -> None:
        self.connectors = connectors
        self.ctx = ctx
        #: sides whose current change feed this run has read to its end, and when
        self.read_through: dict[str, float] = {}
        #: ids each side's feed reported in this run
        self.fed: dict[str, set[str]] = {A: set(), B: set()}

    def feed_read(self, side: str, ids: Iterable[str]) -> None:
        """``side``'s feed reported these ids in this run."""
        self.fed[side].update(ids)

    def feed_done(self, side: str) -> None:
        """``side``'s feed has been read to its end in this run (only a
        current feed makes its absences mean "unchanged")."""
        if self.connectors[side].capabilities.current_changes:
            self.read_through[side] = time.monotonic()

    def by_ids(
        self, side: str, ids: list[str], links: Mapping[str, ContactLink] | None = None
    ) -> dict[str, Contact]:
        """Contacts of ``side`` by id; an id that no longer exists is absent.
        ``links``: the binding of each id, where the caller has it (a
        counterpart that cannot have changed is then built from its base)."""
        found: dict[str, Contact] = {}
        ask = []
        for cid in ids:
            link = links.get(cid) if links else None
            contact = self.unchanged(side, cid, link) if link is not None else None
            if contact is not None:
                found[cid] = contact
            else:
                ask.append(cid)
        if ask:
            found.update(self.connectors[side].get_contacts(ask))
        return found

    def unchanged(self, side: str, cid: str, link: ContactLink) -> Contact | None:
        """The contact as last synced, when it cannot have changed since: its
        side's current feed was read to its end within ``FEED_CURRENT_FOR``
        and did not report it. None where that is not known."""
        since = self.read_through.get(side)
        if since is None or self.ctx is None or cid in self.fed[side]:
            return None
        if time.monotonic() - since > FEED_CURRENT_FOR:
            return None
        return from_base(link, side, cid, self.ctx)

    def by_emails(self, side: str, emails: list[str]) -> dict[str, list[Contact]]:
        """Contacts of ``side`` by normalized email, searched before any create."""
        return self.connectors[side].find_by_emails(emails) if emails else {}

    def claim(self, contacts: Iterable[Contact]) -> None:
        """These contacts found their match (or are duplicates of it)."""


def from_base(link: ContactLink, side: str, cid: str, ctx: Context) -> Contact | None:
    """``side``'s contact of ``link`` rebuilt from the values last synced.

    Only for a binding in sync (a failing one may hold a base the app never
    got) whose base holds every field planning reads on ``side``; a full name
    is split back into its parts. The rebuilt contact must give back exactly
    the base (``snapshot``), else None: the caller reads the contact instead.
    """
    if link.status not in (LinkStatus.IN_SYNC, LinkStatus.UNSUBSCRIBED):
        return None
    base: dict[str, Any] = link.base(side) or {}
    if not base:
        return None
    tracked = ctx.tracked[side]
    parts = {p for f in tracked for p in f.parts}
    if not ctx.keys_read(side) <= {f.key for f in tracked} | parts:
        return None  # a rule action sets a field the base does not keep
    fields: dict[str, Any] = {}
    for f in tracked:
        value = base.get(f.key)
        if f.parts:
            first, last = split_name(value)
            fields.setdefault(f.parts[0], first)
            fields.setdefault(f.parts[1], last)
        else:
            fields[f.key] = value
    tags = base.get(TAGS_KEY)
    contact = Contact(
        id=cid,
        email=link.email or None,
        fields=fields,
        tags=frozenset(tags if isinstance(tags, list) else ()),
        unsubscribed=bool(base.get(UNSUBSCRIBED_KEY)),
    )
    if snapshot(contact, tracked) != base:
        return None
    return contact


class InitialSyncStore(Counterparts):
    """Side B's contacts, read in full, while an initial sync matches A against them.

    A contact leaves the store when it is matched; what is left once A has
    been read has no counterpart in A (``leftovers``). Only the fields
    planning reads are kept, so memory stays small at 100,000 contacts: an
    email's entry is the id itself (a list only for an email held twice),
    and its key is the contact's own email string when that is normalized.
    """

    def __init__(self, connectors: dict[str, Connector], keep: frozenset[str]) -> None:
        super().__init__(connectors)
        self.keep = keep
        self.contacts: dict[str, Contact] = {}
        self.ids_by_email: dict[str, str | list[str]] = {}
        #: A was listed from its beginning in this run: a search there finds nothing more
        self.a_fully_listed = False

    def add(self, contact: Contact) -> None:
        contact.fields = {k: v for k, v in contact.fields.items() if k in self.keep}
        if not contact.tags:
            contact.tags = NO_TAGS  # one empty set for all, not one each
        self.contacts[contact.id] = contact
        key = normalize_email(contact.email)
        if not key:
            return
        if key == contact.email:
            key = contact.email  # the same string, not a copy
        held = self.ids_by_email.get(key)
        if held is None:
            self.ids_by_email[key] = contact.id
        elif isinstance(held, str):
            self.ids_by_email[key] = [held, contact.id]
        else:
            held.append(contact.id)

    def by_ids(
        self, side: str, ids: list[str], links: Mapping[str, ContactLink] | None = None
    ) -> dict[str, Contact]:
        if side != B:
            return super().by_ids(side, ids, links)
        found: dict[str, Contact] = {}
        missing = []
        for cid in ids:
            contact = self.contacts.pop(cid, None)
            if contact is not None:
                found[cid] = contact
            else:
                missing.append(cid)
        found.update(super().by_ids(side, missing, links))
        return found

    def by_emails(self, side: str, emails: list[str]) -> dict[str, list[Contact]]:
        if side == B:
            found = {key: self._held(key) for key in emails}
            # B was read in full: the emails not found there need no search before a create
            self.connectors[B].searched(k for k in emails if not found[k])
            return found
        if self.a_fully_listed:
            self.connectors[A].searched(emails)
            return {}
        return super().by_emails(side, emails)

    def _held(self, key: str) -> list[Contact]:
        held = self.ids_by_email.get(key, ())
        ids = [held] if isinstance(held, str) else held
        return [self.contacts[i] for i in ids if i in self.contacts]

    def claim(self, contacts: Iterable[Contact]) -> None:
        for contact in contacts:
            self.contacts.pop(contact.id, None)

    def leftovers(self) -> list[Contact]:
        """What is left, handed over: B was matched against A in full, so
        nothing asks the store for B again, and the run's end (the retries,
        the trash) does not hold it in memory through the last batch."""
        out = list(self.contacts.values())
        self.contacts, self.ids_by_email = {}, {}
        return out


class ChangesStore(InitialSyncStore):
    """Side B's changes since its cursor, read before side A's on an
    incremental run when B's feed is current (``Capabilities.current_changes``).

    A's changes find their counterparts among them (a contact changed on both
    sides is read once, from B's page, not again by id); a counterpart B's
    feed did not report has not changed since the last sync and is taken
    from its binding's base (``Counterparts.unchanged``). What A's changes
    did not claim is synced after A, as B's batches. Unlike the initial
    sync's store, B is not read in full: an email not found here is searched
    in the app, and deleted (archived) contacts are kept.
    """

    def __init__(
        self, connectors: dict[str, Connector], keep: frozenset[str], ctx: Context
    ) -> None:
        super().__init__(connectors, keep)
        self.ctx = ctx

    def add(self, contact: Contact) -> None:
        self.fed[B].add(contact.id)
        super().add(contact)

    def by_emails(self, side: str, emails: list[str]) -> dict[str, list[Contact]]:
        return Counterparts.by_emails(self, side, emails)
