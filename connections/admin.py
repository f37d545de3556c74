"""The configuration UI and the audit log, in plain Django admin.

Staff see and do what their model permissions allow: a view-only user can
audit runs and contacts but changes nothing. The audit tables are read-only
and paginate without counting whole tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString
from django_q.models import Task

from connectors import registry
from connectors.base import ConnectorError

from . import actions
from .accounts import refresh_account
from .config import (
    DRIFT_NOTICE,
    apply_defaults,
    capabilities_of,
    has_drift_side,
    mapping_status,
    option_support,
)
from .forms import (
    AccountForm,
    ActionForm,
    ConditionForm,
    ConnectionForm,
    FieldMappingForm,
    FieldMappingFormSet,
    setting_field_name,
    side_settings_of,
)
from .health import NO_REASON, NO_REASON_PARAM, connection_health
from .models import (
    Account,
    Action,
    Condition,
    Connection,
    ContactLink,
    FieldMapping,
    LinkStatus,
    Rule,
    Side,
    SyncEvent,
    SyncRun,
    WebhookEvent,
)
from .oauth import connect_url


class CappedCountPaginator(Paginator):
    """Counts at most ``CAP`` + 1 rows (``COUNT(*)`` over a ``LIMIT`` subquery),
    never the whole table; narrow with filters to reach older rows."""

    CAP = 10_000

    @cached_property
    def count(self) -> int:  # type: ignore[override]
        return self.object_list[: self.CAP + 1].count()


def connector_oauth_provider(key: str) -> str:
    try:
        return registry.get(key).oauth_provider
    except (KeyError, ImportError, AttributeError):
        return ""


# ------------------------------------------------------------------ accounts


@admin.register(Account)
class AccountAdmin(admin.ModelAdmin):
    form = AccountForm
    list_display = ["label", "connector", "remote_id", "status", "checked_at", "credential_kind"]
    list_filter = ["connector", "status"]
    search_fields = ["label", "remote_id"]
    readonly_fields = [
        "remote_id",
        "credential_kind",
        "credential",
        "connect",
        "status",
        "status_reason",
        "checked_at",
        "created_by",
        "created_at",
    ]
    actions = ["test_connection"]

    def get_fieldsets(self, request: HttpRequest, obj: Account | None = None) -> Any:
        editable = (
            self.has_change_permission(request, obj) if obj else self.has_add_permission(request)
        )
        credential = ["credential_kind", "credential"]
        if editable:
            credential += ["secret", "connect"]
        return [
            (None, {"fields": ["connector", "label", "base_url"]}),
            ("Credentials", {"fields": credential}),
            (
                "Status",
                {"fields": ["remote_id", "status", "status_reason", "checked_at", "created_by"]},
            ),
        ]

    def get_form(self, request: HttpRequest, obj: Account | None = None, **kwargs: Any) -> Any:
        fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        kwargs["fields"] = [f for f in fields if f != "secret"]
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="Credential")
    def credential(self, obj: Account) -> str:
        return obj.credential_hint() if obj.pk else "none"

    @admin.display(description="Authorize in the app")
    def connect(self, obj: Account | None) -> SafeString | str:
        keys = [obj.connector] if obj and obj.pk else [k for k, _ in registry.choices()]
        buttons = []
        for key in keys:
            provider = connector_oauth_provider(key)
            if provider:
                name = dict(registry.choices())[key]
                buttons.append((connect_url(provider), f"Connect with {name}"))
        if not buttons:
            return "This app takes a pasted token only."
        return format_html_join(" ", '<a class="button" href="{}">{}</a>', buttons)

    def save_model(self, request: HttpRequest, obj: Account, form: Any, change: bool) -> None:
        if not change:
            obj.created_by = request.user
        super().save_model(request, obj, form, change)

    # -- test connection ------------------------------------------------------

    def get_urls(self) -> list[Any]:
        urls = [
            path(
                "<int:pk>/test/",
                self.admin_site.admin_view(self.test_connection_view),
                name="connections_account_test",
            )
        ]
        return urls + super().get_urls()

    def _test(self, request: HttpRequest, account: Account) -> None:
        try:
            info = refresh_account(account)
        except ConnectorError as exc:
            self.message_user(request, f"{account}: {exc}", messages.ERROR)
            self.log_change(request, account, f"Test connection failed: {exc}")
            return
        count = len(account.schema or [])
        self.message_user(
            request,
            f"{account}: connected as {info.label or info.remote_id}; {count} fields read.",
            messages.SUCCESS,
        )
        self.log_change(request, account, "Test connection succeeded.")

    def test_connection_view(self, request: HttpRequest, pk: int) -> Any:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        account = get_object_or_404(Account, pk=pk)
        if not self.has_change_permission(request, account):
            raise PermissionDenied
        self._test(request, account)
        return HttpResponseRedirect(reverse("admin:connections_account_change", args=[pk]))

    @admin.action(description="Test connection (calls the app)", permissions=["change"])
    def test_connection(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        for account in queryset:
            self._test(request, account)

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = dict(extra_context or {})
        account = self.get_object(request, object_id)
        if account is not None and self.has_change_permission(request, account):
            extra_context["test_url"] = reverse("admin:connections_account_test", args=[account.pk])
        return super().change_view(request, object_id, form_url, extra_context)

    def changelist_view(self, request, extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = dict(extra_context or {})
        if self.has_add_permission(request):
            extra_context["connect_buttons"] = [
                (connect_url(provider), f"Connect with {name}")
                for key, name in registry.choices()
                if (provider := connector_oauth_provider(key))
            ]
        return super().changelist_view(request, extra_context)


# --------------------------------------------------------------- connections


class FieldMappingInline(admin.TabularInline):
    model = FieldMapping
    form = FieldMappingForm
    formset = FieldMappingFormSet
    fields = ["field_a", "field_b", "direction", "enabled", "effective", "is_default"]
    readonly_fields = ["effective", "is_default"]
    extra = 1
    can_delete = True
    verbose_name = "field mapping"

    def get_formset(self, request: HttpRequest, obj: Connection | None = None, **kwargs: Any):  # type: ignore[no-untyped-def]
        kwargs["form"] = type("BoundFieldMappingForm", (self.form,), {"connection": obj})
        return super().get_formset(request, obj, **kwargs)

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
        return f"{text} ({problem})" if problem else text


class RuleInline(admin.TabularInline):
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


@admin.register(Connection)
class ConnectionAdmin(admin.ModelAdmin):
    form = ConnectionForm
    list_display = [
        "name",
        "account_a",
        "account_b",
        "direction",
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
        "state_reason",
        "last_synced_at",
        "last_synced_by",
    ]

    def get_inlines(self, request: HttpRequest, obj: Connection | None) -> list[Any]:
        # mappings and rules need both accounts' fields: they come after the first save
        return [FieldMappingInline, RuleInline] if obj else []

    def _setting_names(self, request: HttpRequest, obj: Connection | None, side: str) -> list[str]:
        if obj is None or not self.has_change_permission(request, obj):
            return [f"settings_{side}"]
        names = [setting_field_name(side, s.key) for s in side_settings_of(obj.account(side))]
        return names or [f"settings_{side}"]

    def get_fieldsets(self, request: HttpRequest, obj: Connection | None = None) -> Any:
        sync = ["direction", "conflict_policy", "avoid_duplicates"]
        if obj is None or has_drift_side(obj):
            sync.append("drift_notice")
        return [
            (
                "Side A",
                {"fields": ["name", "account_a", *self._setting_names(request, obj, Side.A)]},
            ),
            ("Side B", {"fields": ["account_b", *self._setting_names(request, obj, Side.B)]}),
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
                        "state",
                        "state_reason",
                        "last_synced_at",
                        "last_synced_by",
                    ]
                },
            ),
        ]

    def get_form(self, request: HttpRequest, obj: Connection | None = None, **kwargs: Any) -> Any:
        fields = flatten_fieldsets(self.get_fieldsets(request, obj))
        kwargs["fields"] = [f for f in fields if not f.startswith("setting_")]
        return super().get_form(request, obj, **kwargs)

    @admin.display(description="Drift")
    def drift_notice(self, obj: Connection | None) -> str:
        if obj is None or not obj.pk:
            return f"When one side is Drift: {DRIFT_NOTICE}"
        return DRIFT_NOTICE

    @admin.display(description="Works for this connection")
    def option_ways(self, obj: Connection | None) -> SafeString | str:
        if obj is None or not obj.pk:
            return "Shown once both accounts are chosen and saved."
        support = option_support(obj)
        return format_html_join(
            "",
            "<p><strong>{}</strong>: {}</p>",
            (
                ("Sync deletions", support["sync_deletions"].describe()),
                ("Sync unsubscribes", support["sync_unsubscribes"].describe()),
            ),
        )

    def save_model(self, request: HttpRequest, obj: Connection, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change:
            apply_defaults(obj)

    # -- operations: Sync now, Dry run, Pause, Resume, Full resync -------------
    #
    # The changelist actions and the change page's buttons share these. They
    # only queue a run (``enqueue_sync``) or change the state; the schedule
    # follows the state through the connection's post_save signal.

    actions = ["sync_now", "dry_run", "pause", "resume", "full_resync"]

    def _refuse_inactive(self, request: HttpRequest, conn: Connection, what: str) -> bool:
        if conn.state == Connection.State.ACTIVE:
            return False
        self.message_user(
            request,
            f"{conn} is {conn.get_state_display().lower()}: resume it first. No {what} was queued.",
            messages.WARNING,
        )
        return True

    def _sync(self, request: HttpRequest, conn: Connection, *, full: bool = False) -> None:
        what = "full resync" if full else "sync"
        if self._refuse_inactive(request, conn, what):
            return
        actions.enqueue(conn, trigger=SyncRun.Trigger.MANUAL, user=request.user, full=full)
        busy = " after the run in progress" if conn.running_since else ""
        self.message_user(
            request,
            f"{conn}: {what} queued; a worker runs it{busy} shortly.",
            messages.SUCCESS,
        )

    def _dry_run(self, request: HttpRequest, conn: Connection) -> str | None:
        """Queue a dry run; returns the page that waits for its preview."""
        if self._refuse_inactive(request, conn, "dry run"):
            return None
        since = timezone.now()
        task_id = actions.enqueue(
            conn, trigger=SyncRun.Trigger.MANUAL, user=request.user, dry_run=True
        )
        url = (
            reverse("admin:connections_connection_dry_run_queued", args=[conn.pk, task_id])
            + "?"
            + urlencode({"since": since.isoformat()})
        )
        self.message_user(
            request,
            format_html('{}: dry run queued. <a href="{}">See its preview</a>.', conn, url),
            messages.SUCCESS,
        )
        return url

    def _set_state(self, request: HttpRequest, conn: Connection, state: str) -> None:
        if state == Connection.State.PAUSED:
            changed = actions.pause(
                conn,
                user=request.user,
                reason=f"Paused by {request.user.get_username()} in the admin.",
            )
            done = "paused: it does not run until resumed"
        else:
            changed = actions.resume(conn, user=request.user)
            done = f"resumed: the scheduler runs it every {conn.interval_minutes} min, from now"
        if not changed:
            self.message_user(
                request, f"{conn} is already {conn.get_state_display().lower()}.", messages.INFO
            )
            return
        self.message_user(request, f"{conn} {done}.", messages.SUCCESS)

    @admin.action(description="Sync now", permissions=["change"])
    def sync_now(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for conn in queryset:
            self._sync(request, conn)

    @admin.action(description="Dry run (preview, writes nothing)", permissions=["change"])
    def dry_run(self, request: HttpRequest, queryset: QuerySet[Connection]) -> Any:
        urls = [url for conn in queryset if (url := self._dry_run(request, conn))]
        if len(urls) == 1:
            return HttpResponseRedirect(urls[0])
        return None

    @admin.action(description="Pause", permissions=["change"])
    def pause(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for conn in queryset:
            self._set_state(request, conn, Connection.State.PAUSED)

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for conn in queryset:
            self._set_state(request, conn, Connection.State.ACTIVE)

    @admin.action(description="Full resync (read every contact again)", permissions=["change"])
    def full_resync(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for conn in queryset:
            self._sync(request, conn, full=True)

    OPERATIONS = {
        "sync-now": ("Sync now", "Queue a sync of this connection"),
        "dry-run": ("Dry run", "Preview what a sync would do, without writing anything"),
        "full-resync": ("Full resync", "Read every contact on both sides again"),
        "pause": ("Pause", "Stop syncing until resumed"),
        "resume": ("Resume", "Sync again on the schedule"),
    }

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/dry-run/queued/<str:task_id>/",
                wrap(self.dry_run_queued_view),
                name="connections_connection_dry_run_queued",
            ),
            path(
                "<int:pk>/dry-run/<int:run_id>/",
                wrap(self.dry_run_view),
                name="connections_connection_dry_run",
            ),
            path(
                "<int:pk>/dry-run/<int:run_id>/apply/",
                wrap(self.apply_dry_run_view),
                name="connections_connection_apply_dry_run",
            ),
            *(
                path(
                    f"<int:pk>/{operation}/",
                    wrap(self.operation_view),
                    {"operation": operation},
                    name=operation_url_name(operation),
                )
                for operation in self.OPERATIONS
            ),
            *super().get_urls(),
        ]

    def _connection_for(self, request: HttpRequest, pk: int, *, change: bool) -> Connection:
        conn = get_object_or_404(Connection.objects.select_related("account_a", "account_b"), pk=pk)
        allowed = (
            self.has_change_permission(request, conn)
            if change
            else self.has_view_or_change_permission(request, conn)
        )
        if not allowed:
            raise PermissionDenied
        return conn

    def operation_view(self, request: HttpRequest, pk: int, operation: str) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conn = self._connection_for(request, pk, change=True)
        change_url = reverse("admin:connections_connection_change", args=[conn.pk])
        if operation == "dry-run":
            return HttpResponseRedirect(self._dry_run(request, conn) or change_url)
        if operation == "sync-now":
            self._sync(request, conn)
        elif operation == "full-resync":
            self._sync(request, conn, full=True)
        elif operation == "pause":
            self._set_state(request, conn, Connection.State.PAUSED)
        else:
            self._set_state(request, conn, Connection.State.ACTIVE)
        return HttpResponseRedirect(change_url)

    def dry_run_queued_view(self, request: HttpRequest, pk: int, task_id: str) -> HttpResponse:
        """Waits for the queued dry run to start, then shows its preview."""
        conn = self._connection_for(request, pk, change=False)
        task = Task.get_task(task_id)
        run = None
        if task is not None and task.success and isinstance(task.result, int):
            run = conn.runs.filter(pk=task.result, dry_run=True).first()
        since = parse_datetime(request.GET.get("since", ""))
        if run is None and since is not None:
            run = (
                conn.runs.filter(dry_run=True, started_at__gte=since, started_by=request.user.pk)
                .order_by("started_at", "pk")
                .first()
            )
        if run is not None:
            return HttpResponseRedirect(
                reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk])
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": conn,
            "title": f"Dry run of {conn}",
            "task": task,
            "waiting": task is None,
            "refresh_seconds": 2,
        }
        return TemplateResponse(
            request, "admin/connections/connection/dry_run_queued.html", context
        )

    def dry_run_view(self, request: HttpRequest, pk: int, run_id: int) -> HttpResponse:
        """The preview: the dry run's counts per side and its field diffs."""
        conn = self._connection_for(request, pk, change=False)
        run = get_object_or_404(SyncRun, pk=run_id, connection=conn, dry_run=True)
        running = run.status == SyncRun.Status.RUNNING
        names = {
            Side.A: f"A · {conn.account_a.get_connector_display()}",
            Side.B: f"B · {conn.account_b.get_connector_display()}",
        }
        counters = run.counters or {}
        counter_rows = [
            (name.replace("_", " "), *(int(counters.get(s, {}).get(name, 0)) for s in Side))
            for name in COUNTER_ORDER
            if any(counters.get(s, {}).get(name) for s in Side)
        ]
        events = run.events.exclude(action__in=QUIET_ACTIONS).order_by("email", "side", "pk")
        shown = [
            DiffRow(e, names.get(e.side, ""), changes_table(e.changes or []))
            for e in events[:PREVIEW_LIMIT]
        ]
        can_apply = (
            not running
            and run.status != SyncRun.Status.FAILED
            and conn.state == Connection.State.ACTIVE
            and self.has_change_permission(request, conn)
        )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": conn,
            "title": f"Dry run of {conn}",
            "run": run,
            "run_url": reverse("admin:connections_syncrun_change", args=[run.pk]),
            "running": running,
            "refresh_seconds": 2,
            "side_names": [names[Side.A], names[Side.B]],
            "counter_rows": counter_rows,
            "events": shown,
            "event_count": events.count() if len(shown) >= PREVIEW_LIMIT else len(shown),
            "quiet_count": run.events.filter(action__in=QUIET_ACTIONS).count(),
            "preview_limit": PREVIEW_LIMIT,
            "can_apply": can_apply,
            "apply_url": reverse(
                "admin:connections_connection_apply_dry_run", args=[conn.pk, run.pk]
            ),
        }
        return TemplateResponse(request, "admin/connections/connection/dry_run.html", context)

    def apply_dry_run_view(self, request: HttpRequest, pk: int, run_id: int) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        conn = self._connection_for(request, pk, change=True)
        run = get_object_or_404(SyncRun, pk=run_id, connection=conn, dry_run=True)
        if run.status == SyncRun.Status.RUNNING:
            self.message_user(request, "The dry run has not finished yet.", messages.WARNING)
            return HttpResponseRedirect(
                reverse("admin:connections_connection_dry_run", args=[conn.pk, run.pk])
            )
        if not self._refuse_inactive(request, conn, "sync"):
            actions.enqueue(
                conn,
                trigger=SyncRun.Trigger.MANUAL,
                user=request.user,
                message=f"Applied dry run #{run.pk}: sync queued.",
            )
            self.message_user(
                request,
                f"{conn}: sync queued. It applies the changes as they stand when it runs.",
                messages.SUCCESS,
            )
        return HttpResponseRedirect(reverse("admin:connections_connection_change", args=[conn.pk]))

    def change_view(self, request, object_id, form_url="", extra_context=None):  # type: ignore[no-untyped-def]
        extra_context = dict(extra_context or {})
        conn = self.get_object(request, object_id)
        if conn is not None:
            extra_context["health"] = connection_health(conn)
            if self.has_change_permission(request, conn):
                if conn.state == Connection.State.ACTIVE:
                    names = ["sync-now", "dry-run", "full-resync", "pause"]
                else:
                    names = ["resume"]
                extra_context["operations"] = [
                    (
                        reverse(f"admin:{operation_url_name(name)}", args=[conn.pk]),
                        *self.OPERATIONS[name],
                    )
                    for name in names
                ]
        return super().change_view(request, object_id, form_url, extra_context)


