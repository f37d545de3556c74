"""The audit log: runs, their events field by field, contact links with
their timeline, and the webhook inbox. Read-only, paginated without
counting whole tables."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from connectors import registry

from .. import actions
from ..engine.trash import GUARD, pending_text
from ..health import NO_REASON, NO_REASON_PARAM
from ..models import Connection, ContactLink, LinkStatus, Side, SyncEvent, SyncRun, WebhookEvent
from ..webhooks import REJECTED_EXCERPT, inbox_limits
from .common import (
    CappedCountPaginator,
    ChangeRow,
    change_rows,
    changes_table,
    folded,
    fragment,
    link_to,
    side_names,
)


class AuditAdmin(admin.ModelAdmin):
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
    #: in its field changes, or as the contact's binding last synced it.
    #: Values are searched as stored (JSON): non-ASCII letters in names are
    #: escaped there and not found this way.
    search_fields = ["email", "changes", "link__base_a", "link__base_b"]
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


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class FailureReasonFilter(admin.SimpleListFilter):
    """Failing contacts by the app's reason, most frequent first (the
    connection page's "failing, by reason" links land here)."""

    title = "failure reason"
    parameter_name = "reason"
    LIMIT = 10

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        links = ContactLink.objects.filter(status=LinkStatus.FAILING).exclude(status_reason="")
        connection = request.GET.get("connection__id__exact", "")
        if connection.isdigit():
            links = links.filter(connection_id=int(connection))
        rows = (
            links.values("status_reason")
            .annotate(n=Count("pk"))
            .order_by("-n", "status_reason")[: self.LIMIT]
        )
        choices = [(r["status_reason"], f"{shorten(r['status_reason'])} ({r['n']})") for r in rows]
        current = self.value()
        if current and current not in dict(choices):
            choices.append((current, NO_REASON if current == NO_REASON_PARAM else shorten(current)))
        return choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[ContactLink]) -> Any:
        value = self.value()
        if value == NO_REASON_PARAM:
            return queryset.filter(status=LinkStatus.FAILING, status_reason="")
        if value:
            return queryset.filter(status_reason=value)
        return queryset


class TrashPendingFilter(admin.SimpleListFilter):
    """Deletions whose trash tag has not landed yet, by why."""

    title = "trash tag pending"
    parameter_name = "trash"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("any", "Any pending"),
            ("guard", "Held by the mass-deletion guard"),
            ("refused", "Refused by the app"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[ContactLink]) -> Any:
        value = self.value()
        if not value:
            return queryset
        pending = queryset.exclude(trash_pending="")
        if value == "guard":
            return pending.filter(trash_reason__startswith=GUARD)
        if value == "refused":
            return pending.filter(trash_reason__contains=" refused (")
        return pending


@dataclass
class TimelineRow:
    event: SyncEvent
    when: str
    app: str
    run_url: str
    event_url: str
    changes: list[ChangeRow]


