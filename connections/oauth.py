"""Authorizing an app account with OAuth, through allauth's "connect" flow.

Staff click "Connect with <app>" in the Account admin, which starts allauth's
``/accounts/<provider>/login/?process=connect``. When the app sends the staff
member back with a code, allauth fetches the tokens and the profile and calls
the social adapter's ``pre_social_login``; there
(:class:`connections.auth.ConnectOnlySocialAccountAdapter`) we create or
update the :class:`~connections.models.Account` with the tokens, encrypted,
and stop the flow with a redirect. allauth never saves a ``SocialAccount``
or ``SocialToken``: no plaintext token in its tables, and authorizing an app
never becomes a way to sign in to the admin.

Endpoints can be pointed elsewhere (the sandboxes, a proxy) per provider in
``SOCIALACCOUNT_PROVIDERS[<id>]``: ``AUTHORIZE_URL``, ``ACCESS_TOKEN_URL``,
``PROFILE_URL`` (HubSpot token info, Mailchimp metadata), ``IDENTITY_URL``
(Google userinfo), and ``API_URL``, the API base an account authorized this
way talks to (stored as its base URL override). They are read on every
request, so tests can change them with ``override_settings``. Like an
account's base URL, they are honoured only where base-URL overrides are
allowed (DEBUG or ``DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE``, see
``connectors.hosts``): otherwise the code, the tokens and the client secret
go to the vendor's own endpoints.
"""

from __future__ import annotations

import logging
from typing import Any

from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.contrib import messages
from django.contrib.admin.models import ADDITION, CHANGE, LogEntry
from django.http import HttpRequest, HttpResponseRedirect
from django.urls import reverse

from connectors import registry
from connectors.base import Credentials
from connectors.hosts import override_allowed

from . import actions
from .models import Account

log = logging.getLogger(__name__)

#: adapter attribute -> settings key, for every provider that has the attribute
ENDPOINT_SETTINGS = {
    "authorize_url": "AUTHORIZE_URL",
    "access_token_url": "ACCESS_TOKEN_URL",
    "profile_url": "PROFILE_URL",
    "identity_url": "IDENTITY_URL",
}
PROVIDERS = ("google", "hubspot", "mailchimp", "drift")


def provider_settings(provider: str) -> dict[str, Any]:
    return getattr(settings, "SOCIALACCOUNT_PROVIDERS", {}).get(provider, {})


class SettingsURL:
    """A class attribute of an allauth adapter read from settings on each
    access, falling back to allauth's own URL."""

    def __init__(self, provider: str, key: str, default: str) -> None:
        self.provider, self.key, self.default = provider, key, default

    def __get__(self, instance: object, owner: type | None = None) -> str:
        override = provider_settings(self.provider).get(self.key) if override_allowed() else None
        return str(override or self.default)


def install_endpoint_overrides() -> None:
    """Make allauth's google/hubspot/mailchimp adapters read their URLs from
    settings. Adapters that already do (Drift's, via properties) are left alone."""
    from allauth.socialaccount.providers import registry as providers

    providers.load()
    for provider in PROVIDERS:
        cls = providers.get_class(provider)
        adapter = getattr(cls, "oauth2_adapter_class", None)
        if adapter is None:
            continue
        for attr, key in ENDPOINT_SETTINGS.items():
            current = adapter.__dict__.get(attr)
            if isinstance(current, str):
                setattr(adapter, attr, SettingsURL(provider, key, current))


def connect_url(provider: str) -> str:
    """Where a "Connect with <app>" button starts allauth's connect flow."""
    return f"{reverse(f'{provider}_login')}?process=connect"


# ------------------------------------------------------------ social login


def remote_id_of(sociallogin: SocialLogin) -> str:
    provider = sociallogin.account.provider
    data = sociallogin.account.extra_data or {}
    if provider == "hubspot" and data.get("hub_id"):
        return str(data["hub_id"])  # the portal, not the HubSpot user
    return str(sociallogin.account.uid)


def label_of(sociallogin: SocialLogin) -> str:
    provider = sociallogin.account.provider
    data = sociallogin.account.extra_data or {}
    name = dict(registry.choices()).get(provider, provider)
    if provider == "google":
        detail = data.get("email") or data.get("name")
    elif provider == "hubspot":
        detail = data.get("hub_domain") or data.get("user")
    elif provider == "mailchimp":
        detail = data.get("accountname") or (data.get("login") or {}).get("login_email")
    else:
        detail = f"org {remote_id_of(sociallogin)}"
    return f"{name} {detail or remote_id_of(sociallogin)}"


