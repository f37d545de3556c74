"""What a plan is made of: the binding's state, the writes, the events, the
outcome; and the base snapshot a side is compared against. Pure.

The base is kept per side, in that side's own field keys, as the values the
side held after the last sync (what we read, or what the app answered to our
write). A field changed on a side when its value differs from that side's
base; so a side that reports back what we wrote is an echo and causes
nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from connectors.base import Contact, Field

from .context import A, Context
from .names import join_name

TAGS_KEY = "__tags__"
UNSUBSCRIBED_KEY = "__unsubscribed__"


class Outcome(StrEnum):
    """What happened to one contact pair in a run; the run's counters count it.

    The values are stored (run counters, link statuses share some of the
    words), so they never change.
    """

    UNCHANGED = "unchanged"
    MATCHED = "matched"
    CREATED = "created"
    UPDATED = "updated"
    #: deleted on one side: the counterpart gets the trash tag, never a delete
    DELETED = "deleted"
    #: nothing to decide (a deletion already handled, or of a contact never bound)
    SKIPPED = "skipped"
    #: no email while "Avoid duplicates" is on
    EXCLUDED = "excluded"
    #: no rule of its direction matched
    OUT_OF_SCOPE = "out_of_scope"
    #: an app refused a write (set when the plan is recorded, never by planning)
    FAILED = "failed"


@dataclass
class LinkState:
    id_a: str | None = None
    id_b: str | None = None
    email: str = ""
    base_a: dict[str, Any] = field(default_factory=dict)
    base_b: dict[str, Any] = field(default_factory=dict)
    rule_tags: dict[str, list[str]] = field(default_factory=dict)
    status: str = "in_sync"
    status_reason: str = ""
    unsubscribed_on: str = ""

    def id(self, side: str) -> str | None:
        return self.id_a if side == A else self.id_b

    def set_id(self, side: str, value: str | None) -> None:
        if side == A:
            self.id_a = value
        else:
            self.id_b = value

    def base(self, side: str) -> dict[str, Any]:
        return self.base_a if side == A else self.base_b

    def set_base(self, side: str, value: dict[str, Any]) -> None:
        if side == A:
            self.base_a = value
        else:
            self.base_b = value

    def copy(self) -> LinkState:
        return LinkState(
            self.id_a,
            self.id_b,
            self.email,
            dict(self.base_a),
            dict(self.base_b),
            {k: list(v) for k, v in self.rule_tags.items()},
            self.status,
            self.status_reason,
            self.unsubscribed_on,
        )


@dataclass
class Change:
    field: str
    old: Any
    new: Any
    other: Any = None
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        out = {"field": self.field, "old": self.old, "new": self.new}
        if self.note:
            out["other"] = self.other
            out["note"] = self.note
        return out


@dataclass
class SideWrite:
    side: str
    id: str | None  # None: create
    email: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    add_tags: set[str] = field(default_factory=set)
    remove_tags: set[str] = field(default_factory=set)
    changes: list[Change] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    current: Contact | None = None

    @property
    def create(self) -> bool:
        return self.id is None

    @property
    def empty(self) -> bool:
        return not (self.create or self.fields or self.add_tags or self.remove_tags)

    @property
    def action(self) -> str:
        if self.create:
            return "created"
        if self.fields:
            return "updated"
        return "tagged"


@dataclass
class PlannedEvent:
    side: str
    action: str
    reason: str
    changes: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class PairPlan:
    link: LinkState
    writes: dict[str, SideWrite] = field(default_factory=dict)
    events: list[PlannedEvent] = field(default_factory=list)
    #: what happened to the pair, for the run's counters
    outcome: Outcome = Outcome.UNCHANGED
    #: the contacts as planned, with the planned writes applied (bases come from these)
    contacts: dict[str, Contact | None] = field(default_factory=dict)

    def write(self, side: str, contact: Contact | None, email: str | None) -> SideWrite:
        if side not in self.writes:
            self.writes[side] = SideWrite(
                side, contact.id if contact else None, email, current=contact
            )
        return self.writes[side]


def field_value(contact: Contact, f: Field) -> Any:
    if f.parts:
        first, last = (contact.fields.get(k) for k in f.parts)
        return join_name(first, last)
    value = contact.fields.get(f.key)
    return None if value in ("", []) else value


def snapshot(contact: Contact, fields: tuple[Field, ...]) -> dict[str, Any]:
    """The base of one side: tracked field values and tags."""
    snap = {f.key: field_value(contact, f) for f in fields}
    snap[TAGS_KEY] = sorted(contact.tags)
    if contact.unsubscribed:
        snap[UNSUBSCRIBED_KEY] = True
    return snap


def is_echo(contact: Contact, link: Any, side: str, ctx: Context) -> bool:
    """Nothing we track changed on this side since the last sync. ``link`` is
    anything with ``base(side)``: a ``LinkState`` or the stored binding."""
    base = link.base(side)
    return bool(base) and snapshot(contact, ctx.tracked[side]) == base


def has_tag(tags: frozenset[str] | set[str], tag: str) -> bool:
    folded = tag.casefold()
    return any(t.casefold() == folded for t in tags)
