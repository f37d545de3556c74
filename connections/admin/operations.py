"""A connection's operations: Sync now, Dry run, Full resync, Pause, Resume.

The changelist actions and the change page's buttons share these. They only
queue a run or change the state, both through ``connections.actions`` (which
logs them on the connection's History, and whose schedule follows the
state)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils import timezone

from .. import actions
from ..models import Connection, SyncRun
from .common import fragment
from .confirm import confirm_full_resync

State = Connection.State


def operation_url_name(operation: str) -> str:
    return "connections_connection_" + operation.replace("-", "_")


class ConnectionOperations(admin.ModelAdmin):
    actions = ["sync_now", "dry_run", "pause", "resume", "full_resync"]

    #: the change page's buttons: url part -> (label, tooltip)
    OPERATIONS = {
        "sync-now": ("Sync now", "Queue a sync of this connection"),
        "dry-run": ("Dry run", "Preview what a sync would do, without writing anything"),
        "full-resync": ("Full resync", "Read every contact on both sides again"),
        "pause": ("Pause", "Stop syncing until resumed"),
        "resume": ("Resume", "Sync again on the schedule"),
    }

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

    def _refuse_inactive(self, request: HttpRequest, conn: Connection, what: str) -> bool:
        if conn.state == State.ACTIVE:
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
        message = fragment("connection/dry_run_queued_message.html", connection=conn, url=url)
        self.message_user(request, message, messages.SUCCESS)
        return url

    def change_state(self, request: HttpRequest, conn: Connection, state: str) -> bool:
        """Set the state a person chose (a button, an action, the change
        form) through ``connections.actions``; False if it already was."""
        user = request.user
        if state == State.ACTIVE:
            return actions.resume(conn, user=user)
        if state == State.PAUSED:
            reason = f"Paused by {user.get_username()} in the admin."
            return actions.pause(conn, user=user, reason=reason)
        reason = f"Set by {user.get_username()} in the admin."
        if state == State.NEEDS_REAUTH:
            return actions.mark_needs_reauth(conn, reason, user=user)
        return actions.mark_error(conn, reason, user=user)

    def _set_state(self, request: HttpRequest, conn: Connection, state: str) -> None:
        if not self.change_state(request, conn, state):
            self.message_user(
                request, f"{conn} is already {conn.get_state_display().lower()}.", messages.INFO
            )
        elif state == State.PAUSED:
            self.message_user(
                request, f"{conn} paused: it does not run until resumed.", messages.SUCCESS
            )
        else:
            self.message_user(
                request,
                f"{conn} resumed: the scheduler runs it every {conn.interval_minutes} min,"
                " from now.",
                messages.SUCCESS,
            )

    # -- the changelist's actions ------------------------------------------------

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
            self._set_state(request, conn, State.PAUSED)

    @admin.action(description="Resume", permissions=["change"])
    def resume(self, request: HttpRequest, queryset: QuerySet[Connection]) -> None:
        for conn in queryset:
            self._set_state(request, conn, State.ACTIVE)

    @admin.action(description="Full resync (read every contact again)", permissions=["change"])
    def full_resync(self, request: HttpRequest, queryset: QuerySet[Connection]) -> Any:
        if page := confirm_full_resync(self, request, queryset, action="full_resync"):
            return page
        for conn in queryset:
            self._sync(request, conn, full=True)

    # -- the change page's buttons -------------------------------------------------

    def get_urls(self) -> list[Any]:
        wrap = self.admin_site.admin_view
        return [
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

    def operation_buttons(self, request: HttpRequest, conn: Connection) -> list[tuple[str, ...]]:
        """(url, label, tooltip) of the buttons this person may press."""
        if not self.has_change_permission(request, conn):
            return []
        if conn.state == State.ACTIVE:
            names = ["sync-now", "dry-run", "full-resync", "pause"]
        else:
            names = ["resume"]
        return [
            (reverse(f"admin:{operation_url_name(name)}", args=[conn.pk]), *self.OPERATIONS[name])
            for name in names
        ]

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
            if page := confirm_full_resync(self, request, [conn]):
                return page
            self._sync(request, conn, full=True)
        elif operation == "pause":
            self._set_state(request, conn, State.PAUSED)
        else:
            self._set_state(request, conn, State.ACTIVE)
        return HttpResponseRedirect(change_url)
