"""Credentials only go to the vendor's own hosts (issue 11, finding 1).

A staff member who may change an account must not be able to collect its
API key or tokens by pointing its base URL at a host of theirs. Outside
DEBUG, and without ``DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE``, the admin and the
model refuse such a base URL, and the HTTP layer refuses to send anything
there even when the row was changed behind the admin's back.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User
from django.contrib.messages import get_messages
from django.core.exceptions import ValidationError
from django.test import Client
from django.urls import reverse

from connections.accounts import refresh_account
from connections.models import Account
from connectors.base import Credentials, PermanentError, UntrustedHost
from connectors.google.client import TOKEN_URL as GOOGLE_TOKEN_URL
from connectors.google.connector import GoogleConnector
from connectors.http import HttpClient, oauth_refresh
from driftsync.checks import check_base_url_override
from tests.test_settings import PRODUCTION, manage

pytestmark = pytest.mark.django_db

API_KEY = "0123456789abcdef0123456789abcdef-us6"
HTML_PAGE = "<html><body><script>alert('x')</script><h1>Bad Gateway from nginx</h1></body></html>"


class Recorder:
    """A loopback HTTP server that writes down every request it gets."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        self.answer: tuple[int, str, str] = (200, "application/json", "{}")
        recorder = self

        class Handler(BaseHTTPRequestHandler):
            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    self.rfile.read(length)
                recorder.requests.append((self.command, self.path, dict(self.headers)))
                status, content_type, body = recorder.answer
                data = body.encode()
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _any

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    server = Recorder()
    yield server
    server.close()


@pytest.fixture
def production(settings: Any) -> Any:
    settings.DEBUG = False
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = False
    return settings


@pytest.fixture
def account_changer(db: None) -> User:
    """Staff who may view and change accounts, nothing more."""
    user = User.objects.create_user("changer", password="changer-password-1", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(codename__in=["view_account", "change_account"])
    )
    return user


def mailchimp_account(**values: Any) -> Account:
    account = Account(connector="mailchimp", label="Production Mailchimp", **values)
    account.set_credentials(Credentials(api_key=API_KEY))
    account.save()
    return account


def google_oauth_account(**values: Any) -> Account:
    account = Account(
        connector="google",
        label="Production Google",
        credential_kind=Account.CredentialKind.OAUTH,
        **values,
    )
    account.set_credentials(
        Credentials(
            access_token="ya29.access-token-0123456789",
            refresh_token="1//refresh-token-0123456789",
            expires_at=time.time() - 60,  # expired: the next call refreshes first
        )
    )
    account.save()
    return account


# ------------------------------------------------------ the admin and the model


def test_the_admin_refuses_a_staff_user_who_points_an_account_at_another_host(
    production: Any, account_changer: User, recorder: Recorder
) -> None:
    account = mailchimp_account()
    client = Client()
    client.force_login(account_changer)
    url = reverse("admin:connections_account_change", args=[account.pk])
    response = client.post(url, {"label": account.label, "base_url": recorder.url + "/3.0"})
    assert response.status_code == 200  # the form again, with the error
    page = response.content.decode()
    assert "Credentials are only sent over HTTPS to Mailchimp" in page
    account.refresh_from_db()
    assert account.base_url == ""
    # and nothing was sent while refusing
    client.post(reverse("admin:connections_account_test", args=[account.pk]))
    assert recorder.requests == []


@pytest.mark.parametrize(
    ("connector", "base_url"),
    [
        ("mailchimp", "http://127.0.0.1:9/mailchimp/3.0"),
        ("mailchimp", "http://169.254.169.254/latest/meta-data"),
        ("mailchimp", "https://us6.api.mailchimp.com.attacker.example/3.0"),
        ("mailchimp", "http://us6.api.mailchimp.com/3.0"),
        ("google", "https://attacker.example/v1"),
        ("hubspot", "https://api.hubapi.com:8443"),
        ("drift", "https://user:pass@driftapi.com"),
    ],
)
def test_the_model_refuses_a_base_url_off_the_vendors_hosts(
    production: Any, connector: str, base_url: str
) -> None:
    account = Account(connector=connector, label="x", base_url=base_url)
    with pytest.raises(ValidationError) as refused:
        account.full_clean()
    assert "base_url" in refused.value.message_dict


@pytest.mark.parametrize(
    ("connector", "base_url"),
    [
        ("mailchimp", "https://us6.api.mailchimp.com/3.0"),
        ("google", "https://people.googleapis.com/v1"),
        ("hubspot", "https://api.hubapi.com"),
        ("drift", "https://driftapi.com"),
    ],
)
def test_the_vendors_own_base_url_is_always_accepted(
    production: Any, connector: str, base_url: str
) -> None:
    Account(connector=connector, label="x", base_url=base_url).full_clean()


# ------------------------------------------------------------ the HTTP layer


@pytest.mark.parametrize("connector", ["mailchimp", "google", "hubspot", "drift"])
def test_a_row_changed_behind_the_admins_back_sends_nothing(
    production: Any, recorder: Recorder, connector: str
) -> None:
    account = Account(connector=connector, label="x")
    account.set_credentials(Credentials(api_key=API_KEY, access_token="access-0123456789"))
    account.save()
    Account.objects.filter(pk=account.pk).update(base_url=recorder.url + "/api")
    account.refresh_from_db()
    with pytest.raises(UntrustedHost):
        account.build_connector({"audience": "x"}).check()
    with pytest.raises(PermanentError, match="Refused to send credentials"):
        refresh_account(account)
    assert recorder.requests == []
    account.refresh_from_db()
    assert account.status == Account.Status.ERROR
    assert "127.0.0.1" in account.status_reason


