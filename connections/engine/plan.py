"""Deciding what to do with one contact pair. Pure: no HTTP, no database.

``plan_pair(a, b, link, ctx)`` takes the contact as it is now on each side
(or ``None``), the binding with the base values of the last sync, and the
connection's mappings, rules and options, and returns a ``PairPlan``: the
writes for each side, the new state of the binding (as it will be once the
writes succeed) and the events to record, each with its reason.

It runs in phases, each a function of its own: deletion, identity, scope,
then either create (one side only) or merge, rules and finish (both sides).
The first phase that decides the pair ends it. How bases make echoes
harmless is explained in ``state``; the per-field merge is in ``merge``, the
rules' actions in ``rule_actions``.
"""

from __future__ import annotations

from connectors.base import Contact, normalize_email

from .context import A, B, Context, MappingSpec, Options, other
from .merge import merge_fields, set_value
from .rule_actions import apply_actions, apply_rules, apply_unsubscribe
from .rules import Scope, evaluate
from .state import (
    LinkState,
    Outcome,
    PairPlan,
    PlannedEvent,
    field_value,
    has_tag,
    is_echo,
    snapshot,
)
from .types import convert

__all__ = [
    "A",
    "B",
    "Context",
    "LinkState",
    "MappingSpec",
    "Options",
    "Outcome",
    "PairPlan",
    "is_echo",
    "other",
    "plan_pair",
    "snapshot",
]


def plan_pair(
    a: Contact | None, b: Contact | None, link: LinkState | None, ctx: Context
) -> PairPlan:
    """Decide everything for one contact pair. See the module docstring."""
    state = link.copy() if link else LinkState()
    plan = PairPlan(state, contacts={A: a, B: b})
    contacts = {A: a, B: b}
    if plan_deletion(plan, contacts, link is not None, ctx.options):
        return plan
    if plan_identity(plan, a, b, ctx.options):
        return plan
    scopes = plan_scopes(contacts, ctx)
    if a is None or b is None:
        plan_create(plan, contacts, scopes, ctx)
        return plan
    new = {A: _copy(a), B: _copy(b)}
    merge_fields(plan, a, b, new, scopes, ctx)
    apply_rules(plan, contacts, new, scopes, ctx.options)
    finish_merge(plan, new, ctx, first_seen=link is None)
    return plan


def _copy(c: Contact) -> Contact:
    return Contact(c.id, c.email, dict(c.fields), c.tags, c.created_at, c.updated_at, c.version)


def plan_deletion(
    plan: PairPlan, contacts: dict[str, Contact | None], linked: bool, options: Options
) -> bool:
    """Never delete: tag the counterpart of a deleted contact for review, and
    mark the binding so it is never re-created. A binding already marked
    deleted is never synced again. True when this decided the pair."""
    state = plan.link
    for side in (A, B):
        gone = contacts[side]
        if gone is None or not gone.deleted:
            continue
        if not linked or not state.id(side):
            plan.outcome = Outcome.SKIPPED
            return True
        deleted_status = f"deleted_{side}"
        if state.status == deleted_status:
            plan.outcome = Outcome.SKIPPED
            return True
        state.status = deleted_status
        state.status_reason = f"deleted in {options.name(side)}"
        plan.outcome = Outcome.DELETED
        target = other(side)
        counterpart = contacts[target]
        target_id = state.id(target)
        deleted_in = f"deleted in {options.name(side)}"
        if not options.sync_deletions:
            why = f"{deleted_in}; “Sync deletions” is off, so nothing is tagged"
            plan.events.append(PlannedEvent(side, "skipped", why))
        elif not options.can_tag(target):
            why = f"{deleted_in}; {options.name(target)} cannot be tagged"
            plan.events.append(PlannedEvent(side, "skipped", why))
        elif target_id and (counterpart is None or not counterpart.deleted):
            tagged = f"{deleted_in} → tagged “{options.trash_tag}” for review"
            tags = counterpart.tags if counterpart else frozenset()
            if not has_tag(tags, options.trash_tag):
                write = plan.write(target, counterpart, state.email or None)
                write.id = target_id
                write.add_tags.add(options.trash_tag)
                write.reasons.append(tagged)
            plan.events.append(
                PlannedEvent(target, "trashed", f"{tagged}; it will not be re-created")
            )
        return True
    if linked and state.status in ("deleted_a", "deleted_b"):
        plan.outcome = Outcome.SKIPPED
        return True
    return False


