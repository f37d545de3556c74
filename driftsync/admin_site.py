"""driftsync's staff site: its own name, connections and their health first,
and the plumbing (logins, sites, OAuth clients, the task queue) shown to
superusers only."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.contrib import admin
from django.http import HttpRequest
from django.urls import reverse

#: apps a marketing-ops person never needs: superusers still see them
SUPERUSER_ONLY_APPS = frozenset({"account", "socialaccount", "sites", "django_q"})

#: the order of the index: the connections app first, its models by use
APP_ORDER = ["connections", "auth"]
MODEL_ORDER = ["Connection", "Account", "SyncRun", "ContactLink", "SyncEvent", "Rule"]


@dataclass(frozen=True)
class ConnectionSummary:
    name: str
    url: str
    apps: str
    state: str
    state_key: str
    reason: str
    last_synced: str


def _rank(order: list[str], key: str) -> tuple[int, str]:
    return (order.index(key) if key in order else len(order), key)


class DriftsyncAdminSite(admin.AdminSite):
    site_header = "driftsync"
    site_title = "driftsync"
    index_title = "Connections and their health"
    #: there is no public site to view
    site_url = None

    def get_app_list(self, request: HttpRequest, app_label: str | None = None) -> list[Any]:
        apps = super().get_app_list(request, app_label)
        if not request.user.is_superuser:
            apps = [a for a in apps if a["app_label"] not in SUPERUSER_ONLY_APPS]
        apps.sort(key=lambda a: _rank(APP_ORDER, a["app_label"]))
        for app in apps:
            app["models"].sort(key=lambda m: _rank(MODEL_ORDER, m["object_name"]))
        return apps

    def index(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> Any:
        extra_context = {**(extra_context or {}), "connections": self.connections(request)}
        return super().index(request, extra_context)

    def connections(self, request: HttpRequest) -> list[ConnectionSummary]:
        """Each connection this person may see, with its state in a word."""
        from connections.health import connection_state, last_synced
        from connections.models import Connection

        model_admin = self._registry.get(Connection)
        if model_admin is None or not model_admin.has_view_or_change_permission(request):
            return []
        out = []
        for conn in Connection.objects.select_related("account_a", "account_b"):
            if conn.state == Connection.State.DRAFT:
                key, label, reason = "draft", "Draft: not started", "set it up, then Start syncing"
                synced = ""
            else:
                state = connection_state(conn)
                key, label, reason = state.key, state.label, state.reason
                synced = last_synced(conn)
            out.append(
                ConnectionSummary(
                    name=conn.name,
                    url=reverse("admin:connections_connection_change", args=[conn.pk]),
                    apps=conn.arrow(conn.direction),
                    state=label,
                    state_key=key,
                    reason=reason,
                    last_synced=synced,
                )
            )
        return out
