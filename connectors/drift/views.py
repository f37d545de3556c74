"""allauth OAuth 2 views for Drift.

Drift's token answer carries the org id (``orgId``); older answers and other
clients use snake_case or camelCase keys, so both are accepted. The URLs can
be pointed at the sandbox through ``SOCIALACCOUNT_PROVIDERS["drift"]``
(``AUTHORIZE_URL``, ``ACCESS_TOKEN_URL``, ``API_URL``).
"""

from __future__ import annotations

from typing import Any

from allauth.socialaccount.adapter import get_adapter
from allauth.socialaccount.models import SocialApp, SocialLogin, SocialToken
from allauth.socialaccount.providers.base import ProviderException
from allauth.socialaccount.providers.oauth2.client import OAuth2Client, OAuth2Error
from allauth.socialaccount.providers.oauth2.views import (
    OAuth2Adapter,
    OAuth2CallbackView,
    OAuth2LoginView,
)
from django.conf import settings
from django.http import HttpRequest

from ..hosts import override_allowed

AUTHORIZE_URL = "https://dev.drift.com/authorize"
ACCESS_TOKEN_URL = "https://driftapi.com/oauth2/token"
API_URL = "https://driftapi.com"

#: camelCase keys Drift may use, and the names allauth expects
TOKEN_KEYS = {
    "accessToken": "access_token",
    "refreshToken": "refresh_token",
    "expiresIn": "expires_in",
    "tokenType": "token_type",
    "org_id": "orgId",
}


def provider_setting(name: str, default: str) -> str:
    """An endpoint from settings, honoured only where base-URL overrides are
    allowed (``connectors.hosts``): the code and client secret go there."""
    conf = getattr(settings, "SOCIALACCOUNT_PROVIDERS", {}).get("drift", {})
    override = conf.get(name) if override_allowed() else None
    return str(override or default).rstrip("/")


def normalize_token_response(data: dict[str, Any]) -> dict[str, Any]:
    out = dict(data)
    for theirs, ours in TOKEN_KEYS.items():
        if out.get(ours) in (None, "") and out.get(theirs) not in (None, ""):
            out[ours] = out[theirs]
    return out


def org_id_from_token_info(info: dict[str, Any]) -> str:
    org = info.get("orgId") or info.get("org_id")
    if org in (None, ""):
        userid = str(info.get("authenticated_userid") or "")
        if userid.startswith("orgId:"):
            org = userid.partition(":")[2]
    return str(org or "")


class DriftOAuth2Client(OAuth2Client):
    def get_access_token(
        self, code: str, pkce_code_verifier: str | None = None, extra_data: Any = None
    ) -> dict[str, Any]:
        # allauth insists on "access_token"; rename camelCase keys first
        url = self.access_token_url
        data = {
            "client_id": self.consumer_key,
            "client_secret": self.consumer_secret,
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": self.callback_url,
        }
        if pkce_code_verifier:
            data["code_verifier"] = pkce_code_verifier
        with get_adapter().get_requests_session() as session:
            response = session.post(url, data=data, headers=self.headers)
        try:
            body = response.json()
        except ValueError:
            body = None
        if response.status_code not in (200, 201) or not isinstance(body, dict):
            raise OAuth2Error(f"Error retrieving access token: {response.content!r}")
        token = normalize_token_response(body)
        if not token.get("access_token"):
            raise OAuth2Error(f"Error retrieving access token: {response.content!r}")
        return token


class DriftOAuth2Adapter(OAuth2Adapter):
    provider_id = "drift"
    client_class = DriftOAuth2Client

    @property
    def authorize_url(self) -> str:  # type: ignore[override]
        return provider_setting("AUTHORIZE_URL", AUTHORIZE_URL)

    @property
    def access_token_url(self) -> str:  # type: ignore[override]
        return provider_setting("ACCESS_TOKEN_URL", ACCESS_TOKEN_URL)

    @property
    def api_url(self) -> str:
        return provider_setting("API_URL", API_URL)

    def parse_token(self, data: dict[str, Any]) -> SocialToken:
        return super().parse_token(normalize_token_response(data))

    def complete_login(
        self, request: HttpRequest, app: SocialApp, token: SocialToken, **kwargs: Any
    ) -> SocialLogin:
        response = normalize_token_response(kwargs.get("response") or {})
        org_id = org_id_from_token_info(response)
        info: dict[str, Any] = {}
        if not org_id or not response.get("scope"):
            # the token answer did not say whose org (or which scopes): ask Drift
            with get_adapter().get_requests_session() as session:
                answer = session.post(
                    f"{self.api_url}/app/token_info",
                    json={"access_token": token.token},
                    headers={"Authorization": f"Bearer {token.token}"},
                )
            if answer.status_code != 200:
                raise ProviderException(f"Drift token_info failed: {answer.text[:200]}")
            info = answer.json()
            org_id = org_id or org_id_from_token_info(info)
        if not org_id:
            raise ProviderException("Drift did not say which organization authorized the app")
        extra = {
            "orgId": org_id,
            "scope": str(response.get("scope") or info.get("scope") or ""),
        }
        return self.get_provider().sociallogin_from_response(request, extra)


oauth2_login = OAuth2LoginView.adapter_view(DriftOAuth2Adapter)
oauth2_callback = OAuth2CallbackView.adapter_view(DriftOAuth2Adapter)
