"""The audit log: runs and their events field by field (contact links are in
``links``, the webhook inbox in ``inbox``). Read-only, paginated without
counting whole tables."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from connectors import registry

from ..models import Alert, Connection, Side, SyncEvent, SyncRun
from .common import (
    CappedCountPaginator,
    JsonTextSearch,
    changes_table,
    folded,
    link_to,
)


class AuditAdmin(JsonTextSearch, admin.ModelAdmin):
    """Read-only log tables, paginated without full counts."""

    show_full_result_count = False
    paginator = CappedCountPaginator
    list_per_page = 50

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SyncRun)
class SyncRunAdmin(AuditAdmin):
    list_display = [
        "started_at",
        "connection",
        "trigger",
        "started_by",
        "duration",
        "status",
        "dry_run",
        "totals",
        "events",
    ]
    list_filter = ["status", "trigger", "dry_run", "full", "connection"]
    list_select_related = ["connection", "started_by"]
    fields = [
        "connection",
        "trigger",
        "started_by",
        "started_at",
        "finished_at",
        "duration",
        "status",
        "dry_run",
        "full",
        "totals",
        "counts_by_app",
        "error_folded",
        "events",
    ]
    readonly_fields = fields

    @admin.display(description="Counts by app")
    def counts_by_app(self, run: SyncRun) -> str:
        conn = run.connection
        parts = []
        for side in (Side.A, Side.B):
            counts = (run.counters or {}).get(side) or {}
            listed = ", ".join(f"{name.replace('_', ' ')} {n}" for name, n in counts.items() if n)
            parts.append(f"{conn.side_name(side)}: {listed or 'nothing'}")
        return " · ".join(parts)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser  # old runs may be pruned, by a superuser only

    @admin.display(description="Duration")
    def duration(self, run: SyncRun) -> str:
        if not run.finished_at:
            return "running" if run.status == SyncRun.Status.RUNNING else "—"
        seconds = (run.finished_at - run.started_at).total_seconds()
        return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"

    @admin.display(description="Counts (both sides)")
    def totals(self, run: SyncRun) -> str:
        names: dict[str, None] = {}
        for side in (run.counters or {}).values():
            names.update(dict.fromkeys(side))
        return ", ".join(f"{name} {run.total(name)}" for name in names) or "—"

    @admin.display(description="Error")
    def error_folded(self, run: SyncRun) -> str:
        return folded(run.error, run.error.splitlines()[0][:120] if run.error else "")

    @admin.display(description="Events")
    def events(self, run: SyncRun) -> str:
        url = reverse("admin:connections_syncevent_changelist") + f"?run={run.pk}&dry_run=all"
        return link_to(url, "events")


class DryRunFilter(admin.SimpleListFilter):
    """Dry runs wrote nothing: their events are left out unless asked for
    (or the list is of one run, from its "events" link)."""

    title = "runs"
    parameter_name = "dry_run"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("live", "Real runs"), ("dry", "Dry runs"), ("all", "All")]

    def choices(self, changelist: Any) -> Any:
        value = self.value() or "live"
        for lookup, title in self.lookup_choices:
            yield {
                "selected": value == lookup,
                "query_string": changelist.get_query_string({self.parameter_name: lookup}),
                "display": title,
            }

    def queryset(self, request: HttpRequest, queryset: QuerySet[SyncEvent]) -> Any:
        value = self.value()
        if value is None and ("run__id__exact" in request.GET or "run" in request.GET):
            return queryset  # one run's events, whatever it was
        if value == "all":
            return queryset
        return queryset.filter(run__dry_run=value == "dry")


class ConnectionFilter(admin.SimpleListFilter):
    title = "connection"
    parameter_name = "connection"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [(str(pk), name) for pk, name in Connection.objects.values_list("pk", "name")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[SyncEvent]) -> Any:
        value = self.value()
        return queryset.filter(run__connection_id=value) if value and value.isdigit() else queryset


class AppFilter(admin.SimpleListFilter):
    """The app the event happened in (its side's account's app)."""

    title = "app"
    parameter_name = "app"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return registry.choices()

    def queryset(self, request: HttpRequest, queryset: QuerySet[SyncEvent]) -> Any:
        value = self.value()
        if not value:
            return queryset
        return queryset.filter(
            Q(side=Side.A, run__connection__account_a__connector=value)
            | Q(side=Side.B, run__connection__account_b__connector=value)
        )


class RunFilter(admin.SimpleListFilter):
    """The last runs (of the chosen connection, if one is)."""

    title = "run"
    parameter_name = "run"
    LIMIT = 10

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        runs = SyncRun.objects.select_related("connection").order_by("-started_at", "-pk")
        connection = request.GET.get("connection", "")
        if connection.isdigit():
            runs = runs.filter(connection_id=int(connection))
        choices = [(str(run.pk), run_label(run)) for run in runs[: self.LIMIT]]
        current = self.value()
        if current and current.isdigit() and current not in dict(choices):
            choices.append((current, f"run #{current}"))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[SyncEvent]) -> Any:
        value = self.value()
        return queryset.filter(run_id=int(value)) if value and value.isdigit() else queryset


def run_label(run: SyncRun) -> str:
    when = timezone.localtime(run.started_at).strftime("%Y-%m-%d %H:%M")
    dry = " (dry run)" if run.dry_run else ""
    return f"#{run.pk} {run.connection} · {when}{dry}"


@admin.register(SyncEvent)
class SyncEventAdmin(AuditAdmin):
    list_display = [
        "created_at",
        "mode",
        "action",
        "app",
        "email",
        "connection",
        "run",
        "reason_short",
    ]
    list_filter = [DryRunFilter, ConnectionFilter, AppFilter, "action", "side", RunFilter]
    #: part of an email; a name (or any other value) as the run recorded it
    #: in its field changes, or as the contact's binding last synced it
    #: (names with accents too: ``JsonTextSearch``).
    search_fields = ["email", "changes", "link__base_a", "link__base_b"]
    json_search_fields = ("changes", "link__base_a", "link__base_b")
    search_help_text = "Part of an email address, or a name or other field value."
    list_select_related = [
        "run",
        "run__connection",
        "run__connection__account_a",
        "run__connection__account_b",
    ]
    fields = [
        "run",
        "mode",
        "link",
        "email",
        "app",
        "action",
        "changes_table",
        "reason",
        "created_at",
    ]
    readonly_fields = fields

    @admin.display(description="App", ordering="side")
    def app(self, event: SyncEvent) -> str:
        """The app the event happened in, by the connection's own name for it."""
        return event.run.connection.side_name(event.side)

    @admin.display(description="Mode", ordering="run__dry_run")
    def mode(self, event: SyncEvent) -> str:
        return "dry run" if event.run.dry_run else "—"

    @admin.display(description="Connection", ordering="run__connection__name")
    def connection(self, event: SyncEvent) -> str:
        return str(event.run.connection)

    @admin.display(description="Reason")
    def reason_short(self, event: SyncEvent) -> str:
        return event.reason[:100]

    @admin.display(description="Changes")
    def changes_table(self, event: SyncEvent) -> str:
        return changes_table(event.changes)


class AlertStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("open", "Open"), ("resolved", "Resolved")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "open":
            return queryset.filter(resolved_at__isnull=True)
        if self.value() == "resolved":
            return queryset.filter(resolved_at__isnull=False)
        return queryset


@admin.register(Alert)
class AlertAdmin(AuditAdmin):
    """Incidents the owners were mailed about: what went wrong with which
    connection, since when, and when it recovered."""

    list_display = [
        "opened_at",
        "connection",
        "kind",
        "state",
        "reason_short",
        "last_mailed_at",
        "resolved_at",
    ]
    list_filter = [AlertStateFilter, "kind", "connection"]
    list_select_related = ["connection"]
    fields = [
        "connection",
        "kind",
        "state",
        "reason",
        "opened_at",
        "last_mailed_at",
        "resolved_at",
        "recovery_mailed_at",
    ]
    readonly_fields = fields

    @admin.display(description="State")
    def state(self, alert: Alert) -> str:
        return "open" if alert.resolved_at is None else "resolved"

    @admin.display(description="Reason")
    def reason_short(self, alert: Alert) -> str:
        return alert.reason[:100]