def operation_url_name(operation: str) -> str:
    return "connections_connection_" + operation.replace("-", "_")


#: run counters in the order a preview lists them
COUNTER_ORDER = [
    "scanned",
    "created",
    "updated",
    "tagged",
    "unchanged",
    "excluded",
    "duplicates",
    "failed",
    "trashed",
    "deleted",
    "out_of_scope",
]
#: events a preview counts but does not list: nothing would change for them
QUIET_ACTIONS = [SyncEvent.Action.UNCHANGED, SyncEvent.Action.ECHO]
PREVIEW_LIMIT = 500


@dataclass
class DiffRow:
    event: SyncEvent
    side_name: str
    changes: SafeString | str


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


@admin.register(Rule)
class RuleAdmin(admin.ModelAdmin):
    list_display = ["__str__", "connection", "direction", "position", "enabled"]
    list_filter = ["direction", "enabled"]
    list_select_related = ["connection"]
    fields = ["connection", "name", "direction", "position", "enabled", "undo_on_unmatch"]
    inlines = [ConditionInline, ActionInline]

    def get_readonly_fields(self, request: HttpRequest, obj: Rule | None = None) -> Any:
        return ["connection"] if obj else []


# --------------------------------------------------------------------- audit


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


def folded(text: str, summary: str = "show") -> SafeString | str:
    if not text:
        return "—"
    return format_html("<details><summary>{}</summary><pre>{}</pre></details>", summary, text)


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
        "error_folded",
        "events",
    ]
    readonly_fields = fields

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
    def error_folded(self, run: SyncRun) -> SafeString | str:
        return folded(run.error, run.error.splitlines()[0][:120] if run.error else "")

    @admin.display(description="Events")
    def events(self, run: SyncRun) -> SafeString:
        url = reverse("admin:connections_syncevent_changelist") + f"?run__id__exact={run.pk}"
        return format_html('<a href="{}">events</a>', url)


