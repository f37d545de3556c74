"""Rule conditions, evaluated on the source contact. Pure."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from connectors.base import Contact, Field, FieldType

from .types import parse_value

EXISTS_IN_OTHER = "exists_in_other"
HAS_TAG = "has_tag"
HAS_NO_TAG = "has_no_tag"


@dataclass(frozen=True)
class ConditionSpec:
    operator: str
    field: Field | None = None
    value: str = ""


@dataclass(frozen=True)
class ActionSpec:
    kind: str  # add_tag | remove_tag | set_field
    value: Any
    field: Field | None = None


@dataclass(frozen=True)
class RuleSpec:
    id: int
    source: str  # "a" or "b": the side whose contacts the rule reads
    conditions: tuple[ConditionSpec, ...] = ()
    actions: tuple[ActionSpec, ...] = ()
    undo_on_unmatch: bool = False
    label: str = ""

    @property
    def update_only(self) -> bool:
        return any(c.operator == EXISTS_IN_OTHER for c in self.conditions)


@dataclass
class Scope:
    """Which rules of one direction a contact matches."""

    matched: list[RuleSpec] = field(default_factory=list)
    unmatched: list[RuleSpec] = field(default_factory=list)

    @property
    def in_scope(self) -> bool:
        return bool(self.matched)

    def reason(self) -> str:
        if not self.matched:
            return "no rule matched"
        return "rule matched: " + ", ".join(r.label or f"#{r.id}" for r in self.matched)


def _fold(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def condition_holds(cond: ConditionSpec, contact: Contact, exists_in_other: bool) -> bool:
    op = cond.operator
    if op == EXISTS_IN_OTHER:
        return exists_in_other
    if op in (HAS_TAG, HAS_NO_TAG):
        wanted = cond.value.strip().casefold()
        has = any(t.casefold() == wanted for t in contact.tags)
        return has if op == HAS_TAG else not has
    if cond.field is None:
        return False
    actual = contact.fields.get(cond.field.key)
    if op == "empty":
        return actual in (None, "", [])
    if op == "set":
        return actual not in (None, "", [])
    if op == "in":
        options = {v.strip().casefold() for v in cond.value.split(",") if v.strip()}
        values = actual if isinstance(actual, list) else [actual]
        return any(_fold(str(v)) in options for v in values if v is not None)
    if op == "contains":
        if isinstance(actual, list):
            return any(cond.value.casefold() in str(v).casefold() for v in actual)
        return actual is not None and cond.value.casefold() in str(actual).casefold()
    try:
        expected = parse_value(cond.value, cond.field)
    except ValueError:
        return False
    if op == "eq":
        return _fold(actual) == _fold(expected)
    if op == "ne":
        return _fold(actual) != _fold(expected)
    if actual is None or expected is None:
        return False
    if cond.field.type in (FieldType.TEXT, FieldType.CHOICE, FieldType.EMAIL):
        actual, expected = str(actual).casefold(), str(expected).casefold()
    try:
        if op == "lt":
            return actual < expected
        if op == "lte":
            return actual <= expected
        if op == "gt":
            return actual > expected
        if op == "gte":
            return actual >= expected
    except TypeError:
        return False
    return False


def rule_matches(rule: RuleSpec, contact: Contact, exists_in_other: bool) -> bool:
    return all(condition_holds(c, contact, exists_in_other) for c in rule.conditions)


def evaluate(rules: list[RuleSpec], contact: Contact, exists_in_other: bool) -> Scope:
    scope = Scope()
    for rule in rules:
        (scope.matched if rule_matches(rule, contact, exists_in_other) else scope.unmatched).append(
            rule
        )
    return scope
