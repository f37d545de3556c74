"""Connections: the two sides and their settings, how to sync, the options
each connection can honour, its mappings and rules, and its health."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.contrib.admin.utils import flatten_fieldsets
from django.http import HttpRequest, HttpResponse
from django.urls import reverse

from ..config import DRIFT_NOTICE, apply_defaults, has_drift_side, mapping_status, option_support
from ..forms import (
    ConnectionForm,
    FieldMappingForm,
    FieldMappingFormSet,
    setting_field_name,
    side_settings_of,
)
from ..health import connection_health
from ..models import Connection, FieldMapping, Side
from ..readiness import checklist
from .common import fragment
from .dry_run import DryRunViews
from .health_columns import HealthColumns
from .rules import RuleInline


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    formset = FieldMappingFormSet
    fields = ["field_a", "field_b", "direction", "enabled", "effective", "is_default"]
    readonly_fields = ["effective", "is_default"]
    extra = 1
    can_delete = True
    verbose_name = "field mapping"

    #: what a view-only person reads instead of the raw keys and "A → B"
    SHOWN = ["mapped_from", "mapped_to", "direction_shown", "enabled", "effective", "is_default"]

    def get_fields(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return self.SHOWN
        return super().get_fields(request, obj)

    def get_readonly_fields(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        if obj is not None and not self.has_change_permission(request, obj):
            return self.SHOWN
        return super().get_readonly_fields(request, obj)

    def get_formset(self, request: HttpRequest, obj: Connection | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        kwargs["form"] = type("BoundFieldMappingForm", (self.form,), {"connection": obj})
        return super().get_formset(request, obj, **kwargs)

    @admin.display(description="Field")
    def mapped_from(self, mapping: FieldMapping) -> str:
        conn = mapping.connection
        return f"{conn.side_name(Side.A)}: {conn.field_label(Side.A, mapping.field_a)}"

    @admin.display(description="Mapped to")
    def mapped_to(self, mapping: FieldMapping) -> str:
        conn = mapping.connection
        return f"{conn.side_name(Side.B)}: {conn.field_label(Side.B, mapping.field_b)}"

    @admin.display(description="Direction")
    def direction_shown(self, mapping: FieldMapping) -> str:
        return mapping.connection.arrow(mapping.direction)

    @admin.display(description="Effective direction")
    def effective(self, mapping: FieldMapping) -> str:
        if not mapping.pk:
            return "—"
        connection = mapping.connection
        fields_a = {f.key: f for f in connection.account_a.schema_fields()}
        fields_b = {f.key: f for f in connection.account_b.schema_fields()}
        text, problem = mapping_status(
            fields_a.get(mapping.field_a),
            fields_b.get(mapping.field_b),
            mapping.direction,
            connection.direction,
            enabled=mapping.enabled,
        )
        text = connection.named(text)
        return f"{text} ({connection.named(problem)})" if problem else text

    def get_queryset(self, request: HttpRequest) -> Any:
        # each row's caption names its fields by the apps' labels
        return (
            super()
            .get_queryset(request)
            .select_related("connection__account_a", "connection__account_b")
        )


@admin.register(Connection)
class ConnectionAdmin(HealthColumns, DryRunViews):
    form = ConnectionForm
    list_display = [
        "name",
        "apps",
        "account_a",
        "account_b",
        "state",
        "interval_minutes",
        "last_synced_at",
    ]
    list_filter = ["state", "direction"]
    list_select_related = ["account_a", "account_b"]
    search_fields = ["name"]
    readonly_fields = [
        "drift_notice",
        "option_ways",
        "state",
        "state_reason",
        "last_synced_at",
        "last_synced_by",
    ]

    def get_inlines(self, request: HttpRequest, obj: Connection | None) -> list[Any]:
        # mappings and rules need both accounts' fields: they come after the first save
        return [FieldMappingInline, RuleInline] if obj else []

    def _setting_names(self, request: HttpRequest, obj: Connection | None, side: str) -> list[str]:
        if obj is None:
            return [f"settings_{side}"]
        if not self.has_change_permission(request, obj):
            return [f"settings_{side}_shown"]  # read-only: named, not raw JSON
        return [setting_field_name(side, s.key) for s in side_settings_of(obj.account(side))]

    # -- what a view-only person reads: the same values, in the apps' names ------

    #: fields a view-only person sees through a display of their own
    SHOWN = {
        "account_a": "account_a_shown",
        "account_b": "account_b_shown",
        "direction": "direction_shown",
        "conflict_policy": "conflict_policy_shown",
    }

    def get_readonly_fields(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        fields = list(super().get_readonly_fields(request, obj))
        if obj is not None and not self.has_change_permission(request, obj):
            fields += [*self.SHOWN.values(), "settings_a_shown", "settings_b_shown"]
        return fields

    def _shown_fieldsets(self, fieldsets: Any) -> Any:
        return [
            (title, {**opts, "fields": [self.SHOWN.get(f, f) for f in opts["fields"]]})
            for title, opts in fieldsets
        ]

    @admin.display(description="Account")
    def account_a_shown(self, obj: Connection) -> str:
        return str(obj.account_a)

    @admin.display(description="Account")
    def account_b_shown(self, obj: Connection) -> str:
        return str(obj.account_b)

    @admin.display(description="Direction")
    def direction_shown(self, obj: Connection) -> str:
        return obj.arrow(obj.direction)

    @admin.display(description="Conflict policy")
    def conflict_policy_shown(self, obj: Connection) -> str:
        policy = Connection.ConflictPolicy
        if obj.conflict_policy == policy.MOST_RECENT:
            return str(policy.MOST_RECENT.label)
        winner = Side.A if obj.conflict_policy == policy.A_WINS else Side.B
        return f"{obj.side_name(winner)} wins"

    def _settings_shown(self, obj: Connection, side: str) -> str:
        account = obj.account(side)
        values = obj.side_settings(side)
        parts = []
        for setting in side_settings_of(account):
            value = values.get(setting.key)
            labels = {
                str(v): str(label) for v, label in (account.options or {}).get(setting.key) or []
            }
            parts.append(f"{setting.label}: {labels.get(str(value), value) if value else '—'}")
        return "; ".join(parts) or "—"

    @admin.display(description="Settings")
    def settings_a_shown(self, obj: Connection) -> str:
        return self._settings_shown(obj, Side.A)

    @admin.display(description="Settings")
    def settings_b_shown(self, obj: Connection) -> str:
        return self._settings_shown(obj, Side.B)

    def get_fieldsets(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        if obj is None:
            # first step, as Django's user add: the two apps; the audience or
            # group, mappings and rules come on the next page, from their fields
            return [
                (
                    None,
                    {
                        "fields": ["name", "account_a", "account_b", "direction"],
                        "description": "Choose the two app accounts. Saving creates a draft: "
                        "the next page sets it up (audience or group, mappings, rules, a dry "
                        "run), and nothing syncs until you press Start syncing.",
                    },
                )
            ]
        sync = ["direction", "conflict_policy", "avoid_duplicates"]
        if has_drift_side(obj):
            sync.append("drift_notice")
        fieldsets = [
            (None, {"fields": ["name"]}),
            (
                obj.side_name(Side.A),
                {"fields": ["account_a", *self._setting_names(request, obj, Side.A)]},
            ),
            (
                obj.side_name(Side.B),
                {"fields": ["account_b", *self._setting_names(request, obj, Side.B)]},
            ),
            ("How to sync", {"fields": sync}),
            (
                "Deletions and unsubscribes (nothing is ever deleted)",
                {
                    "fields": [
                        "sync_deletions",
                        "trash_tag",
                        "sync_unsubscribes",
                        "unsubscribe_tag",
                        "option_ways",
                    ]
                },
            ),
            (
                "Schedule",
                {
                    "fields": [
                        "interval_minutes",
                        "state",  # read-only: it changes through the buttons above
                        "state_reason",
                        "last_synced_at",
                        "last_synced_by",
                    ]
                },
            ),
            ("Alerts", {"fields": ["owners"]}),
        ]
        if not self.has_change_permission(request, obj):
            return self._shown_fieldsets(fieldsets)
        return fieldsets

    def get_form(self, request: HttpRequest, obj: Connection | None = None, **kwargs: Any) -> Any:
        fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        kwargs["fields"] = [f for f in fields if not f.startswith("setting_")]
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="Apps", ordering="direction")
    def apps(self, obj: Connection) -> str:
        return obj.arrow(obj.direction)

    @admin.display(description="Drift")
    def drift_notice(self, obj: Connection | None) -> str:
        if obj is None or not obj.pk:
            return f"When one side is Drift: {DRIFT_NOTICE}"
        return DRIFT_NOTICE

    @admin.display(description="Works for this connection")
    def option_ways(self, obj: Connection | None) -> str:
        if obj is None or not obj.pk:
            return "Shown once both accounts are chosen and saved."
        support = option_support(obj)
        ways = [
            ("Sync deletions", obj.named(support["sync_deletions"].describe())),
            ("Sync unsubscribes", obj.named(support["sync_unsubscribes"].describe())),
        ]
        return fragment("connection/option_ways.html", ways=ways)

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        # the state is not a form field: it changes through the buttons
        # (connections.actions); a new connection is a draft
        super().save_model(request, obj, form, change)
        if not change:
            apply_defaults(obj)

    def response_add(
        self, request: HttpRequest, obj: Connection, post_url_continue: Any = None
    ) -> HttpResponse:
        # as Django's user add: the second step is the change page
        if "_addanother" not in request.POST and "_popup" not in request.POST:
            request.POST = request.POST.copy()
            request.POST["_continue"] = "1"
        return super().response_add(request, obj, post_url_continue)

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = dict(extra_context or {})
        conn = self.get_object(request, object_id)
        if conn is not None:
            extra_context["health"] = connection_health(conn)
            extra_context["operations"] = self.operation_buttons(request, conn)
            if conn.state == Connection.State.DRAFT:
                steps = checklist(conn)
                extra_context["checklist"] = steps
                extra_context["ready"] = not any(step.blocking for step in steps)
                if self.has_change_permission(request, conn):
                    extra_context["start_url"] = reverse(
                        "admin:connections_connection_start", args=[conn.pk]
                    )
        return super().change_view(request, object_id, form_url, extra_context)