def changes_table(changes: list[dict[str, Any]]) -> SafeString | str:
    if not changes:
        return "—"
    rows = format_html_join(
        "",
        "<tr><td>{}</td><td>{}</td><td>→</td><td>{}</td><td>{}</td></tr>",
        (
            (
                c.get("field", ""),
                "" if c.get("old") is None else c.get("old"),
                "" if c.get("new") is None else c.get("new"),
                c.get("note") or ("" if c.get("other") is None else f"other side: {c['other']}"),
            )
            for c in changes
        ),
    )
    return format_html(
        "<table><thead><tr><th>Field</th><th>Old</th><th></th><th>New</th><th></th></tr>"
        "</thead><tbody>{}</tbody></table>",
        rows,
    )


@admin.register(SyncEvent)
class SyncEventAdmin(AuditAdmin):
    list_display = ["created_at", "action", "side", "email", "run", "reason_short"]
    list_filter = ["action", "side"]
    search_fields = ["=email"]
    list_select_related = ["run", "run__connection"]
    fields = ["run", "link", "email", "side", "action", "changes_table", "reason", "created_at"]
    readonly_fields = fields

    @admin.display(description="Reason")
    def reason_short(self, event: SyncEvent) -> str:
        return event.reason[:100]

    @admin.display(description="Changes")
    def changes_table(self, event: SyncEvent) -> SafeString | str:
        return changes_table(event.changes or [])


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