@admin.register(ContactLink)
class ContactLinkAdmin(AuditAdmin):
    list_display = [
        "email",
        "connection",
        "contact_ids",
        "status",
        "failure_count",
        "trash_tag",
        "last_synced_at",
    ]
    list_filter = ["status", "connection", FailureReasonFilter, TrashPendingFilter]
    actions = ["send_held_trash_tags"]
    #: part of an email, an exact id, or a name (any value) as last synced
    search_fields = ["email", "=id_a", "=id_b", "base_a", "base_b"]
    search_help_text = "Part of an email address, an app's contact id, or a name."
    list_select_related = ["connection", "connection__account_a", "connection__account_b"]
    fields = [
        "connection",
        "email",
        "contact_ids",
        "status",
        "status_reason",
        "failure_count",
        "retry_after",
        "unsubscribed_on",
        "trash_tag",
        "last_synced_values",
        "first_synced_at",
        "last_synced_at",
        "timeline",
    ]
    readonly_fields = fields
    TIMELINE_LIMIT = 100

    @admin.display(description="Contact in each app")
    def contact_ids(self, link: ContactLink) -> str:
        conn = link.connection
        return " · ".join(
            f"{conn.side_name(side)} {link.remote_id(side) or '—'}" for side in (Side.A, Side.B)
        )

    @admin.display(description="Last synced values")
    def last_synced_values(self, link: ContactLink) -> str:
        """What driftsync last wrote or read on each side (the merge's base)."""
        conn = link.connection
        return fragment(
            "includes/base_values.html",
            sides=[
                (conn.side_name(side), sorted((link.base(side) or {}).items()))
                for side in (Side.A, Side.B)
            ],
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContactLink]:
        return (
            super()
            .get_queryset(request)
            .select_related("connection__account_a", "connection__account_b")
        )

    @admin.display(description="Trash tag")
    def trash_tag(self, link: ContactLink) -> str:
        return pending_text(link) or "—"

    def has_send_trash_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("connections.change_contactlink")

    @admin.action(description="Send the held trash tags", permissions=["send_trash"])
    def send_held_trash_tags(self, request: HttpRequest, queryset: QuerySet[ContactLink]) -> None:
        n = actions.send_held_trash_tags(queryset.exclude(trash_pending=""), user=request.user)
        if not n:
            self.message_user(request, "None of these contacts has a trash tag pending.")
            return
        self.message_user(
            request,
            f"{n} trash tag(s) confirmed: the next run sends them, past the mass-deletion "
            "guard; a sync was queued.",
            messages.SUCCESS,
        )

    @admin.display(description="Timeline (newest first)")
    def timeline(self, link: ContactLink) -> str:
        """Every event of this contact: when, which run, which app, what was
        done and why, and each field's old → new value."""
        events = list(
            link.events.select_related("run").order_by("-created_at", "-pk")[
                : self.TIMELINE_LIMIT + 1
            ]
        )
        if not events:
            return "—"
        apps = side_names(link.connection)
        rows = [
            TimelineRow(
                event=e,
                when=timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                app=apps.get(e.side, "—"),
                run_url=reverse("admin:connections_syncrun_change", args=[e.run_id]),
                event_url=reverse("admin:connections_syncevent_change", args=[e.pk]),
                changes=change_rows(e.changes),
            )
            for e in events[: self.TIMELINE_LIMIT]
        ]
        all_url = (
            reverse("admin:connections_syncevent_changelist")
            + "?"
            + urlencode({"link__id__exact": link.pk})
        )
        return fragment(
            "contactlink/timeline.html",
            rows=rows,
            more=len(events) > self.TIMELINE_LIMIT,
            all_url=all_url,
            limit=self.TIMELINE_LIMIT,
        )


@admin.register(WebhookEvent)
class WebhookEventAdmin(AuditAdmin):
    list_display = ["received_at", "source", "event_type", "kind", "email", "status", "connection"]
    list_filter = ["status", "source"]
    search_fields = ["=email", "=contact_id"]
    list_select_related = ["connection"]
    fields = [
        "source",
        "account",
        "connection",
        "received_at",
        "event_type",
        "kind",
        "contact_id",
        "email",
        "status",
        "error_folded",
        "body_folded",
        "processed_at",
    ]
    readonly_fields = fields
    change_list_template = "admin/connections/webhookevent/change_list.html"

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_superuser  # the inbox may be pruned, by a superuser only

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = {
            **(extra_context or {}),
            "inbox": inbox_limits(),
            "excerpt": REJECTED_EXCERPT,
        }
        return super().changelist_view(request, extra_context)

    @admin.display(description="Body")
    def body_folded(self, event: WebhookEvent) -> str:
        return folded(event.body, f"{len(event.body)} characters")

    @admin.display(description="Error")
    def error_folded(self, event: WebhookEvent) -> str:
        return folded(event.error, event.error[:120])