def plan_identity(plan: PairPlan, a: Contact | None, b: Contact | None, options: Options) -> bool:
    """Take the ids and the email into the binding; exclude a contact with no
    email while "Avoid duplicates" is on (unless it is bound already, by ids).
    True when this decided the pair."""
    state = plan.link
    email = normalize_email((a.email if a else None) or (b.email if b else None))
    if email:
        state.email = email
    if a is not None:
        state.id_a = a.id
    if b is not None:
        state.id_b = b.id
    linked_both = bool(state.id_a and state.id_b)
    if email or not options.avoid_duplicates or linked_both:
        return False
    side = A if a is not None else B
    state.status = "excluded"
    state.status_reason = "no email address (“Avoid duplicates” is on)"
    plan.outcome = Outcome.EXCLUDED
    plan.events.append(PlannedEvent(side, "excluded", state.status_reason))
    return True


def plan_scopes(contacts: dict[str, Contact | None], ctx: Context) -> dict[str, Scope]:
    """Per direction, which rules the source contact matches (none when the
    connection does not flow that way)."""
    scopes: dict[str, Scope] = {}
    for source in (A, B):
        contact = contacts[source]
        if contact is None or not ctx.options.flows(source):
            scopes[source] = Scope()
        else:
            exists = contacts[other(source)] is not None
            scopes[source] = evaluate(ctx.rules_from(source), contact, exists)
    return scopes


def plan_create(
    plan: PairPlan, contacts: dict[str, Contact | None], scopes: dict[str, Scope], ctx: Context
) -> None:
    """One side only: create the contact on the other side when a rule of its
    direction matches; otherwise it is out of scope (its base is kept, so a
    later change that brings it into scope is seen)."""
    options, state = ctx.options, plan.link
    source = A if contacts[A] is not None else B
    target = other(source)
    contact = contacts[source]
    assert contact is not None
    scope = scopes[source]
    if not scope.in_scope:
        plan.outcome = Outcome.OUT_OF_SCOPE
        state.set_base(source, snapshot(contact, ctx.tracked[source]))
        return
    write = plan.write(target, None, contact.email)
    new = Contact(id="", email=contact.email, fields={}, tags=frozenset())
    for m in ctx.mappings:
        if not m.flows_from(source):
            continue
        value = field_value(contact, m.field(source))
        if value is None:
            continue
        converted = convert(value, m.field(source), m.field(target))
        set_value(write, new, m.field(target), converted, None)
    apply_actions(write, new, scope, target, state, options)
    apply_unsubscribe(plan, contacts, state, options, new_contacts={target: new})
    write.reasons.insert(0, f"new in {options.name(source)}; {scope.reason()}")
    state.status = "pending"
    state.status_reason = ""
    plan.outcome = Outcome.CREATED
    plan.events.append(
        PlannedEvent(
            target, "created", "; ".join(write.reasons), [c.as_dict() for c in write.changes]
        )
    )
    state.set_base(source, snapshot(contact, ctx.tracked[source]))
    state.set_base(target, snapshot(new, ctx.tracked[target]))
    plan.contacts[target] = new


def finish_merge(
    plan: PairPlan, new: dict[str, Contact], ctx: Context, *, first_seen: bool
) -> None:
    """After merge and rules: drop writes that turned out empty, record an
    event for each remaining one, and take the bases from the contacts as
    they will be once the writes land (so the writes' echoes cause nothing).
    A pair seen for the first time that needs no write is "matched"."""
    state = plan.link
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
        plan.outcome = Outcome.UPDATED
    elif first_seen:
        plan.outcome = Outcome.MATCHED
        plan.events.append(
            PlannedEvent(A, "matched", f"matched by email {state.email}; already equal")
        )
    state.status = "unsubscribed" if state.unsubscribed_on else "in_sync"
    state.status_reason = ""
    state.base_a = snapshot(new[A], ctx.tracked[A])
    state.base_b = snapshot(new[B], ctx.tracked[B])
    plan.contacts = {A: new[A], B: new[B]}