def shorten(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


@admin.register(ContactLink)
class ContactLinkAdmin(AuditAdmin):
    list_display = [
        "email",
        "connection",
        "id_a",
        "id_b",
        "status",
        "failure_count",
        "last_synced_at",
    ]
    list_filter = ["status", "connection", FailureReasonFilter]
    search_fields = ["=email", "=id_a", "=id_b"]
    list_select_related = ["connection"]
    fields = [
        "connection",
        "email",
        "id_a",
        "id_b",
        "status",
        "status_reason",
        "failure_count",
        "retry_after",
        "unsubscribed_on",
        "base_a",
        "base_b",
        "first_synced_at",
        "last_synced_at",
        "timeline",
    ]
    readonly_fields = fields
    TIMELINE_LIMIT = 100

    def get_queryset(self, request: HttpRequest) -> QuerySet[ContactLink]:
        return (
            super()
            .get_queryset(request)
            .select_related("connection__account_a", "connection__account_b")
        )

    @admin.display(description="Timeline (newest first)")
    def timeline(self, link: ContactLink) -> SafeString | str:
        """Every event of this contact: when, which run, which app, what was
        done and why, and each field's old → new value."""
        events = list(
            link.events.select_related("run").order_by("-created_at", "-pk")[
                : self.TIMELINE_LIMIT + 1
            ]
        )
        if not events:
            return "—"
        more = len(events) > self.TIMELINE_LIMIT
        events = events[: self.TIMELINE_LIMIT]
        conn = link.connection
        apps = {
            Side.A: f"A · {conn.account_a.get_connector_display()}",
            Side.B: f"B · {conn.account_b.get_connector_display()}",
        }
        rows = format_html_join(
            "",
            '<tr class="event-{}"><td>{}</td><td><a href="{}">run #{}</a>{}</td><td>{}</td>'
            '<td><a href="{}">{}</a></td><td>{}</td><td>{}</td></tr>',
            (
                (
                    e.action,
                    timezone.localtime(e.created_at).strftime("%Y-%m-%d %H:%M:%S"),
                    reverse("admin:connections_syncrun_change", args=[e.run_id]),
                    e.run_id,
                    " (dry run)" if e.run.dry_run else "",
                    apps.get(e.side, "—"),
                    reverse("admin:connections_syncevent_change", args=[e.pk]),
                    e.get_action_display(),
                    e.reason or "—",
                    changes_table(e.changes or []),
                )
                for e in events
            ),
        )
        note = (
            format_html(
                '<p><a href="{}">All events of this contact</a> (latest {} shown).</p>',
                reverse("admin:connections_syncevent_changelist") + f"?link__id__exact={link.pk}",
                self.TIMELINE_LIMIT,
            )
            if more
            else ""
        )
        return format_html(
            '<table class="timeline"><thead><tr><th>When</th><th>Run</th><th>App</th>'
            "<th>What</th><th>Why</th><th>Fields (old → new)</th></tr></thead>"
            "<tbody>{}</tbody></table>{}",
            rows,
            note,
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

    @admin.display(description="Body")
    def body_folded(self, event: WebhookEvent) -> SafeString | str:
        return folded(event.body, f"{len(event.body)} characters")

    @admin.display(description="Error")
    def error_folded(self, event: WebhookEvent) -> SafeString | str:
        return folded(event.error, event.error[:120])
