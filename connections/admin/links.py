"""The contact links (bindings): each contact's state in both apps, why it
fails, its pending trash tag and its timeline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

from django.contrib import admin, messages
from django.db.models import Count, QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone

from .. import actions
from ..engine.trash import GUARD, pending_text
from ..health import NO_REASON, NO_REASON_PARAM
from ..models import ContactLink, LinkStatus, Side, SyncEvent
from .audit import AuditAdmin
from .common import (
    ChangeRow,
    change_rows,
    fragment,
    side_names,
)


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
    json_search_fields = ("base_a", "base_b")
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
