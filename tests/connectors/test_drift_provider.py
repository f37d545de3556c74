"""The Drift allauth provider, end to end against the sandbox's OAuth endpoints."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from allauth.core.exceptions import ImmediateHttpResponse
from allauth.socialaccount.adapter import DefaultSocialAccountAdapter
from allauth.socialaccount.models import SocialLogin
from django.conf import settings
from django.contrib.auth import get_user_model
from django.http import HttpResponseRedirect
from django.test import Client, override_settings

from connectors.drift.provider import DriftProvider
from connectors.drift.views import (
    ACCESS_TOKEN_URL,
    AUTHORIZE_URL,
    DriftOAuth2Adapter,
    normalize_token_response,
    org_id_from_token_info,
)
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("drift",))
    yield srv
    srv.stop()


@pytest.fixture
def sandbox_root(server: SandboxServer) -> Iterator[str]:
    root = api_base_url(server, "drift")
    SandboxControl.of(server, "drift", timeout=5).reset()
    providers = dict(settings.SOCIALACCOUNT_PROVIDERS)
    providers["drift"] = {
        "APP": {"client_id": "drift-client", "secret": "drift-secret"},
        "AUTHORIZE_URL": f"{root}/authorize",
        "ACCESS_TOKEN_URL": f"{root}/oauth2/token",
        "API_URL": root,
    }
    with override_settings(SOCIALACCOUNT_PROVIDERS=providers):
        yield root


RECORDED: list[SocialLogin] = []


class RecordingAdapter(DefaultSocialAccountAdapter):
    """Stands in for the project's adapter (which stores an Account): keeps
    what allauth hands over and ends the flow the same way, with a redirect."""

    def pre_social_login(self, request: Any, sociallogin: SocialLogin) -> None:
        RECORDED.append(sociallogin)
        raise ImmediateHttpResponse(HttpResponseRedirect("/connected/"))


@pytest.fixture
def added() -> Iterator[list[SocialLogin]]:
    RECORDED.clear()
    adapter = f"{__name__}.RecordingAdapter"
    with override_settings(SOCIALACCOUNT_ADAPTER=adapter):
        yield RECORDED
    RECORDED.clear()


def connect_drift(client: Client) -> Any:
    """Start the connect flow, let the sandbox approve, and come back."""
    start = client.post("/accounts/drift/login/?process=connect")
    assert start.status_code == 302, start.content[:500]
    authorize = start["Location"]
    query = urllib.parse.parse_qs(urllib.parse.urlsplit(authorize).query)
    assert query["client_id"] == ["drift-client"]
    assert query["response_type"] == ["code"]
    assert "state" in query
    assert "redirect_uri" in query
    approved = requests.get(authorize, allow_redirects=False, timeout=5)
    assert approved.status_code == 302
    callback = urllib.parse.urlsplit(approved.headers["Location"])
    return authorize, client.get(f"{callback.path}?{callback.query}")


@pytest.fixture
def staff_client(db: Any) -> Client:
    user = get_user_model().objects.create_user("staff", password="x", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.django_db
def test_connecting_drift_hands_the_tokens_and_org_to_allauth(
    staff_client: Client, sandbox_root: str, added: list[SocialLogin]
) -> None:
    authorize, done = connect_drift(staff_client)
    assert authorize.startswith(f"{sandbox_root}/authorize?")
    assert (done.status_code, done["Location"]) == (302, "/connected/")
    [login] = added
    assert login.state["process"] == "connect"
    assert login.account.provider == "drift"
    assert login.account.uid == "1234"
    assert login.token is not None
    assert login.token.token.startswith("sbx-at-")
    assert login.token.token_secret.startswith("sbx-rt-")
    assert login.token.expires_at is not None


@pytest.mark.django_db
def test_a_camel_case_token_answer_without_org_asks_token_info(
    staff_client: Client, sandbox_root: str, added: list[SocialLogin]
) -> None:
    SandboxControl(sandbox_root, key="drift", timeout=5).set_org(
        token_keys="camel", org_in_token=False, org_id=777
    )
    _authorize, done = connect_drift(staff_client)
    assert done.status_code == 302, done.content[:500]
    [login] = added
    assert login.account.uid == "777"
    assert "contact_write" in login.account.extra_data["scope"]
    assert login.token.token.startswith("sbx-at-")
    assert login.token.token_secret.startswith("sbx-rt-")


def test_the_provider_defaults_to_drifts_real_urls(rf: Any) -> None:
    adapter = DriftOAuth2Adapter(rf.get("/"))
    with override_settings(SOCIALACCOUNT_PROVIDERS={"drift": {}}):
        assert adapter.authorize_url == AUTHORIZE_URL == "https://dev.drift.com/authorize"
        assert adapter.access_token_url == ACCESS_TOKEN_URL
        assert adapter.api_url == "https://driftapi.com"
    assert DriftProvider.id == "drift"


def test_token_answers_are_read_in_either_key_style() -> None:
    camel = normalize_token_response({"accessToken": "a", "refreshToken": "r", "expiresIn": 7199})
    assert (camel["access_token"], camel["refresh_token"], camel["expires_in"]) == ("a", "r", 7199)
    assert org_id_from_token_info({"org_id": 5}) == "5"
    assert org_id_from_token_info({"authenticated_userid": "orgId:42"}) == "42"
    assert org_id_from_token_info({}) == ""
