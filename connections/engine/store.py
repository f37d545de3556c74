"""Where matching finds counterparts: the apps, or the initial sync's store.

On a full sync where both sides can list, side B is read first into memory
(``InitialSyncStore``) and side A is then matched against it, so matching
costs no per-contact look-ups: the floor of requests is the list pages plus
the batch writes. Every other batch asks the apps (``Counterparts``).
"""

from __future__ import annotations

from collections.abc import Iterable

from connectors.base import NO_TAGS, Connector, Contact, normalize_email

from .context import A, B


class Counterparts:
    """Finds counterparts by asking the apps."""

    def __init__(self, connectors: dict[str, Connector]) -> None:
        self.connectors = connectors

    def by_ids(self, side: str, ids: list[str]) -> dict[str, Contact]:
        """Contacts of ``side`` by id; an id that no longer exists is absent."""
        return self.connectors[side].get_contacts(ids) if ids else {}

    def by_emails(self, side: str, emails: list[str]) -> dict[str, list[Contact]]:
        """Contacts of ``side`` by normalized email, searched before any create."""
        return self.connectors[side].find_by_emails(emails) if emails else {}

    def claim(self, contacts: Iterable[Contact]) -> None:
        """These contacts found their match (or are duplicates of it)."""


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

    def by_ids(self, side: str, ids: list[str]) -> dict[str, Contact]:
        if side != B:
            return super().by_ids(side, ids)
        found: dict[str, Contact] = {}
        missing = []
        for cid in ids:
            contact = self.contacts.pop(cid, None)
            if contact is not None:
                found[cid] = contact
            else:
                missing.append(cid)
        found.update(super().by_ids(side, missing))
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
