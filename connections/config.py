"""Configuration helpers shared by the admin and the engine.

``apply_defaults`` gives a new connection its starting rules and mappings;
``option_support`` says which way "sync deletions" and "sync unsubscribes"
can work for a pair of apps; ``mapping_rows`` explains each mapping's
effective direction. None of them call an app: they read the connector
classes' declared capabilities and the schema cached on each account.

Deletions and unsubscribes: the event is detected on one side and the
counterpart is *tagged* on the other side. Tagging is a write, so a way
X → Y works only when X can detect the event, Y can hold tags, and the
connection's direction lets data flow from X to Y (a one-way A → B
connection never writes into A, not even a tag).
"""

from __future__ import annotations

from dataclasses import dataclass

from django.db import transaction

from connectors import registry
from connectors.base import Capabilities, Field

from .engine.types import compatibility, describe_flows, effective_flows
from .models import Connection, Direction, FieldMapping, Rule, Side

DRIFT_NOTICE = (
    "Drift → other syncs only newly identified contacts (webhook); contacts that reach "
    "Drift from the other app, and contacts already linked, stay in sync both ways."
)


def capabilities_of(connector_key: str) -> Capabilities | None:
    """The connector's declared capabilities, or None when it cannot be loaded."""
    try:
        return registry.get(connector_key).capabilities
    except (KeyError, ImportError, AttributeError):
        return None


def connector_name(connector_key: str) -> str:
    return dict(registry.choices()).get(connector_key, connector_key)


# ----------------------------------------------------------------- defaults


@transaction.atomic
def apply_defaults(connection: Connection) -> None:
    """One enabled, unconditioned rule per direction the connection allows and
    the app pair's default mappings. Idempotent: existing rules and mappings
    are kept, a field already mapped is never mapped again."""
    for direction, source in ((Direction.A_TO_B, Side.A), (Direction.B_TO_A, Side.B)):
        if connection.flows(source) and not connection.rules.filter(direction=direction).exists():
            Rule.objects.create(connection=connection, direction=direction, enabled=True)

    fields_a = {f.key: f for f in connection.account_a.schema_fields()}
    fields_b = {f.key: f for f in connection.account_b.schema_fields()}
    pairs = registry.default_mappings(list(fields_a.values()), list(fields_b.values()))
    used_a = set(connection.mappings.values_list("field_a", flat=True))
    used_b = set(connection.mappings.values_list("field_b", flat=True))
    for key_a, key_b in pairs:
        if key_a in used_a or key_b in used_b:
            continue
        compat = compatibility(fields_a[key_a], fields_b[key_b])
        if not compat.any:
            continue
        if compat.a_to_b.allowed and compat.b_to_a.allowed:
            direction = Direction.TWO_WAY
        else:
            direction = Direction.A_TO_B if compat.a_to_b.allowed else Direction.B_TO_A
        FieldMapping.objects.create(
            connection=connection,
            field_a=key_a,
            field_b=key_b,
            direction=direction,
            is_default=True,
        )
        used_a.add(key_a)
        used_b.add(key_b)


# ------------------------------------------------------ deletions, unsubscribes


@dataclass(frozen=True)
class OptionSupport:
    #: the ways that work, e.g. ("A → B",): detected on A, tag written on B
    ways: tuple[str, ...]
    #: why it does not work at all, or why a way is missing
    reason: str

    @property
    def possible(self) -> bool:
        return bool(self.ways)

    def describe(self) -> str:
        if not self.ways:
            return f"Not available: {self.reason}"
        text = "Works " + " and ".join(self.ways)
        return f"{text} ({self.reason})" if self.reason else text


OPTIONS = {
    "sync_deletions": ("detect_deletions", "deletions", "deleted"),
    "sync_unsubscribes": ("detect_unsubscribes", "unsubscribes", "unsubscribed"),
}


def _option(connection: Connection, detect_attr: str, noun: str) -> OptionSupport:
    caps = {
        Side.A: capabilities_of(connection.account_a.connector),
        Side.B: capabilities_of(connection.account_b.connector),
    }
    names = {
        Side.A: connector_name(connection.account_a.connector),
        Side.B: connector_name(connection.account_b.connector),
    }
    ways: list[str] = []
    why_not: list[str] = []
    for source, target in ((Side.A, Side.B), (Side.B, Side.A)):
        arrow = f"{source.upper()} → {target.upper()}"
        src, dst = caps[source], caps[target]
        if src is None or dst is None:
            missing = names[source] if src is None else names[target]
            why_not.append(f"{arrow}: the {missing} connector is not installed")
        elif not getattr(src, detect_attr):
            why_not.append(f"{arrow}: {names[source]} cannot detect {noun}")
        elif not dst.tags:
            why_not.append(f"{arrow}: {names[target]} cannot hold tags")
        elif not connection.flows(source):
            why_not.append(f"{arrow}: the connection does not sync {arrow}")
        else:
            detail = f"{arrow} ({noun} in {names[source]} tag the contact in {names[target]})"
            ways.append(detail)
    return OptionSupport(tuple(ways), "; ".join(why_not))


def option_support(connection: Connection) -> dict[str, OptionSupport]:
    """For ``sync_deletions`` and ``sync_unsubscribes``: which ways work here."""
    return {
        option: _option(connection, detect_attr, noun)
        for option, (detect_attr, noun, _adj) in OPTIONS.items()
    }


def has_drift_side(connection: Connection) -> bool:
    return "drift" in (connection.account_a.connector, connection.account_b.connector)


# ------------------------------------------------------------------ mappings


@dataclass(frozen=True)
class MappingRow:
    mapping: FieldMapping
    field_a: Field | None
    field_b: Field | None
    flows: str
    problem: str


def mapping_status(
    field_a: Field | None,
    field_b: Field | None,
    requested: str,
    connection_direction: str,
    *,
    enabled: bool = True,
) -> tuple[str, str]:
    """(effective direction text, problem or "") for one mapping."""
    if field_a is None or field_b is None:
        return "not synced", "field not in the account's schema (test the account to refresh it)"
    a_to_b, b_to_a = effective_flows(field_a, field_b, requested, connection_direction)
    text = describe_flows(a_to_b, b_to_a)
    if not enabled:
        return "not synced", "disabled"
    compat = compatibility(field_a, field_b)
    if not compat.any:
        problem = compat.a_to_b.reason
        if compat.b_to_a.reason and compat.b_to_a.reason != problem:
            problem = f"{problem}; {compat.b_to_a.reason}"
        return text, problem
    notes = [f.reason for f in (compat.a_to_b, compat.b_to_a) if f.reason]
    if not (a_to_b or b_to_a):
        return text, "the connection's direction excludes this mapping's direction"
    if requested == Direction.TWO_WAY and not (a_to_b and b_to_a):
        return text, "; ".join(notes) or "narrowed by the connection's direction"
    return text, ""


def mapping_rows(connection: Connection) -> list[MappingRow]:
    fields_a = {f.key: f for f in connection.account_a.schema_fields()}
    fields_b = {f.key: f for f in connection.account_b.schema_fields()}
    rows = []
    for mapping in connection.mappings.all():
        fa, fb = fields_a.get(mapping.field_a), fields_b.get(mapping.field_b)
        flows, problem = mapping_status(
            fa, fb, mapping.direction, connection.direction, enabled=mapping.enabled
        )
        rows.append(MappingRow(mapping, fa, fb, flows, problem))
    return rows
