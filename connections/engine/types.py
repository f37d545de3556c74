"""Which field may flow into which, and how values convert (DESIGN.md §3).

Pure: used by the admin to validate mappings and show their effective
direction, and by the engine to convert values on the way.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from connectors.base import Field, FieldType

#: types that may be written into a text field, one way only: text cannot be
#: trusted to parse back into them
TO_TEXT_ONE_WAY = frozenset(
    {
        FieldType.NUMBER,
        FieldType.BOOLEAN,
        FieldType.DATE,
        FieldType.DATETIME,
        FieldType.EMAIL,
        FieldType.PHONE,
        FieldType.URL,
        FieldType.CHOICE,
        FieldType.MULTICHOICE,
    }
)


@dataclass(frozen=True)
class Flow:
    allowed: bool
    reason: str = ""


def can_flow(src: Field, dst: Field) -> Flow:
    """May values of ``src`` be written into ``dst``?"""
    if dst.read_only:
        return Flow(False, f"“{dst.label}” is read-only")
    if src.type == dst.type:
        if src.type in (FieldType.CHOICE, FieldType.MULTICHOICE) and dst.choices:
            missing = [c for c in src.choices if c not in dst.choices]
            if not src.choices:
                return Flow(False, f"“{src.label}” has no listed options to check against")
            if missing:
                shown = ", ".join(missing[:5])
                return Flow(False, f"options of “{src.label}” missing in “{dst.label}”: {shown}")
        return Flow(True)
    if dst.type == FieldType.TEXT and src.type in TO_TEXT_ONE_WAY:
        return Flow(True, "one-way: text cannot be trusted to parse back")
    if {src.type, dst.type} == {FieldType.DATE, FieldType.DATETIME}:
        # dates are kept as midnight UTC and datetimes compared in UTC, so the
        # pair round-trips; a datetime's time of day is dropped going to a date
        return Flow(True)
    return Flow(False, f"a {src.type} field cannot be written into a {dst.type} field")


@dataclass(frozen=True)
class Compatibility:
    a_to_b: Flow
    b_to_a: Flow

    @property
    def any(self) -> bool:
        return self.a_to_b.allowed or self.b_to_a.allowed

    @property
    def reason(self) -> str:
        return self.a_to_b.reason or self.b_to_a.reason


def compatibility(field_a: Field, field_b: Field) -> Compatibility:
    return Compatibility(can_flow(field_a, field_b), can_flow(field_b, field_a))


def effective_flows(
    field_a: Field, field_b: Field, requested: str, connection_direction: str
) -> tuple[bool, bool]:
    """(A→B, B→A) after type rules, the mapping's and the connection's direction."""
    compat = compatibility(field_a, field_b)
    a_to_b = compat.a_to_b.allowed and requested in ("two_way", "a_to_b")
    b_to_a = compat.b_to_a.allowed and requested in ("two_way", "b_to_a")
    if connection_direction == "a_to_b":
        b_to_a = False
    elif connection_direction == "b_to_a":
        a_to_b = False
    return a_to_b, b_to_a


def describe_flows(a_to_b: bool, b_to_a: bool) -> str:
    if a_to_b and b_to_a:
        return "A ↔ B"
    if a_to_b:
        return "A → B"
    if b_to_a:
        return "B → A"
    return "not synced"


# ------------------------------------------------------------- conversions


def convert(value: Any, src: Field, dst: Field) -> Any:
    """Convert a canonical value of ``src`` into the canonical value for ``dst``."""
    if value is None:
        return None
    if src.type == dst.type:
        return value
    if dst.type == FieldType.TEXT:
        return to_text(value, src.type)
    if src.type == FieldType.DATE and dst.type == FieldType.DATETIME:
        return f"{value}T00:00:00Z"
    if src.type == FieldType.DATETIME and dst.type == FieldType.DATE:
        return str(value)[:10]
    raise ValueError(f"cannot convert {src.type} to {dst.type}")


def to_text(value: Any, src_type: FieldType) -> str | None:
    if value is None:
        return None
    if src_type == FieldType.BOOLEAN:
        return "Yes" if value else "No"
    if src_type == FieldType.MULTICHOICE:
        return ", ".join(value) or None
    if src_type == FieldType.NUMBER:
        number = float(value)
        return str(int(number)) if number.is_integer() else repr(number)
    return str(value)


# ---------------------------------------------------------------- parsing


def parse_value(raw: str, field: Field) -> Any:
    """A value typed by a person (rule condition or action) as canonical."""
    raw = raw.strip()
    if raw == "":
        return None
    if field.type == FieldType.NUMBER:
        number = float(raw)
        return int(number) if number.is_integer() else number
    if field.type == FieldType.BOOLEAN:
        lowered = raw.casefold()
        if lowered in ("true", "yes", "1", "on"):
            return True
        if lowered in ("false", "no", "0", "off"):
            return False
        raise ValueError(f"“{raw}” is not yes/no")
    if field.type == FieldType.DATE:
        return dt.date.fromisoformat(raw).isoformat()
    if field.type == FieldType.DATETIME:
        parsed = dt.datetime.fromisoformat(raw.replace("Z", "+00:00"))
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if field.type == FieldType.CHOICE and field.choices and raw not in field.choices:
        raise ValueError(f"“{raw}” is not one of: {', '.join(field.choices)}")
    if field.type == FieldType.MULTICHOICE:
        return sorted(v.strip() for v in raw.split(",") if v.strip())
    return raw
