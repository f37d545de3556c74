"""Accounts: authorize an app (OAuth button or pasted token, write-only) and
test it."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import flatten_fieldsets
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import HttpRequest, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse

from connectors import registry
from connectors.base import ConnectorError

from ..accounts import refresh_account
from ..forms import AccountForm
from ..models import Account, Connection
from ..oauth import connect_url
from .common import connector_oauth_provider, fragment


def account_connections(account: Account, state: str) -> list[Connection]:
    return list(Connection.objects.filter(Q(account_a=account) | Q(account_b=account), state=state))


def connect_buttons(keys: list[str]) -> list[tuple[str, str]]:
    """(url, label) of a "Connect with …" button for each app that has an
    OAuth provider."""
    names = dict(registry.choices())
    return [
        (connect_url(provider), f"Connect with {names[key]}")
        for key in keys
        if (provider := connector_oauth_provider(key))
    ]


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
    def connect(self, obj: Account | None) -> str:
        keys = [obj.connector] if obj and obj.pk else [k for k, _ in registry.choices()]
        buttons = connect_buttons(keys)
        if not buttons:
            return "This app takes a pasted token only."
        return fragment("account/connect_buttons.html", buttons=buttons)

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
        # refresh_account records the account's status (through
        # connections.actions where the app refused the credentials)
        waiting = set(account_connections(account, Connection.State.NEEDS_REAUTH))
        try:
            info = refresh_account(account, user=request.user)
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
        resumed = [c for c in account_connections(account, Connection.State.ACTIVE) if c in waiting]
        if resumed:
            names = ", ".join(str(c) for c in resumed)
            self.message_user(request, f"Resumed: {names}.", messages.SUCCESS)

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
            extra_context["connect_buttons"] = connect_buttons(
                [key for key, _name in registry.choices()]
            )
        return super().changelist_view(request, extra_context)
