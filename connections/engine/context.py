"""What planning is given about a connection: sides, mappings, rules, options. Pure.

Built from the database rows once per run (``setup.build_context``) and then
only read, so the decisions in ``plan`` depend on plain values alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from connectors.base import Field

from .rules import RuleSpec

A, B = "a", "b"


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

    def keys_read(self, side: str) -> frozenset[str]:
        """Field keys of ``side`` that planning reads: tracked (mapped or in a
        rule's condition), the parts of a full name, and fields actions set."""
        keys: set[str] = set()
        for f in self.tracked[side]:
            keys.add(f.key)
            keys.update(f.parts)
        for rule in self.rules:
            if rule.source != side:
                for action in rule.actions:
                    if action.field is not None:
                        keys.add(action.field.key)
                        keys.update(action.field.parts)
        return frozenset(keys)
