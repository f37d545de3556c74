"""Rules: their conditions on the source side and actions on the target
side, each form bound to that side's fields."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse

from ..config import capabilities_of
from ..forms import ActionForm, ConditionForm
from ..models import Action, Condition, Direction, Rule, Side

RULE_DIRECTIONS = [Direction.A_TO_B, Direction.B_TO_A]


def describe_condition(rule: Rule, condition: Condition) -> str:
    """'Birthday is set', 'has tag vip': the source app's field labels."""
    ops = Condition.Operator
    if condition.operator == ops.EXISTS_IN_OTHER:
        return f"already exists in {rule.connection.side_name(rule.target_side)}"
    if condition.operator in (ops.HAS_TAG, ops.HAS_NO_TAG):
        return f"{condition.get_operator_display()} “{condition.value}”"
    field = rule.connection.field_label(rule.source_side, condition.field)
    value = "" if condition.operator in (ops.IS_EMPTY, ops.IS_SET) else f" “{condition.value}”"
    return f"{field} {condition.get_operator_display()}{value}"


def describe_action(rule: Rule, action: Action) -> str:
    if action.kind == Action.Kind.SET_FIELD:
        field = rule.connection.field_label(rule.target_side, action.field)
        return f"set {field} to “{action.value}”"
    return f"{action.get_kind_display()} “{action.value}”"


def if_then(rule: Rule) -> str:
    """'IF a Google Contacts contact: Birthday is set THEN sync it to
    HubSpot and set Lifecycle Stage to “lead”'."""
    conn = rule.connection
    source, target = conn.side_name(rule.source_side), conn.side_name(rule.target_side)
    conditions = " and ".join(describe_condition(rule, c) for c in rule.conditions.all())
    actions = [describe_action(rule, a) for a in rule.actions.all()]
    when = f"IF a {source} contact: {conditions}" if conditions else f"IF any {source} contact"
    then = f"THEN sync it to {target}"
    if actions:
        then = f"{then} and {', '.join(actions)}"
    off = "" if rule.enabled else " (disabled)"
    return f"{when} {then}{off}"


class ConditionInline(admin.TabularInline):
    model = Condition
    form = ConditionForm
    fields = ["operator", "field", "value"]
    extra = 1
    verbose_name = "condition"
    verbose_name_plural = "IF (conditions, all must hold)"

    def get_formset(self, request: HttpRequest, obj: Rule | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        fields: dict[str, Any] = {}
        if obj is not None:
            account = obj.connection.account(obj.source_side)
            fields = {f.key: f for f in account.schema_fields()}
        kwargs["form"] = type("BoundConditionForm", (self.form,), {"side_fields": fields})
        return super().get_formset(request, obj, **kwargs)


class ActionInline(admin.TabularInline):
    model = Action
    form = ActionForm
    fields = ["kind", "field", "value"]
    extra = 1
    verbose_name = "action"
    verbose_name_plural = "THEN (actions, besides syncing the contact)"

    def get_formset(self, request: HttpRequest, obj: Rule | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        attrs: dict[str, Any] = {"side_fields": {}, "side_can_tag": None}
        if obj is not None:
            target = Side.B if obj.source_side == Side.A else Side.A
            account = obj.connection.account(target)
            attrs["side_fields"] = {f.key: f for f in account.schema_fields()}
            caps = capabilities_of(account.connector)
            attrs["side_can_tag"] = caps.tags if caps else None
        kwargs["form"] = type("BoundActionForm", (self.form,), attrs)
        return super().get_formset(request, obj, **kwargs)


class RuleInline(admin.TabularInline):
    """A connection's rules, summarized; each opens on its own page."""

    model = Rule
    fields = ["name", "direction", "position", "enabled", "undo_on_unmatch", "summary"]
    readonly_fields = ["summary"]
    extra = 0
    show_change_link = True

    #: what a view-only person reads: the direction in the apps' names
    SHOWN = ["name", "direction_shown", "position", "enabled", "undo_on_unmatch", "summary"]

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return self.SHOWN
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return self.SHOWN
        return super().get_readonly_fields(request, obj)

    @admin.display(description="Direction")
    def direction_shown(self, rule: Rule) -> str:
        return rule.connection.arrow(rule.direction)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        formset = super().get_formset(request, obj, **kwargs)
        if obj is not None and "direction" in formset.form.base_fields:
            formset.form.base_fields["direction"].choices = [
                ("", "---------"),
                *obj.direction_choices(RULE_DIRECTIONS),
            ]
        return formset

    @admin.display(description="IF … THEN …")
    def summary(self, rule: Rule) -> str:
        return if_then(rule) if rule.pk else "—"


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "connection", "apps", "position", "enabled"]
    list_filter = ["direction", "enabled"]
    list_select_related = ["connection__account_a", "connection__account_b"]
    fields = [
        "connection",
        "if_then",
        "name",
        "direction",
        "position",
        "enabled",
        "undo_on_unmatch",
    ]
    inlines = [ConditionInline, ActionInline]

    def get_fields(self, request: HttpRequest, obj: Rule | None = None) -> Any:
        return self.fields if obj else [f for f in self.fields if f != "if_then"]

    def get_readonly_fields(self, request: HttpRequest, obj: Rule | None = None) -> Any:
        return ["connection", "if_then"] if obj else []

    def get_form(self, request: HttpRequest, obj: Rule | None = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        if obj is not None and "direction" in form.base_fields:
            form.base_fields["direction"].choices = obj.connection.direction_choices(
                RULE_DIRECTIONS
            )
        return form

    @admin.display(description="Direction", ordering="direction")
    def apps(self, rule: Rule) -> str:
        return rule.connection.arrow(rule.direction)

    @admin.display(description="This rule reads")
    def if_then(self, rule: Rule) -> str:
        return if_then(rule)

    # editing a rule is part of setting up its connection: back there after
    def _back_to_connection(self, request: HttpRequest, rule: Rule) -> HttpResponse | None:
        if any(k in request.POST for k in ("_continue", "_addanother", "_saveasnew", "_popup")):
            return None
        return HttpResponseRedirect(
            reverse("admin:connections_connection_change", args=[rule.connection_id])
        )

    def response_change(self, request: HttpRequest, obj: Rule) -> HttpResponse:
        back = self._back_to_connection(request, obj)
        response = super().response_change(request, obj)  # its message
        return back or response

    def response_add(
        self, request: HttpRequest, obj: Rule, post_url_continue: Any = None
    ) -> HttpResponse:
        back = self._back_to_connection(request, obj)
        response = super().response_add(request, obj, post_url_continue)
        return back or response
