"""Deciding what to do with one contact pair. Pure: no HTTP, no database.

``plan_pair(a, b, link, ctx)`` takes the contact as it is now on each side
(or ``None``), the binding with the base values of the last sync, and the
connection's mappings, rules and options, and returns a ``PairPlan``: the
writes for each side, the new state of the binding (as it will be once the
writes succeed) and the events to record, each with its reason.

The base is kept per side, in that side's own field keys, as the values the
side held after the last sync (what we read, or what the app answered to our
write). A field changed on a side when its value differs from that side's
base; so a side that reports back what we wrote is an echo and causes
nothing.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any

from connectors.base import Contact, Field, normalize_email

from .names import join_name, split_name
from .rules import ActionSpec, RuleSpec, Scope, evaluate
from .types import convert

A, B = "a", "b"
TAGS_KEY = "__tags__"
UNSUBSCRIBED_KEY = "__unsubscribed__"


def other(side: str) -> str:
    return B if side == A else A


@dataclass(frozen=True)
class MappingSpec:
    field_a: Field
    field_b: Field
    a_to_b: bool
    b_to_a: bool

    def field(self, side: str) -> Field:
        return self.field_a if side == A else self.field_b

    def flows_from(self, side: str) -> bool:
        return self.a_to_b if side == A else self.b_to_a


@dataclass(frozen=True)
class Options:
    direction: str = "two_way"
    conflict_policy: str = "a_wins"  # a_wins | b_wins | most_recent
    avoid_duplicates: bool = True
    sync_deletions: bool = False
    trash_tag: str = "DriftSync Trash"
    sync_unsubscribes: bool = False
    unsubscribe_tag: str = "DriftSync Unsubscribes"
    can_tag_a: bool = True
    can_tag_b: bool = True
    name_a: str = "A"
    name_b: str = "B"

    def flows(self, source: str) -> bool:
        if self.direction == "two_way":
            return True
        return self.direction == ("a_to_b" if source == A else "b_to_a")

    def can_tag(self, side: str) -> bool:
        return self.can_tag_a if side == A else self.can_tag_b

    def name(self, side: str) -> str:
        return self.name_a if side == A else self.name_b


@dataclass
class Context:
    mappings: list[MappingSpec]
    rules: list[RuleSpec]
    options: Options = field(default_factory=Options)
    #: field keys per side whose values are kept in the base (mapped fields
    #: and fields read by rule conditions); computed when left empty
    tracked: dict[str, tuple[Field, ...]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.tracked:
            for side in (A, B):
                seen: dict[str, Field] = {}
                for m in self.mappings:
                    f = m.field(side)
                    seen.setdefault(f.key, f)
                for rule in self.rules:
                    if rule.source == side:
                        for cond in rule.conditions:
                            if cond.field is not None:
                                seen.setdefault(cond.field.key, cond.field)
                self.tracked[side] = tuple(seen.values())

    def rules_from(self, side: str) -> list[RuleSpec]:
        return [r for r in self.rules if r.source == side]


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
    outcome: str = "unchanged"
    #: the contacts as planned, with the planned writes applied (bases come from these)
    contacts: dict[str, Contact | None] = field(default_factory=dict)

    def write(self, side: str, contact: Contact | None, email: str | None) -> SideWrite:
        if side not in self.writes:
            self.writes[side] = SideWrite(
                side, contact.id if contact else None, email, current=contact
            )
        return self.writes[side]


# ---------------------------------------------------------------- values


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


def _has_tag(tags: frozenset[str] | set[str], tag: str) -> bool:
    folded = tag.casefold()
    return any(t.casefold() == folded for t in tags)


def _winner(a: Contact, b: Contact, options: Options) -> tuple[str, str]:
    policy = options.conflict_policy
    if policy == "b_wins":
        return B, f"{options.name_b} wins (connection setting)"
    if policy == "most_recent":
        oldest = dt.datetime.min.replace(tzinfo=dt.UTC)
        ta, tb = a.updated_at or oldest, b.updated_at or oldest
        if tb > ta:
            return B, f"most recent change, in {options.name_b}"
        return A, f"most recent change, in {options.name_a}"
    return A, f"{options.name_a} wins (connection setting)"


# ------------------------------------------------------------------ plan


def plan_pair(
    a: Contact | None, b: Contact | None, link: LinkState | None, ctx: Context
) -> PairPlan:
    """Decide everything for one contact pair. See the module docstring."""
    options = ctx.options
    state = link.copy() if link else LinkState()
    plan = PairPlan(state, contacts={A: a, B: b})
    contacts = {A: a, B: b}

    # --- deletions: never delete; tag the counterpart, never re-create ----
    for side in (A, B):
        gone = contacts[side]
        if gone is None or not gone.deleted:
            continue
        if link is None or not link.id(side):
            plan.outcome = "skipped"
            return plan
        deleted_status = f"deleted_{side}"
        if state.status == deleted_status:
            plan.outcome = "skipped"
            return plan
        state.status = deleted_status
        state.status_reason = f"deleted in {options.name(side)}"
        plan.outcome = "deleted"
        target = other(side)
        counterpart = contacts[target]
        target_id = state.id(target)
        if not options.sync_deletions:
            plan.events.append(
                PlannedEvent(
                    side,
                    "skipped",
                    f"deleted in {options.name(side)}; "
                    "“Sync deletions” is off, so nothing is tagged",
                )
            )
        elif not options.can_tag(target):
            plan.events.append(
                PlannedEvent(
                    side,
                    "skipped",
                    f"deleted in {options.name(side)}; {options.name(target)} cannot be tagged",
                )
            )
        elif target_id and (counterpart is None or not counterpart.deleted):
            tags = counterpart.tags if counterpart else frozenset()
            if not _has_tag(tags, options.trash_tag):
                write = plan.write(target, counterpart, state.email or None)
                write.id = target_id
                write.add_tags.add(options.trash_tag)
                write.reasons.append(
                    f"deleted in {options.name(side)} → tagged “{options.trash_tag}” for review"
                )
            plan.events.append(
                PlannedEvent(
                    target,
                    "trashed",
                    f"deleted in {options.name(side)} → tagged “{options.trash_tag}” "
                    "for review; it will not be re-created",
                )
            )
        return plan

    if link is not None and state.status in ("deleted_a", "deleted_b"):
        plan.outcome = "skipped"
        return plan

    # --- identity -------------------------------------------------------
    email = normalize_email((a.email if a else None) or (b.email if b else None))
    if email:
        state.email = email
    if a is not None:
        state.id_a = a.id
    if b is not None:
        state.id_b = b.id
    linked_both = bool(state.id_a and state.id_b)
    if not email and options.avoid_duplicates and not linked_both:
        side = A if a is not None else B
        state.status = "excluded"
        state.status_reason = "no email address (“Avoid duplicates” is on)"
        plan.outcome = "excluded"
        plan.events.append(PlannedEvent(side, "excluded", state.status_reason))
        return plan

    # --- scope per direction (rules) -----------------------------------
    scopes: dict[str, Scope] = {}
    for source in (A, B):
        contact = contacts[source]
        if contact is None or not options.flows(source):
            scopes[source] = Scope()
        else:
            exists = contacts[other(source)] is not None
            scopes[source] = evaluate(ctx.rules_from(source), contact, exists)

    # --- one side only: create on the other when a rule says so ---------
    if a is None or b is None:
        source = A if a is not None else B
        target = other(source)
        contact = contacts[source]
        assert contact is not None
        scope = scopes[source]
        if not scope.in_scope:
            plan.outcome = "out_of_scope"
            state.set_base(source, snapshot(contact, ctx.tracked[source]))
            return plan
        write = plan.write(target, None, contact.email)
        new = Contact(id="", email=contact.email, fields={}, tags=frozenset())
        for m in ctx.mappings:
            if not m.flows_from(source):
                continue
            value = field_value(contact, m.field(source))
            if value is None:
                continue
            converted = convert(value, m.field(source), m.field(target))
            _set_value(write, new, m.field(target), converted, None)
        _apply_actions(plan, write, new, scope, target, state, options)
        _apply_unsubscribe(plan, contacts, state, options, new_contacts={target: new})
        write.reasons.insert(0, f"new in {options.name(source)}; {scope.reason()}")
        state.status = "pending"
        state.status_reason = ""
        plan.outcome = "created"
        plan.events.append(
            PlannedEvent(
                target,
                "created",
                "; ".join(write.reasons),
                [c.as_dict() for c in write.changes],
            )
        )
        state.set_base(source, snapshot(contact, ctx.tracked[source]))
        state.set_base(target, snapshot(new, ctx.tracked[target]))
        plan.contacts[target] = new
        return plan

    # --- both sides: three-way merge per field --------------------------
    assert a is not None
    assert b is not None
    new_a = Contact(a.id, a.email, dict(a.fields), a.tags, a.created_at, a.updated_at, a.version)
    new_b = Contact(b.id, b.email, dict(b.fields), b.tags, b.created_at, b.updated_at, b.version)
    new = {A: new_a, B: new_b}
    first_match = not link or not link.base_a or not link.base_b
    for m in ctx.mappings:
        _merge_field(plan, m, a, b, new, state, scopes, options)

    for source in (A, B):
        if scopes[source].in_scope or scopes[source].unmatched:
            write = plan.write(other(source), contacts[other(source)], None)
            _apply_actions(
                plan, write, new[other(source)], scopes[source], other(source), state, options
            )
    _apply_unsubscribe(plan, contacts, state, options, new_contacts=new)

    # drop writes that turned out empty; record the rest
    for side in (A, B):
        write = plan.writes.get(side)
        if write is None:
            continue
        if write.empty:
            del plan.writes[side]
            continue
        reason = "; ".join(dict.fromkeys(write.reasons)) or "changed"
        plan.events.append(
            PlannedEvent(side, write.action, reason, [c.as_dict() for c in write.changes])
        )
    if plan.writes:
        plan.outcome = "updated"
    elif first_match and link is None:
        plan.outcome = "matched"
        plan.events.append(PlannedEvent(A, "matched", f"matched by email {email}; already equal"))
    state.status = "unsubscribed" if state.unsubscribed_on else "in_sync"
    state.status_reason = ""
    state.base_a = snapshot(new_a, ctx.tracked[A])
    state.base_b = snapshot(new_b, ctx.tracked[B])
    plan.contacts = {A: new_a, B: new_b}
    return plan


def _set_value(
    write: SideWrite,
    target_contact: Contact,
    f: Field,
    value: Any,
    old: Any,
    *,
    other_value: Any = None,
    note: str = "",
) -> None:
    """Record a write of ``value`` into field ``f`` (splitting a full name)."""
    if f.parts:
        first_key, last_key = f.parts
        old_first = target_contact.fields.get(first_key)
        old_last = target_contact.fields.get(last_key)
        first, last = split_name(value, old_first, old_last)
        for key, new_part, old_part in ((first_key, first, old_first), (last_key, last, old_last)):
            if new_part != old_part or write.create:
                if new_part is None and write.create:
                    continue
                write.fields[key] = new_part
                target_contact.fields[key] = new_part
        write.changes.append(Change(f.label, old, value, other_value, note))
        return
    write.fields[f.key] = value
    target_contact.fields[f.key] = value
    write.changes.append(Change(f.label, old, value, other_value, note))


def _merge_field(
    plan: PairPlan,
    m: MappingSpec,
    a: Contact,
    b: Contact,
    new: dict[str, Contact],
    state: LinkState,
    scopes: dict[str, Scope],
    options: Options,
) -> None:
    fa, fb = m.field_a, m.field_b
    va, vb = field_value(a, fa), field_value(b, fb)
    flow = {A: m.a_to_b and scopes[A].in_scope, B: m.b_to_a and scopes[B].in_scope}
    conv = {
        A: convert(va, fa, fb) if m.a_to_b else None,  # A's value as B would hold it
        B: convert(vb, fb, fa) if m.b_to_a else None,  # B's value as A would hold it
    }
    current = {A: va, B: vb}

    def equal() -> bool:
        if m.a_to_b:
            return conv[A] == vb
        return conv[B] == va

    def copy(source: str, note: str = "", reason: str = "") -> None:
        target = other(source)
        if conv[source] == current[target]:
            return
        write = plan.write(target, a if target == A else b, None)
        _set_value(
            write,
            new[target],
            m.field(target),
            conv[source],
            current[target],
            other_value=current[target] if note else None,
            note=note,
        )
        write.reasons.append(reason or f"changed in {options.name(source)}")

    base_a, base_b = state.base_a, state.base_b
    has_base = fa.key in base_a and fb.key in base_b
    if equal():
        return
    if not has_base:
        # first match: the winning side wins, but empty never erases filled
        providers = [s for s in (A, B) if flow[s] and current[s] is not None]
        if not providers:
            return
        if len(providers) == 2:
            winner, why = _winner(a, b, options)
            copy(winner, reason=f"first match: {why}")
        else:
            copy(providers[0], reason="first match: filled a value that was empty")
        return
    changed = {A: va != base_a.get(fa.key), B: vb != base_b.get(fb.key)}
    if changed[A] and not changed[B]:
        if flow[A]:
            copy(A)
        return
    if changed[B] and not changed[A]:
        if flow[B]:
            copy(B)
        return
    if not (changed[A] and changed[B]):
        return
    winner, why = _winner(a, b, options)
    if not flow[winner]:
        if not flow[other(winner)]:
            return
        winner, why = other(winner), f"only {options.name(other(winner))} flows for this field"
    copy(winner, note=f"conflict: {why}", reason=f"conflict on {m.field(winner).label}: {why}")


def _apply_actions(
    plan: PairPlan,
    write: SideWrite,
    target_contact: Contact,
    scope: Scope,
    target: str,
    state: LinkState,
    options: Options,
) -> None:
    tags = set(target_contact.tags)
    for rule in scope.matched:
        key = str(rule.id)
        for action in rule.actions:
            _apply_action(write, target_contact, tags, action, rule, options, target, state, key)
    for rule in scope.unmatched:
        key = str(rule.id)
        if not rule.undo_on_unmatch or key not in state.rule_tags:
            continue
        for tag in state.rule_tags.pop(key):
            if _has_tag(tags, tag) and not _tag_still_wanted(tag, scope):
                write.remove_tags.add(tag)
                write.add_tags.discard(tag)
                tags = {t for t in tags if t.casefold() != tag.casefold()}
                write.reasons.append(f"stopped matching {rule.label or 'rule'} → undo tag “{tag}”")
                write.changes.append(Change("tags", tag, None))
    target_contact.tags = frozenset(tags)


def _tag_still_wanted(tag: str, scope: Scope) -> bool:
    return any(
        a.kind == "add_tag" and str(a.value).casefold() == tag.casefold()
        for r in scope.matched
        for a in r.actions
    )


def _apply_action(
    write: SideWrite,
    target_contact: Contact,
    tags: set[str],
    action: ActionSpec,
    rule: RuleSpec,
    options: Options,
    target: str,
    state: LinkState,
    key: str,
) -> None:
    label = rule.label or "rule"
    if action.kind in ("add_tag", "remove_tag"):
        tag = str(action.value)
        if not options.can_tag(target):
            write.reasons.append(f"{label}: {options.name(target)} cannot be tagged")
            return
        if action.kind == "add_tag":
            if rule.undo_on_unmatch:
                recorded = state.rule_tags.setdefault(key, [])
                if tag not in recorded:
                    recorded.append(tag)
            if not _has_tag(tags, tag):
                write.add_tags.add(tag)
                write.remove_tags.discard(tag)
                tags.add(tag)
                write.reasons.append(f"{label} → add tag “{tag}”")
                write.changes.append(Change("tags", None, tag))
        elif _has_tag(tags, tag):
            write.remove_tags.add(tag)
            write.add_tags.discard(tag)
            tags.difference_update({t for t in tags if t.casefold() == tag.casefold()})
            write.reasons.append(f"{label} → remove tag “{tag}”")
            write.changes.append(Change("tags", tag, None))
        return
    if action.field is None:
        return
    current = field_value(target_contact, action.field)
    if current != action.value:
        _set_value(write, target_contact, action.field, action.value, current)
        write.reasons.append(f"{label} → set {action.field.label}")


def _apply_unsubscribe(
    plan: PairPlan,
    contacts: dict[str, Contact | None],
    state: LinkState,
    options: Options,
    new_contacts: dict[str, Contact],
) -> None:
    if not options.sync_unsubscribes:
        return
    for side in (A, B):
        contact = contacts[side]
        if contact is None or not contact.unsubscribed or side in state.unsubscribed_on:
            continue
        target = other(side)
        if not options.can_tag(target) or target not in new_contacts:
            continue
        target_contact = new_contacts[target]
        state.unsubscribed_on += side
        if _has_tag(target_contact.tags, options.unsubscribe_tag):
            continue
        write = plan.write(target, contacts[target], None)
        write.add_tags.add(options.unsubscribe_tag)
        target_contact.tags = frozenset(set(target_contact.tags) | {options.unsubscribe_tag})
        write.reasons.append(
            f"unsubscribed in {options.name(side)} → tagged “{options.unsubscribe_tag}”"
        )
        write.changes.append(Change("tags", None, options.unsubscribe_tag))
