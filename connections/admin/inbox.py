"""The webhook inbox: every delivery as stored, what it was, and how long it
is kept."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from ..models import WebhookEvent
from ..webhooks import REJECTED_EXCERPT, inbox_limits
from .audit import AuditAdmin
from .common import (
    folded,
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
