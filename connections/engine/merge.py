"""The three-way merge of one mapped field between two bound contacts. Pure.

Per field, against the base in the binding: changed on one side only → copy
it to the other; changed on both to the same value → nothing; changed on
both differently → the connection's conflict policy decides, and the change
records both values. At the first match there is no base: the winning app's
value wins, but an empty value never erases a filled one.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from connectors.base import Contact, Field

from .context import A, B, Context, MappingSpec, Options, other
from .names import split_name
from .rules import Scope
from .state import Change, LinkState, PairPlan, SideWrite, field_value
from .types import convert


def conflict_winner(a: Contact, b: Contact, options: Options) -> tuple[str, str]:
    """The side whose value wins a conflict, and why (for the event)."""
    policy = options.conflict_policy
    if policy == "b_wins":
        return B, f"{options.name_b} wins (connection setting)"
    if policy == "most_recent":
        return most_recent(a, b, options)
    return A, f"{options.name_a} wins (connection setting)"


def most_recent(a: Contact, b: Contact, options: Options) -> tuple[str, str]:
    """The side changed last, by the apps' change times (Drift's is its
    webhook's time). A side with no time at all loses to one with a time;
    with no time on either side (or the same time), A wins."""
    ta, tb = a.updated_at, b.updated_at
    if ta is None and tb is None:
        return A, f"neither app says when it changed; {options.name_a} wins"
    if ta is None or (tb is not None and tb > ta):
        return B, f"most recent change, in {options.name_b} ({_when(tb, ta, options.name_a)})"
    return A, f"most recent change, in {options.name_a} ({_when(ta, tb, options.name_b)})"


def _when(newer: dt.datetime | None, older: dt.datetime | None, other_app: str) -> str:
    def utc(t: dt.datetime) -> str:
        return t.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")

    at = utc(newer) if newer else "?"
    if older is None:
        return f"at {at}; {other_app} gives no change time"
    if older == newer:
        return f"at {at}, the same time as in {other_app}"
    return f"at {at}, after {other_app}'s at {utc(older)}"


def set_value(
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


def merge_field(
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
        set_value(
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
            winner, why = conflict_winner(a, b, options)
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
    winner, why = conflict_winner(a, b, options)
    if not flow[winner]:
        if not flow[other(winner)]:
            return
        winner, why = other(winner), f"only {options.name(other(winner))} flows for this field"
    copy(winner, note=f"conflict: {why}", reason=f"conflict on {m.field(winner).label}: {why}")


def merge_fields(
    plan: PairPlan,
    a: Contact,
    b: Contact,
    new: dict[str, Contact],
    scopes: dict[str, Scope],
    ctx: Context,
) -> None:
    """Merge every mapped field of a bound pair into ``plan`` (writes) and ``new``
    (the contacts as they will be once the writes land)."""
    for m in ctx.mappings:
        merge_field(plan, m, a, b, new, plan.link, scopes, ctx.options)
