"""A dry run's pages: waiting for it to start, its preview (counts per side
and field diffs), and Apply, which queues a real sync.

The preview lists each contact once (all it would do on either side in one
row), in three parts: what would change, what would not sync (excluded,
duplicates, failures) and what is already equal; each part pages through
all its contacts."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from django.contrib import messages
from django.core.paginator import Page, Paginator
from django.db.models import Case, CharField, Q, QuerySet, Value, When
from django.db.models.functions import Cast, Concat
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.dateparse import parse_datetime
from django_q.models import Task

from .. import actions
from ..models import Connection, Side, SyncEvent, SyncRun
from ..tasks import RUN_SYNC
from .common import ChangeRow, change_rows, side_names
from .operations import ConnectionOperations

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
#: a contact with one of these would change in an app
CHANGE_ACTIONS = [
    SyncEvent.Action.CREATED,
    SyncEvent.Action.UPDATED,
    SyncEvent.Action.TAGGED,
    SyncEvent.Action.TRASHED,
    SyncEvent.Action.UNSUBSCRIBED,
]
#: ... with one of these (and no change) it would not sync
PROBLEM_ACTIONS = [
    SyncEvent.Action.EXCLUDED,
    SyncEvent.Action.DUPLICATE,
    SyncEvent.Action.FAILED,
    SyncEvent.Action.SKIPPED,
]
#: contacts per page of each part of the preview
PREVIEW_LIMIT = 100
#: how often a page waiting for a worker reloads itself
REFRESH_SECONDS = 2


def is_dry_run_of(task: Task, conn: Connection) -> bool:
    """Is this django-q2 task a dry run of ``conn`` (``tasks.enqueue_sync``)?"""
    args, kwargs = task.args or (), task.kwargs or {}
    return (
        task.func == RUN_SYNC
        and isinstance(args, tuple | list)
        and len(args) >= 1
        and args[0] == conn.pk
        and isinstance(kwargs, dict)
        and kwargs.get("dry_run") is True
    )


@dataclass
class DiffRow:
    event: SyncEvent
    side_name: str
    changes: list[ChangeRow]


@dataclass
class ContactRow:
    """One contact of the preview: what it would do on each side."""

    email: str
    diffs: list[DiffRow] = field(default_factory=list)


@dataclass
class Part:
    """One part of the preview, one page of it."""

    key: str
    title: str
    param: str
    page: Page
    contacts: list[ContactRow]
    pages: list[tuple[Any, str]]  # (page number or "…", its query string)


def _query(request: HttpRequest, param: str, number: Any) -> str:
    query = request.GET.copy()
    query[param] = str(number)
    return "?" + query.urlencode()


def preview_part(
    request: HttpRequest,
    run: SyncRun,
    names: dict[str, str],
    key: str,
    title: str,
    emails: QuerySet,
) -> Part:
    """A page of contacts (by email), each with all its events of the run;
    contacts without an email are one row each."""
    param = f"{key}_page"
    paginator = Paginator(emails, PREVIEW_LIMIT)
    page = paginator.get_page(request.GET.get(param))
    keys = list(page.object_list)
    rows: dict[str, ContactRow] = {k: ContactRow(k.split(":", 1)[1]) for k in keys}
    with_email = [k[2:] for k in keys if k.startswith("e:")]
    without = [int(k[2:]) for k in keys if k.startswith("n:")]
    events = run.events.filter(Q(email__in=with_email) | Q(pk__in=without)).exclude(
        action__in=QUIET_ACTIONS
    )
    for event in events.order_by("email", "side", "pk"):
        row = rows.get(f"e:{event.email}" if event.email else f"n:{event.pk}")
        if row is not None:
            row.diffs.append(DiffRow(event, names.get(event.side, ""), change_rows(event.changes)))
    pages = [
        (number, _query(request, param, number) if number != paginator.ELLIPSIS else "")
        for number in paginator.get_elided_page_range(page.number)
    ]
    return Part(key, title, param, page, list(rows.values()), pages)


def contact_keys(events: QuerySet) -> QuerySet:
    """One key per contact: ``e:<email>``, or ``n:<event id>`` without one."""
    return (
        events.annotate(
            contact=Case(
                When(email="", then=Concat(Value("n:"), Cast("pk", CharField()))),
                default=Concat(Value("e:"), "email"),
                output_field=CharField(),
            )
        )
        .values_list("contact", flat=True)
        .distinct()
        .order_by("contact")
    )


def preview_parts(request: HttpRequest, run: SyncRun, names: dict[str, str]) -> list[Part]:
    events = run.events.all()
    changing = events.filter(action__in=CHANGE_ACTIONS)
    changing_emails = changing.exclude(email="").values("email")
    problems = events.filter(action__in=PROBLEM_ACTIONS).exclude(email__in=changing_emails)
    problem_emails = problems.exclude(email="").values("email")
    equal = (
        events.filter(action=SyncEvent.Action.MATCHED)
        .exclude(email__in=changing_emails)
        .exclude(email__in=problem_emails)
    )
    return [
        preview_part(request, run, names, "change", "What would change", contact_keys(changing)),
        preview_part(request, run, names, "skip", "What would not sync", contact_keys(problems)),
        preview_part(request, run, names, "equal", "Matched, already equal", contact_keys(equal)),
    ]


class DryRunViews(ConnectionOperations):
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
            *super().get_urls(),
        ]

    def _page_context(self, request: HttpRequest, conn: Connection, **extra: Any) -> dict:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "original": conn,
            "title": f"Dry run of {conn}",
            "refresh_seconds": REFRESH_SECONDS,
            **extra,
        }

    def _dry_run_task(self, request: HttpRequest, pk: int, task_id: str) -> tuple:
        """The connection and its queued dry run's task (None while no
        worker has finished it). 404 for anyone who may not change the
        connection, and for a task that is not a dry run of this connection:
        a task's result (a traceback, say) is shown to nobody else."""
        conn = get_object_or_404(Connection.objects.select_related("account_a", "account_b"), pk=pk)
        if not self.has_change_permission(request, conn):
            raise Http404("No such dry run.")
        task = Task.objects.filter(id=task_id).first()
        if task is not None and not is_dry_run_of(task, conn):
            raise Http404("No such dry run.")
        return conn, task

    def dry_run_queued_view(self, request: HttpRequest, pk: int, task_id: str) -> HttpResponse:
        """Waits for the queued dry run to start, then shows its preview."""
        conn, task = self._dry_run_task(request, pk, task_id)
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
        context = self._page_context(request, conn, task=task, waiting=task is None)
        return TemplateResponse(
            request, "admin/connections/connection/dry_run_queued.html", context
        )

    def dry_run_view(self, request: HttpRequest, pk: int, run_id: int) -> HttpResponse:
        """The preview: the dry run's counts per side and its field diffs."""
        conn = self._connection_for(request, pk, change=False)
        run = get_object_or_404(SyncRun, pk=run_id, connection=conn, dry_run=True)
        running = run.status == SyncRun.Status.RUNNING
        names = side_names(conn)
        counters = run.counters or {}
        counter_rows = [
            (name.replace("_", " "), *(int(counters.get(s, {}).get(name, 0)) for s in Side))
            for name in COUNTER_ORDER
            if any(counters.get(s, {}).get(name) for s in Side)
        ]
        parts = preview_parts(request, run, names)
        can_apply = (
            not running
            and run.status != SyncRun.Status.FAILED
            and conn.state == Connection.State.ACTIVE
            and self.has_change_permission(request, conn)
        )
        context = self._page_context(
            request,
            conn,
            run=run,
            run_url=reverse("admin:connections_syncrun_change", args=[run.pk]),
            running=running,
            side_names=[names[Side.A], names[Side.B]],
            counter_rows=counter_rows,
            parts=parts,
            # what would change on this page, event by event
            events=[diff for contact in parts[0].contacts for diff in contact.diffs],
            quiet_count=run.events.filter(action__in=QUIET_ACTIONS).count(),
            preview_limit=PREVIEW_LIMIT,
            can_apply=can_apply,
            apply_url=reverse("admin:connections_connection_apply_dry_run", args=[conn.pk, run.pk]),
        )
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
