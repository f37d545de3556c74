"""Full resync asks first: it reads every contact on both sides again, which
for thousands of contacts takes long and spends the apps' rate limits. An
intermediate page (like Django's delete confirmation) says how many contacts
it will read; only its "Yes" queues the runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib.admin import helpers
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from ..models import Connection, SyncRun

#: the field of the confirmation form that says "yes"
CONFIRMED = "confirmed"


@dataclass
class ResyncEstimate:
    connection: Connection
    #: contacts its last full read scanned (both sides); None if it never made one
    last_full_read: int | None
    #: the contacts it has bound so far
    bound: int

    @property
    def will_read(self) -> int:
        return max(self.last_full_read or 0, self.bound)


def estimate(conn: Connection) -> ResyncEstimate:
    last = (
        SyncRun.objects.filter(connection=conn, full=True, dry_run=False)
        .exclude(status=SyncRun.Status.RUNNING)
        .order_by("-started_at", "-pk")
        .first()
    )
    return ResyncEstimate(
        connection=conn,
        last_full_read=last.total("scanned") if last is not None else None,
        bound=conn.links.count(),
    )


def confirm_full_resync(
    model_admin: Any,
    request: HttpRequest,
    connections: QuerySet[Connection] | list[Connection],
    *,
    action: str = "",
) -> HttpResponse | None:
    """None once the person confirmed (the caller queues the runs);
    otherwise the confirmation page. ``action`` is the changelist action's
    name when it comes from the list (the page posts it back)."""
    if request.POST.get(CONFIRMED) == "yes":
        return None
    conns = list(connections)
    estimates = [estimate(conn) for conn in conns]
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "title": "Full resync: are you sure?",
        "estimates": estimates,
        "total": sum(e.will_read for e in estimates),
        "action": action,
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "confirmed": CONFIRMED,
        "single": conns[0] if len(conns) == 1 and not action else None,
    }
    return TemplateResponse(
        request, "admin/connections/connection/full_resync_confirmation.html", context
    )