def test_an_expired_google_token_is_not_refreshed_towards_a_foreign_base_url(
    production: Any, recorder: Recorder
) -> None:
    account = google_oauth_account()
    Account.objects.filter(pk=account.pk).update(base_url=recorder.url + "/v1")
    account.refresh_from_db()
    with pytest.raises(UntrustedHost):
        account.build_connector().check()
    assert recorder.requests == []  # neither the access token nor the refresh token


def test_google_refresh_goes_only_to_googles_token_endpoint(
    production: Any, recorder: Recorder, monkeypatch: pytest.MonkeyPatch
) -> None:
    posted: list[tuple[str, dict[str, str]]] = []

    class Answer:
        status_code = 200

        def json(self) -> dict[str, Any]:
            return {"access_token": "fresh", "expires_in": 3600}

    class Session:
        def post(self, url: str, data: dict[str, str], **kwargs: Any) -> Answer:
            posted.append((url, data))
            return Answer()

    monkeypatch.setattr("connectors.google.connector.make_session", Session)
    assert GoogleConnector.token_url_for(recorder.url + "/google/v1") == GOOGLE_TOKEN_URL
    account = google_oauth_account(base_url="")
    Account.objects.filter(pk=account.pk).update(base_url=recorder.url + "/google/v1")
    account.refresh_from_db()
    connector = account.build_connector()
    assert connector.http.refresher is not None
    fresh = connector.http.refresher(account.get_credentials())
    assert fresh.access_token == "fresh"
    assert [url for url, _ in posted] == [GOOGLE_TOKEN_URL]
    # and a refresher never posts the refresh token and client secret elsewhere
    stray = oauth_refresh(Session, recorder.url + "/token", "id", "secret", ("x.example",))
    with pytest.raises(UntrustedHost):
        stray(account.get_credentials())
    assert len(posted) == 1
    assert recorder.requests == []


def test_a_bare_http_client_sends_credentials_only_to_its_vendor_hosts(
    production: Any, recorder: Recorder
) -> None:
    http = HttpClient(recorder.url, credentials=Credentials(api_key="k"), vendor_hosts=("a.b",))
    with pytest.raises(UntrustedHost):
        http.get_json("/anything")
    with pytest.raises(UntrustedHost):
        http.get_json("/anything", url=recorder.url + "/elsewhere")
    assert recorder.requests == []


# ------------------------------------------------------------- the sandboxes


@pytest.mark.parametrize(("debug", "override"), [(True, False), (False, True)])
def test_the_sandboxes_still_work_in_debug_or_with_the_override(
    settings: Any, recorder: Recorder, debug: bool, override: bool
) -> None:
    settings.DEBUG = debug
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = override
    account = Account(connector="hubspot", label="sandbox", base_url=recorder.url + "/hubspot")
    account.full_clean()
    account.set_credentials(Credentials(api_key="sandbox-token"))
    account.save()
    recorder.answer = (200, "application/json", '{"portalId": 42}')
    assert account.build_connector().check().remote_id == "42"
    paths = [path for _, path, _ in recorder.requests]
    # the account's details, then what the token is allowed (its scopes)
    assert paths[0] == "/hubspot/account-info/v3/details"
    assert all(path.startswith("/hubspot/") for path in paths)
    assert GoogleConnector.token_url_for(recorder.url + "/google/v1") == (
        recorder.url + "/google/token"
    )


def test_even_an_override_never_reaches_a_link_local_address(settings: Any) -> None:
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = True
    for url in (
        "http://169.254.169.254/latest",
        "http://[fe80::1]/",
        "http://metadata.google.internal/",
    ):
        with pytest.raises(ValidationError, match="link-local"):
            Account(connector="hubspot", label="x", base_url=url).full_clean()


# ---------------------------------------------------------- the deploy check


def test_check_deploy_warns_while_the_override_is_on(settings: Any) -> None:
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = False
    assert check_base_url_override() == []
    settings.DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE = True
    assert [m.id for m in check_base_url_override()] == ["driftsync.W001"]


def test_manage_check_deploy_fails_on_the_override_warning() -> None:
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        **PRODUCTION,
        DRIFTSYNC_ALLOW_BASE_URL_OVERRIDE="true",
    )
    assert result.returncode != 0
    assert "driftsync.W001" in result.stderr + result.stdout


# ------------------------------------------------- what the admin says back


def test_an_html_error_page_is_not_echoed_into_the_admin(
    admin_client: Client, recorder: Recorder
) -> None:
    # the override is on in the test settings: this is the sandbox case
    account = mailchimp_account(base_url=recorder.url + "/3.0")
    recorder.answer = (400, "text/html; charset=utf-8", HTML_PAGE)
    response = admin_client.post(reverse("admin:connections_account_test", args=[account.pk]))
    said = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "HTTP 400 from 127.0.0.1" in said
    assert "<script>" not in said
    assert "nginx" not in said
    account.refresh_from_db()
    assert "nginx" not in account.status_reason
    assert "<" not in account.status_reason


def test_a_long_plain_error_is_cut_short(admin_client: Client, recorder: Recorder) -> None:
    account = mailchimp_account(base_url=recorder.url + "/3.0")
    recorder.answer = (400, "text/plain", "x" * 5000)
    response = admin_client.post(reverse("admin:connections_account_test", args=[account.pk]))
    said = " ".join(str(m) for m in get_messages(response.wsgi_request))
    assert "x" * 400 not in said
    account.refresh_from_db()
    assert 0 < len(account.status_reason) <= 300
