"""Setting up a run: the connection's rows turned into what planning reads.

Builds the connectors, refreshes each account's field schema (the admin
offers mappings from it), and turns the enabled mappings and rules into
specs against the fields the apps have now. A mapping or action whose field
is gone, whose types no longer fit, or whose value no longer parses, is
skipped with a warning on the run rather than failing it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import replace
from typing import Any

from django.conf import settings
from django.utils import timezone

from connectors.base import Connector, Field, FieldType

from ..models import Account, Connection, FieldMapping, Rule
from .context import A, B, Context, MappingSpec, Options, other
from .rules import ActionSpec, ConditionSpec, RuleSpec
from .types import compatibility, effective_flows, parse_value

Fields = dict[str, dict[str, Field]]


def build_connectors(conn: Connection) -> dict[str, Connector]:
    return {
        A: conn.account_a.build_connector(conn.settings_a),
        B: conn.account_b.build_connector(conn.settings_b),
    }


def build_context(
    conn: Connection, connectors: dict[str, Connector], warnings: list[str], *, full: bool = False
) -> Context:
    fields = refresh_fields(conn, connectors, full=full)
    caps = {s: connectors[s].capabilities for s in (A, B)}
    options = Options(
        direction=conn.direction,
        conflict_policy=conn.conflict_policy,
        avoid_duplicates=conn.avoid_duplicates,
        sync_deletions=conn.sync_deletions,
        trash_tag=conn.trash_tag,
        sync_unsubscribes=conn.sync_unsubscribes,
        unsubscribe_tag=conn.unsubscribe_tag,
        can_tag_a=caps[A].tags,
        can_tag_b=caps[B].tags,
        name_a=connectors[A].name,
        name_b=connectors[B].name,
    )
    return Context(
        mapping_specs(conn, fields, warnings), rule_specs(conn, fields, warnings), options
    )


#: a full sync reads each app's schema again unless it was read this recently
FULL_SYNC_SCHEMA_AGE = dt.timedelta(minutes=5)


def refresh_fields(
    conn: Connection, connectors: dict[str, Connector], *, full: bool = False
) -> Fields:
    """Each side's fields by key, saved on its account when they changed.

    The schema is read from the app when the account's copy is older than
    ``DRIFTSYNC_SCHEMA_MAX_AGE`` (an hour by default), or on a full sync
    older than ``FULL_SYNC_SCHEMA_AGE`` (the schema the person just tested
    and mapped against, minutes before pressing Start, is not read again);
    otherwise the account's copy is handed to the connector, so an idle run
    costs no schema request. A field deleted in the app within that hour
    makes a write fail for that contact (with the app's reason), not the run.
    """
    fields: Fields = {}
    now = timezone.now()
    max_age = dt.timedelta(seconds=settings.DRIFTSYNC_SCHEMA_MAX_AGE)
    if full:
        max_age = min(max_age, FULL_SYNC_SCHEMA_AGE)
    for side in (A, B):
        account = conn.account(side)
        fresh = account.checked_at is not None and now - account.checked_at < max_age
        if fresh and account.schema:
            cached = account.schema_fields()
            connectors[side].use_schema(cached)
            fields[side] = {f.key: f for f in cached}
            continue
        listed = connectors[side].fields()
        fields[side] = {f.key: f for f in listed}
        schema = Account.dump_schema(listed)
        updates: dict[str, Any] = {"checked_at": now}
        if schema != account.schema:
            updates["schema"] = schema
        Account.objects.filter(pk=account.pk).update(**updates)
        account.checked_at = now
    return fields


def mapping_specs(conn: Connection, fields: Fields, warnings: list[str]) -> list[MappingSpec]:
    mappings = []
    for m in FieldMapping.objects.filter(connection=conn, enabled=True):
        fa, fb = fields[A].get(m.field_a), fields[B].get(m.field_b)
        if fa is None or fb is None:
            missing = m.field_a if fa is None else m.field_b
            warnings.append(f"mapping {m}: field {missing!r} no longer exists; skipped")
            continue
        a_to_b, b_to_a = effective_flows(fa, fb, m.direction, conn.direction)
        if a_to_b or b_to_a:
            mappings.append(MappingSpec(fa, fb, a_to_b, b_to_a))
            continue
        # made before validation, or a field's type changed in the app since
        compat = compatibility(fa, fb)
        wanted_a, wanted_b = effective_flows(
            replace(fa, type=FieldType.TEXT, read_only=False, choices=()),
            replace(fb, type=FieldType.TEXT, read_only=False, choices=()),
            m.direction,
            conn.direction,
        )
        if wanted_a or wanted_b:
            why = compat.a_to_b.reason if wanted_a else compat.b_to_a.reason
            warnings.append(f"mapping {m}: {why}; skipped")
    return mappings


def rule_specs(conn: Connection, fields: Fields, warnings: list[str]) -> list[RuleSpec]:
    rules = []
    for rule in Rule.objects.filter(connection=conn, enabled=True).prefetch_related(
        "conditions", "actions"
    ):
        rule.connection = conn  # its name says the apps': no query for them again
        source = rule.source_side
        target = other(source)
        conditions = tuple(
            ConditionSpec(c.operator, fields[source].get(c.field), c.value)
            for c in rule.conditions.all()
        )
        actions = []
        for act in rule.actions.all():
            target_field = fields[target].get(act.field) if act.field else None
            value: Any = act.value
            if act.kind == "set_field":
                if target_field is None or target_field.read_only:
                    warnings.append(f"{rule}: cannot set {act.field!r}; action skipped")
                    continue
                try:
                    value = parse_value(act.value, target_field)
                except ValueError as exc:
                    warnings.append(f"{rule}: {exc}; action skipped")
                    continue
            actions.append(ActionSpec(act.kind, value, target_field))
        rules.append(
            RuleSpec(rule.pk, source, conditions, tuple(actions), rule.undo_on_unmatch, str(rule))
        )
    return rules
