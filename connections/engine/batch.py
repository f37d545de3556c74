"""What passes between the stages of a run: read → match → plan → apply → record.

A ``Batch`` is one page of contacts from one side (with the cursor that
resumes after it); matching turns it into ``Pair``s (plus duplicates and
echoes), planning into ``Pending`` items, applying fills their results, and
recording commits them with the batch's cursor.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Contact, WriteResult

from ..models import ContactLink
from .context import A, B
from .state import LinkState, Outcome, PairPlan
from .store import Counterparts


@dataclass
class Batch:
    source: str
    contacts: list[Contact]
    #: how this batch's counterparts are found (the apps, or the initial sync's store)
    counterparts: Counterparts
    #: saved with this batch's results: a crash redoes at most this batch
    cursor: str | None = None
    #: webhook inbox rows up to this id are processed once the batch commits
    inbox_upto: int | None = None
    #: nothing to sync, only a cursor to save (the end of a read that left nothing over)
    only_cursor: bool = False


@dataclass
class Pair:
    """A contact of the source side and its counterpart (None: none found)."""

    link: ContactLink | None
    source: str
    contact: Contact
    peer: Contact | None

    @property
    def a(self) -> Contact | None:
        return self.contact if self.source == A else self.peer

    @property
    def b(self) -> Contact | None:
        return self.peer if self.source == A else self.contact


@dataclass
class Duplicate:
    """A contact not synced because another with its email is bound or older."""

    side: str
    contact: Contact
    link: ContactLink | None
    reason: str


@dataclass
class Matched:
    pairs: list[Pair] = field(default_factory=list)
    duplicates: list[Duplicate] = field(default_factory=list)
    #: bindings whose source contact came back with the values last synced
    echoes: list[ContactLink] = field(default_factory=list)


@dataclass
class Pending:
    """A planned pair waiting for its writes."""

    link: ContactLink | None
    plan: PairPlan
    old: LinkState | None
    results: dict[str, WriteResult] = field(default_factory=dict)
    #: planning this pair failed (nothing is written): the contact is failing with this reason
    error: str = ""

    def failures(self) -> dict[str, Any]:
        return {side: r.error for side, r in self.results.items() if r.error is not None}


class Counters:
    """The run's counts per side, stored on the SyncRun as they are."""

    def __init__(self) -> None:
        self.sides: dict[str, Counter[str]] = {A: Counter(), B: Counter()}

    def __getitem__(self, side: str) -> Counter[str]:
        return self.sides[side]

    def failed_total(self) -> int:
        return sum(c[Outcome.FAILED] for c in self.sides.values())

    def count(self, item: Pending, outcome: Outcome, source: str) -> None:
        """One planned pair: its outcome on the source side, its writes on each target."""
        if outcome == Outcome.FAILED:
            for side in item.failures():
                self.sides[side][Outcome.FAILED] += 1
            return
        if outcome == Outcome.EXCLUDED:
            self.sides[source][Outcome.EXCLUDED] += 1
            return
        if outcome in (Outcome.OUT_OF_SCOPE, Outcome.DELETED):
            self.sides[source][outcome] += 1
        elif outcome != Outcome.CREATED and outcome != Outcome.UPDATED:
            self.sides[source][Outcome.UNCHANGED] += 1
        for side, write in item.plan.writes.items():
            self.sides[side][write.action] += 1

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {side: {str(k): v for k, v in c.items()} for side, c in self.sides.items()}


def link_state(link: ContactLink) -> LinkState:
    """The stored binding as planning sees it (a copy: planning never touches the row)."""
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
