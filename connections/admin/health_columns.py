"""The connection list's health columns: state (with a broken account and
the way to it), last synced … ago, failing contacts and the error reason.
Failing contacts are counted in the list's own query (a subquery per row
through the (connection, status) index), the accounts come with
``list_select_related``: no query per row."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Count, IntegerField, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from ..health import account_problems, ago, links_url
from ..models import Connection, ContactLink, LinkStatus
from .common import fragment

#: columns the health columns replace
REPLACED = {"state", "last_synced_at"}


class HealthColumns(admin.ModelAdmin):
    HEALTH_COLUMNS = ["health", "last_synced", "failing"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Connection]:
        failing = (
            ContactLink.objects.filter(connection=OuterRef("pk"), status=LinkStatus.FAILING)
            .order_by()
            .values("connection")
            .annotate(n=Count("pk"))
            .values("n")
        )
        return (
            super()
            .get_queryset(request)
            .annotate(failing_count=Coalesce(Subquery(failing, output_field=IntegerField()), 0))
        )

    def get_list_display(self, request: HttpRequest) -> Any:
        names = [name for name in super().get_list_display(request) if name not in REPLACED]
        return [*names, *self.HEALTH_COLUMNS]

    @admin.display(description="Health", ordering="state")
    def health(self, conn: Connection) -> str:
        return fragment(
            "connection/health_cell.html",
            connection=conn,
            problems=account_problems(conn),
        )

    @admin.display(description="Last synced", ordering="last_synced_at")
    def last_synced(self, conn: Connection) -> str:
        if conn.last_synced_at is None:
            return "never"
        return ago(conn.last_synced_at, timezone.now())

    @admin.display(description="Failing contacts", ordering="failing_count")
    def failing(self, conn: Connection) -> str:
        count = getattr(conn, "failing_count", 0) or 0
        if not count:
            return "0"
        url = links_url(conn, status__exact=LinkStatus.FAILING)
        return fragment("includes/link.html", url=url, text=str(count))