def credentials_of(sociallogin: SocialLogin, previous: Credentials | None) -> Credentials:
    token = sociallogin.token
    if token is None:
        raise ValueError("allauth returned no token")
    data = sociallogin.account.extra_data or {}
    extra = dict(previous.extra) if previous else {}
    provider = sociallogin.account.provider
    if provider == "mailchimp":
        extra.update({"dc": data.get("dc", ""), "api_endpoint": data.get("api_endpoint", "")})
    elif provider == "hubspot":
        extra.update({"hub_id": data.get("hub_id"), "scopes": data.get("scopes") or []})
    elif provider == "drift":
        extra.update({"org_id": remote_id_of(sociallogin), "scope": data.get("scope", "")})
    # providers that do not resend a refresh token (Google without consent) keep the old one
    refresh = token.token_secret or (previous.refresh_token if previous else "")
    return Credentials(
        access_token=token.token,
        refresh_token=refresh,
        expires_at=token.expires_at.timestamp() if token.expires_at else None,
        extra=extra,
    )


def _log(request: HttpRequest, account: Account, flag: int, message: str) -> None:
    LogEntry.objects.log_actions(
        user_id=request.user.pk,
        queryset=[account],
        action_flag=flag,
        change_message=message,
        single_object=True,
    )


def store_account(request: HttpRequest, sociallogin: SocialLogin) -> Account:
    """Create or update the Account this authorization is for."""
    provider = sociallogin.account.provider
    if provider not in dict(registry.choices()):
        raise PermissionError(f"{provider} is not a driftsync connector")
    remote_id = remote_id_of(sociallogin)
    base_url = str(provider_settings(provider).get("API_URL") or "") if override_allowed() else ""
    user = request.user
    account = Account.objects.filter(
        connector=provider, remote_id=remote_id, base_url=base_url
    ).first()
    needed = "connections.change_account" if account else "connections.add_account"
    if not user.has_perm(needed):
        raise PermissionError("You may not add or change app accounts.")
    previous = account.get_credentials() if account else None
    credentials = credentials_of(sociallogin, previous)
    if account is None:
        account = Account(
            connector=provider,
            label=label_of(sociallogin)[:200],
            remote_id=remote_id,
            base_url=base_url,
            created_by=user,
        )
        flag, verb = ADDITION, "Authorized with OAuth"
    else:
        flag, verb = CHANGE, "Re-authorized with OAuth"
    account.credential_kind = Account.CredentialKind.OAUTH
    account.set_credentials(credentials)
    account.status = Account.Status.UNCHECKED
    account.status_reason = ""
    account.save()
    _log(request, account, flag, verb)
    log.info("account %s authorized with %s by user %s", account.pk, provider, user.pk)
    return account


def finish_connect(request: HttpRequest, sociallogin: SocialLogin) -> None:
    """Called by the social adapter's ``pre_social_login``; always ends the
    flow with a redirect (``ImmediateHttpResponse``)."""
    changelist = reverse("admin:connections_account_changelist")
    if sociallogin.state.get("process") != "connect" or not request.user.is_authenticated:
        messages.error(
            request,
            "Apps are authorized from the admin (Accounts → Connect); "
            "sign in with your username and password.",
        )
        raise ImmediateHttpResponse(HttpResponseRedirect(settings.LOGIN_URL))
    if not request.user.is_staff:
        messages.error(request, "Only staff may authorize app accounts.")
        raise ImmediateHttpResponse(HttpResponseRedirect(changelist))
    try:
        account = store_account(request, sociallogin)
    except PermissionError as exc:
        messages.error(request, str(exc))
        raise ImmediateHttpResponse(HttpResponseRedirect(changelist)) from None
    # the connections this account's revoked token stopped resume
    resumed = actions.account_recovered(account, user=request.user)
    messages.success(
        request,
        f"“{account}” is authorized. Use “Test connection” to read its fields and settings.",
    )
    if resumed:
        names = ", ".join(str(c) for c in resumed)
        messages.success(request, f"Resumed now that the account is authorized again: {names}.")
    change = reverse("admin:connections_account_change", args=[account.pk])
    raise ImmediateHttpResponse(HttpResponseRedirect(change))
