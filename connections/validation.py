"""What makes a mapping, a condition or an action workable, in one place.

The models' ``clean()`` call these, so a mapping or rule made any way (the
admin form, the shell, a data migration, a future API) is held to the same
rules; the admin forms get them through ``ModelForm``'s model validation.
Each function takes the fields of the side(s) involved, as last read from
the app (``Account.schema``), and raises ``ValidationError`` with the field
it is about.

An account whose schema has not been read yet (never tested) cannot be
checked here: the run checks again when it reads the schema and says in the
run's message what it skipped and why.
"""

from __future__ import annotations

from collections.abc import Callable

from django.core.exceptions import ValidationError

from connectors.base import Field, FieldType

from .engine.types import compatibility, parse_value

#: types a condition may compare with < and >
ORDERED_TYPES = {FieldType.NUMBER, FieldType.DATE, FieldType.DATETIME}


def check_mapping(
    key_a: str,
    key_b: str,
    direction: str,
    fields_a: dict[str, Field],
    fields_b: dict[str, Field],
    arrow: Callable[[str], str] | None = None,
) -> None:
    """``arrow``: a direction in the apps' names (``Connection.arrow``);
    without it, "A → B"."""
    from .models import Direction

    arrow = arrow or _plain_arrow

    if not (key_a and key_b) or not (fields_a and fields_b):
        return
    fa, fb = fields_a.get(key_a), fields_b.get(key_b)
    if fa is None or fb is None:
        raise ValidationError("Pick fields the accounts have (test the account to refresh).")
    compat = compatibility(fa, fb)
    if not compat.any:
        reasons = "; ".join(
            dict.fromkeys(r for r in (compat.a_to_b.reason, compat.b_to_a.reason) if r)
        )
        raise ValidationError(f"“{fa.label}” and “{fb.label}” cannot be mapped: {reasons}.")
    if direction == Direction.A_TO_B and not compat.a_to_b.allowed:
        raise ValidationError(f"{arrow(Direction.A_TO_B)} cannot work: {compat.a_to_b.reason}.")
    if direction == Direction.B_TO_A and not compat.b_to_a.allowed:
        raise ValidationError(f"{arrow(Direction.B_TO_A)} cannot work: {compat.b_to_a.reason}.")


def _plain_arrow(direction: str) -> str:
    return {"a_to_b": "A → B", "b_to_a": "B → A"}.get(direction, "A ↔ B")


def _check_value(field: Field | None, raw: str, *, many: bool = False) -> None:
    if field is None:
        return
    try:
        for part in raw.split(",") if many else [raw]:
            parse_value(part, field)
    except ValueError as exc:
        raise ValidationError(
            {"value": f"Not a valid value for “{field.label}” ({field.type}): {exc}"}
        ) from None


def check_condition(operator: str, key: str, value: str, fields: dict[str, Field]) -> None:
    """``fields``: the fields of the side the rule reads."""
    from .models import Condition

    ops = Condition.Operator
    if not operator or operator == ops.EXISTS_IN_OTHER:
        return
    if operator in (ops.HAS_TAG, ops.HAS_NO_TAG):
        if not value.strip():
            raise ValidationError(
                {"value": "Which tag? A tag condition needs the tag as its value."}
            )
        return
    if not key:
        raise ValidationError({"field": "Pick the field this condition looks at."})
    field = fields.get(key)
    if fields and field is None:
        raise ValidationError({"field": f"The app has no field “{key}” (test the account?)."})
    if operator in (ops.IS_EMPTY, ops.IS_SET):
        return
    if not value.strip():
        raise ValidationError({"value": "This comparison needs a value."})
    ordered = operator in (ops.LT, ops.LTE, ops.GT, ops.GTE)
    if field is not None and ordered and field.type not in ORDERED_TYPES:
        raise ValidationError(
            {"operator": f"“{field.label}” is {field.type}: < and > need a number or a date."}
        )
    if operator != ops.CONTAINS:
        _check_value(field, value, many=operator == ops.ONE_OF)


def check_action(
    kind: str, key: str, value: str, fields: dict[str, Field], can_tag: bool | None
) -> None:
    """``fields``, ``can_tag``: of the side the rule writes (None: unknown)."""
    from .models import Action

    if not kind:
        return
    if kind in (Action.Kind.ADD_TAG, Action.Kind.REMOVE_TAG):
        if can_tag is False:
            raise ValidationError({"kind": "The target app cannot hold tags."})
        if not value.strip():
            raise ValidationError({"value": "Which tag?"})
        return
    if not key:
        raise ValidationError({"field": "Pick the field of the target app to set."})
    field = fields.get(key)
    if fields and field is None:
        raise ValidationError({"field": f"The target app has no field “{key}”."})
    if field is not None and field.read_only:
        raise ValidationError({"field": f"“{field.label}” is read-only in the target app."})
    _check_value(field, value)
