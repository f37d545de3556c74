"""Rules: their conditions on the source side and actions on the target
side, each form bound to that side's fields."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ..config import capabilities_of
from ..forms import ActionForm, ConditionForm
from ..models import Action, Condition, Rule, Side


class ConditionInline(admin.TabularInline):
    model = Condition
    form = ConditionForm
    fields = ["operator", "field", "value"]
    extra = 1

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

    @admin.display(description="Conditions / actions")
    def summary(self, rule: Rule) -> str:
        if not rule.pk:
            return "—"
        conditions = " and ".join(str(c) for c in rule.conditions.all()) or "all contacts"
        actions = ", ".join(str(a) for a in rule.actions.all()) or "no actions"
        return f"IF {conditions} THEN sync; {actions}"


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "connection", "direction", "position", "enabled"]
    list_filter = ["direction", "enabled"]
    list_select_related = ["connection"]
    fields = ["connection", "name", "direction", "position", "enabled", "undo_on_unmatch"]
    inlines = [ConditionInline, ActionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Rule | None = None) -> Any:
        return ["connection"] if obj else []
