"""The allauth connect flow against the sandboxes' OAuth endpoints, over real HTTP."""

from __future__ import annotations

import urllib.parse
from collections.abc import Iterator

import pytest
import requests
from allauth.socialaccount.models import SocialAccount, SocialToken
from django.db import connection
from django.test import Client
from django.urls import reverse

from connections.accounts import refresh_account
from connections.models import Account
from connectors.sandbox import SandboxServer, api_base_url, sandbox_class
from connectors.sandbox.base import Request, SandboxApp, route
from connectors.sandbox.control import SandboxControl

pytestmark = pytest.mark.django_db


class GoogleUserinfo(SandboxApp):
    """Google's userinfo endpoint, which the Google sandbox does not serve."""

    name = "googleid"

    def __init__(self, google: SandboxApp) -> None:
        super().__init__()
        self.google = google

    @route("GET", r"/oauth2/v2/userinfo", auth=False)
    def userinfo(self, request: Request) -> dict[str, str]:
        assert self.google.authorized(request)
        return {"id": "1122334455", "email": "staff@example.com", "name": "Staff"}


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    apps: dict[str, SandboxApp] = {
        key: sandbox_class(key)() for key in ("drift", "google", "mailchimp", "hubspot")
    }
    apps["googleid"] = GoogleUserinfo(apps["google"])
    srv = SandboxServer(apps).start()
    yield srv
    srv.stop()


@pytest.fixture
def oauth_settings(server: SandboxServer, settings) -> None:
    url = server.url
    app = {"client_id": "client", "secret": "secret"}
    settings.SOCIALACCOUNT_PROVIDERS = {
        "google": {
            "APP": app,
            "SCOPE": ["profile", "email", "https://www.googleapis.com/auth/contacts"],
            "AUTHORIZE_URL": url("google") + "/o/oauth2/v2/auth",
            "ACCESS_TOKEN_URL": url("google") + "/token",
            "IDENTITY_URL": url("googleid") + "/oauth2/v2/userinfo",
            "API_URL": api_base_url(server, "google"),
        },
        "hubspot": {
            "APP": app,
            "AUTHORIZE_URL": url("hubspot") + "/oauth/authorize",
            "ACCESS_TOKEN_URL": url("hubspot") + "/oauth/v1/token",
            "PROFILE_URL": url("hubspot") + "/oauth/v1/access-tokens",
            "API_URL": api_base_url(server, "hubspot"),
        },
        "mailchimp": {
            "APP": app,
            "AUTHORIZE_URL": url("mailchimp") + "/oauth2/authorize",
            "ACCESS_TOKEN_URL": url("mailchimp") + "/oauth2/token",
            "PROFILE_URL": url("mailchimp") + "/oauth2/metadata",
            "API_URL": api_base_url(server, "mailchimp"),
        },
        "drift": {
            "APP": app,
            "AUTHORIZE_URL": url("drift") + "/authorize",
            "ACCESS_TOKEN_URL": url("drift") + "/oauth2/token",
            "API_URL": api_base_url(server, "drift"),
        },
    }


def connect(client: Client, provider: str) -> requests.Response:
    """Click "Connect with …", let the sandbox approve, follow it back."""
    start = client.post(f"/accounts/{provider}/login/?process=connect")
    assert start.status_code == 302, start.content[:500]
    approve = requests.get(start.url, allow_redirects=False, timeout=10)
    assert approve.status_code == 302
    back = urllib.parse.urlsplit(approve.headers["Location"])
    return client.get(f"{back.path}?{back.query}")


def raw_credentials(account: Account) -> str:
    with connection.cursor() as cursor:
        cursor.execute("SELECT credentials FROM connections_account WHERE id = %s", [account.pk])
        return cursor.fetchone()[0]


@pytest.mark.parametrize(
    ("provider", "remote_id"),
    [("hubspot", "20250101"), ("mailchimp", "31415926"), ("google", "1122334455")],
)
def test_connecting_an_app_stores_encrypted_tokens_on_an_account(
    admin_client, oauth_settings, server, provider, remote_id
):
    response = connect(admin_client, provider)
    account = Account.objects.get(connector=provider)
    assert response.status_code == 302
    assert response.url == reverse("admin:connections_account_change", args=[account.pk])
    assert account.remote_id == remote_id
    assert account.credential_kind == Account.CredentialKind.OAUTH
    assert account.base_url == api_base_url(server, provider)
    creds = account.get_credentials()
    assert creds.access_token.startswith("sbx-")
    if provider != "mailchimp":  # Mailchimp tokens never expire and have no refresh
        assert creds.refresh_token.startswith("sbx-rt-")
        assert creds.expires_at
    raw = raw_credentials(account)
    assert raw.startswith("gAAAA")
    assert creds.access_token not in raw
    assert not creds.refresh_token or creds.refresh_token not in raw
    assert not SocialToken.objects.exists()
    assert not SocialAccount.objects.exists()
    if provider == "mailchimp":
        assert creds.extra["dc"]


def test_connecting_drift_and_reconnecting_updates_the_same_account(
    admin_client, oauth_settings, server
):
    connect(admin_client, "drift")
    account = Account.objects.get(connector="drift")
    first = account.get_credentials().access_token
    connect(admin_client, "drift")
    assert Account.objects.filter(connector="drift").count() == 1
    account.refresh_from_db()
    assert account.get_credentials().access_token != first
    assert account.remote_id
    assert not SocialToken.objects.exists()
    assert not SocialAccount.objects.exists()


def test_refresh_account_reads_identity_fields_and_options(admin_client, oauth_settings):
    connect(admin_client, "drift")
    account = Account.objects.get(connector="drift")
    info = refresh_account(account)
    account.refresh_from_db()
    assert account.status == Account.Status.OK
    assert account.remote_id == str(info.remote_id)
    assert any(f["key"] == "email" for f in account.schema)
    assert "tags_attribute" in account.options


def test_test_connection_reports_a_revoked_token_as_needing_reauthorization(
    admin_client, oauth_settings, server
):
    connect(admin_client, "hubspot")
    account = Account.objects.get(connector="hubspot")
    SandboxControl.of(server, "hubspot", timeout=10).revoke_tokens()
    secret = account.get_credentials().access_token
    url = reverse("admin:connections_account_test", args=[account.pk])
    page = admin_client.post(url, follow=True).content.decode()
    account.refresh_from_db()
    assert account.status in (Account.Status.NEEDS_REAUTH, Account.Status.ERROR)
    assert account.status_reason
    assert secret not in page
    assert secret not in account.status_reason


def test_signing_in_with_an_app_is_refused(oauth_settings, server):
    client = Client()
    start = client.post("/accounts/hubspot/login/")
    approve = requests.get(start.url, allow_redirects=False, timeout=10)
    back = urllib.parse.urlsplit(approve.headers["Location"])
    response = client.get(f"{back.path}?{back.query}")
    assert response.status_code == 302
    assert "_auth_user_id" not in client.session
    assert not Account.objects.exists()
    assert not SocialAccount.objects.exists()
