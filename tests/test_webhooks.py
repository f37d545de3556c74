"""Inbound webhooks: verified, stored before anything else, a run queued, and
refused deliveries stored as rejected with the reason. Payloads are stored
fixtures in ``tests/fixtures/webhooks``."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from connections import webhooks
from connections.accounts import refresh_account
from connections.config import apply_defaults
from connections.models import Account, Connection, WebhookEvent
from connections.tasks import run_sync
from connectors.mailchimp.client import subscriber_hash
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl

pytestmark = pytest.mark.integration

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"
TOKEN = "vtok-123"
DRIFT_URL = "/webhooks/drift/"


def fixture(name: str) -> str:
    return (FIXTURES / name).read_text().strip()


def drift_payload(name: str, **changes: Any) -> dict[str, Any]:
    payload = json.loads(fixture(name))
    payload.update(changes)
    return payload


@pytest.fixture
def token(settings: Any) -> str:
    settings.DRIFT_VERIFICATION_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, str]]:
    """Runs the views queue (they call enqueue_sync once the request commits)."""
    calls: list[tuple[int, str]] = []

    def fake(connection: Connection, *, trigger: str, **options: Any) -> str:
        calls.append((connection.pk, trigger))
        return "task-id"

    monkeypatch.setattr("connections.tasks.enqueue_sync", fake)
    return calls


def post_drift(client: Client, payload: dict[str, Any] | str, *, header: str | None = TOKEN) -> Any:
    body = payload if isinstance(payload, str) else json.dumps(payload)
    headers = {"HTTP_X_VERIFICATION_TOKEN": header} if header is not None else {}
    return client.post(DRIFT_URL, body, content_type="application/json", **headers)


@pytest.fixture
def drift_world(
    make_account: Callable[..., Account], make_connection: Callable[..., Connection]
) -> tuple[Account, Connection, Connection]:
    drift = make_account("drift", remote_id="1234")
    active = make_connection(drift, make_account("hubspot"), name="drift → hubspot")
    paused = make_connection(
        make_account("google"), drift, name="google → drift", state=Connection.State.PAUSED
    )
    return drift, active, paused


# ------------------------------------------------------------------- Drift


def test_a_verified_drift_delivery_is_stored_and_queues_a_run_for_each_active_connection(
    client: Client,
    token: str,
    queued: list[tuple[int, str]],
    drift_world: tuple[Account, Connection, Connection],
    django_capture_on_commit_callbacks: Any,
) -> None:
    drift, active, _paused = drift_world
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = post_drift(client, drift_payload("drift_contact_identified.json"))
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain")
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert (event.source, event.account, event.connection) == ("drift", drift, None)
    assert event.event_type == "contact_identified"
    assert (event.kind, event.contact_id) == ("identified", "16344778575")
    assert event.email == "newcontact@email.com"
    # the run is queued after the commit, never run inside the request
    assert len(callbacks) == 1
    assert queued == [(active.pk, "webhook")]


def test_the_verification_token_is_masked_in_the_stored_body(
    client: Client, token: str, queued: list, drift_world: Any
) -> None:
    post_drift(client, drift_payload("drift_contact_identified.json"))
    body = WebhookEvent.objects.get().body
    assert TOKEN not in body
    assert json.loads(body)["data"]["id"] == 16344778575


@pytest.mark.parametrize(
    ("body_token", "header", "reason"),
    [
        ("wrong", TOKEN, "Verification token in the body does not match"),
        (TOKEN, "wrong", "X-Verification-Token header does not match"),
        (TOKEN, None, "X-Verification-Token header does not match"),
        ("", TOKEN, "Verification token in the body does not match"),
    ],
)
def test_a_delivery_with_a_bad_token_is_refused_and_stored_as_rejected(
    client: Client,
    token: str,
    queued: list,
    drift_world: Any,
    body_token: str,
    header: str | None,
    reason: str,
) -> None:
    payload = drift_payload("drift_contact_identified.json", token=body_token)
    response = post_drift(client, payload, header=header)
    assert response.status_code == 403
    assert reason in response.content.decode()
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert reason in event.error
    assert event.contact_id == ""  # the engine never reads it
    assert queued == []


def test_a_delivery_from_an_unknown_org_is_stored_as_rejected(
    client: Client, token: str, queued: list, drift_world: Any
) -> None:
    response = post_drift(client, drift_payload("drift_contact_identified.json", orgId=999))
    assert response.status_code == 404
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert event.account is None
    assert "Unknown Drift org 999" in event.error
    assert queued == []


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ('{"type": "contact_identified", "token": "vtok-123", ', "not JSON"),
        ("[1, 2, 3]", 'not an object with a "type"'),
        ('{"token": "vtok-123", "orgId": 1234, "data": {}}', 'not an object with a "type"'),
        (fixture("drift_updated_without_contact.json"), "without an endUserId"),
        (
            '{"type": "contact_identified", "token": "vtok-123", "orgId": 1234, "data": 5}',
            "without a data object",
        ),
        ('{"type": "contact_identified", "token": "vtok-123", "data": {"id": 1}}', "no orgId"),
    ],
)
def test_a_malformed_drift_delivery_is_a_400_stored_as_rejected(
    client: Client, token: str, queued: list, drift_world: Any, body: str, reason: str
) -> None:
    response = post_drift(client, body)
    assert response.status_code == 400
    assert reason in response.content.decode()
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert reason in event.error
    assert queued == []


def test_without_a_configured_token_nothing_is_accepted(
    client: Client, settings: Any, queued: list, drift_world: Any, monkeypatch: Any
) -> None:
    settings.DRIFT_VERIFICATION_TOKEN = ""
    monkeypatch.delenv("DRIFT_VERIFICATION_TOKEN", raising=False)
    response = post_drift(client, drift_payload("drift_contact_identified.json"))
    assert response.status_code == 503
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.REJECTED


def test_an_oversized_body_is_refused_and_stored_cut_to_the_cap(
    client: Client, token: str, queued: list, drift_world: Any
) -> None:
    payload = drift_payload("drift_contact_identified.json")
    payload["data"]["attributes"]["junk"] = "x" * (webhooks.MAX_STORED_BODY + 10)
    response = post_drift(client, payload)
    assert response.status_code == 413
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert len(event.body) <= webhooks.MAX_STORED_BODY


def test_an_event_that_is_not_about_a_contact_is_stored_as_ignored(
    client: Client, token: str, queued: list, drift_world: Any
) -> None:
    response = post_drift(client, drift_payload("drift_new_message.json"))
    assert response.status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.event_type == "new_message"
    assert queued == []


def test_updated_and_unsubscribed_events_carry_their_kind(
    client: Client, token: str, queued: list, drift_world: Any
) -> None:
    post_drift(client, drift_payload("drift_contact_updated.json"))
    post_drift(client, drift_payload("drift_user_unsubscribed.json"))
    kinds = list(WebhookEvent.objects.order_by("pk").values_list("kind", "contact_id"))
    assert kinds == [("updated", "16344778575"), ("unsubscribed", "16344778575")]


def test_a_repeated_delivery_is_stored_as_ignored_and_queues_nothing(
    client: Client,
    token: str,
    queued: list,
    drift_world: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    payload = drift_payload("drift_contact_identified.json")
    with django_capture_on_commit_callbacks(execute=True):
        assert post_drift(client, payload).status_code == 200
        assert post_drift(client, payload).status_code == 200
    first, second = WebhookEvent.objects.order_by("pk")
    assert first.status == WebhookEvent.Status.RECEIVED
    assert second.status == WebhookEvent.Status.IGNORED
    assert f"Repeat of delivery #{first.pk}" in second.error
    assert len(queued) == 1


# ---------------------------------------------------- Drift, end to end


class Sandbox:
    def __init__(self, server: SandboxServer, key: str) -> None:
        self.server, self.key = server, key
        self.root = server.url(key)

    def ctl(self, method: str, path: str, body: Any = None) -> Any:
        return SandboxControl.of(self.server, self.key, timeout=10).call(method, path, body)

    def writes(self) -> dict[str, int]:
        return {
            k: v
            for k, v in self.ctl("GET", "/stats").items()
            if not k.startswith("GET") and "search" not in k and "batch/read" not in k
        }

    def account(self, **values: Any) -> Account:
        token = self.ctl("POST", "/tokens", {"ttl": 3600})
        account = Account.objects.create(
            connector=self.key,
            label=f"{self.key} sandbox",
            base_url=api_base_url(self.server, self.key),
            **values,
        )
        account.credentials = {"access_token": token["access_token"], "api_key": "", "extra": {}}
        account.save()
        refresh_account(account)
        account.refresh_from_db()
        return account


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("drift", "hubspot"))
    yield srv
    srv.stop()


def test_a_repeat_delivery_makes_no_extra_writes_to_any_app(
    server: SandboxServer, client: Client, token: str, db: None
) -> None:
    drift, hubspot = Sandbox(server, "drift"), Sandbox(server, "hubspot")
    for app in (drift, hubspot):
        app.ctl("POST", "/reset")
    conn = Connection.objects.create(
        name="drift ↔ hubspot",
        account_a=drift.account(),
        account_b=hubspot.account(),
        state=Connection.State.ACTIVE,
    )
    apply_defaults(conn)
    assert conn.account_a.remote_id == "1234"
    cid = drift.ctl("POST", "/contacts", {"email": "ann@example.com", "name": "Ann Lee"})["id"]
    payload = drift_payload("drift_contact_identified.json")
    payload["data"] = drift.ctl("GET", f"/contacts/{cid}")

    assert post_drift(client, payload).status_code == 200
    run_sync(conn.pk, trigger="webhook")
    assert hubspot.ctl("GET", "/contacts")["contacts"], "the contact reached HubSpot"

    # the same delivery again (as if Drift retried after our window): stored,
    # and the engine reads the contact again, but nothing is written anywhere
    WebhookEvent.objects.update(received_at="2000-01-01T00:00:00Z")
    before = {"drift": drift.writes(), "hubspot": hubspot.writes()}
    assert post_drift(client, payload).status_code == 200
    assert post_drift(client, payload).status_code == 200
    statuses = list(WebhookEvent.objects.order_by("pk").values_list("status", flat=True))
    assert statuses == ["processed", "received", "ignored"]
    run_id = run_sync(conn.pk, trigger="webhook")
    assert run_id is not None
    assert {"drift": drift.writes(), "hubspot": hubspot.writes()} == before
    assert len(hubspot.ctl("GET", "/contacts")["contacts"]) == 1


# --------------------------------------------------------------- Mailchimp


@pytest.fixture
def mailchimp_connection(
    make_account: Callable[..., Account], make_connection: Callable[..., Connection]
) -> Connection:
    mailchimp = make_account("mailchimp", base_url="http://127.0.0.1:9/mailchimp/3.0")
    return make_connection(
        make_account("drift"),
        mailchimp,
        name="drift ↔ mailchimp",
        settings_b={"audience": "a1b2c3d4e5"},
    )


def mailchimp_url(conn: Connection, secret: str | None = None) -> str:
    return f"/webhooks/mailchimp/{secret or conn.webhook_secret}/"


def post_form(client: Client, url: str, body: str) -> Any:
    return client.post(url, body, content_type="application/x-www-form-urlencoded")


def test_mailchimp_checks_the_url_with_a_get(
    client: Client, mailchimp_connection: Connection
) -> None:
    response = client.get(mailchimp_url(mailchimp_connection))
    assert response.status_code == 200
    assert WebhookEvent.objects.count() == 0


def test_a_mailchimp_unsubscribe_is_stored_for_its_connection_and_queues_a_run(
    client: Client,
    mailchimp_connection: Connection,
    queued: list,
    django_capture_on_commit_callbacks: Any,
) -> None:
    with django_capture_on_commit_callbacks(execute=True):
        response = post_form(
            client, mailchimp_url(mailchimp_connection), fixture("mailchimp_unsubscribe.txt")
        )
    assert response.status_code == 200, response.content
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.RECEIVED
    assert event.connection == mailchimp_connection
    assert event.account == mailchimp_connection.account_b
    assert (event.event_type, event.kind) == ("unsubscribe", "unsubscribed")
    assert event.email == "api+unsub@mailchimp.com"
    assert queued == [(mailchimp_connection.pk, "webhook")]


def test_a_mailchimp_event_of_another_audience_is_ignored(
    client: Client, mailchimp_connection: Connection, queued: list
) -> None:
    body = fixture("mailchimp_profile.txt").replace("a1b2c3d4e5", "other-list")
    assert post_form(client, mailchimp_url(mailchimp_connection), body).status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.IGNORED
    assert queued == []


@pytest.mark.parametrize(
    ("method", "status", "reason"),
    [("get", 404, "Unknown webhook URL"), ("post", 404, "Unknown webhook URL")],
)
def test_a_wrong_secret_is_refused_and_stored_as_rejected(
    client: Client,
    mailchimp_connection: Connection,
    queued: list,
    method: str,
    status: int,
    reason: str,
) -> None:
    url = mailchimp_url(mailchimp_connection, secret="guessed-0123456789abcdef")
    if method == "get":
        response = client.get(url)
    else:
        response = post_form(client, url, fixture("mailchimp_unsubscribe.txt"))
    assert response.status_code == status
    assert reason in response.content.decode()
    event = WebhookEvent.objects.get()
    # a wrong secret names no connection: it looks like an unknown URL
    assert (event.status, event.connection) == ("rejected", None)
    assert queued == []


def test_an_unknown_connection_is_a_404(client: Client, db: None, queued: list) -> None:
    response = post_form(
        client, "/webhooks/mailchimp/999/abc/", fixture("mailchimp_unsubscribe.txt")
    )
    assert response.status_code == 404
    assert "Unknown webhook URL" in response.content.decode()
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.REJECTED


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        ("", 'no "type"'),
        ("fired_at=2009-03-26&data%5Bemail%5D=x%40y.z", 'no "type"'),
        ("type=unsubscribe&data%5Baction%5D=unsub", 'without "data[email]"'),
        ("type=upemail&data%5Bold_email%5D=a%40b.c", 'without "data[new_email]"'),
        ("\x00\x01 not a form", "not a form body"),
    ],
)
def test_a_malformed_mailchimp_delivery_is_a_400_stored_as_rejected(
    client: Client, mailchimp_connection: Connection, queued: list, body: str, reason: str
) -> None:
    response = post_form(client, mailchimp_url(mailchimp_connection), body)
    assert response.status_code == 400
    assert reason in response.content.decode()
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert reason in event.error
    assert queued == []


def test_a_paused_connection_stores_the_delivery_but_queues_nothing(
    client: Client, mailchimp_connection: Connection, queued: list
) -> None:
    Connection.objects.filter(pk=mailchimp_connection.pk).update(state=Connection.State.PAUSED)
    body = fixture("mailchimp_profile.txt")
    assert post_form(client, mailchimp_url(mailchimp_connection), body).status_code == 200
    assert WebhookEvent.objects.get().status == WebhookEvent.Status.RECEIVED
    assert queued == []


def test_a_mailchimp_email_change_is_stored_with_the_members_new_id(
    client: Client, mailchimp_connection: Connection, queued: list
) -> None:
    body = (
        "type=upemail&fired_at=2009-03-26+22%3A15%3A09&data%5Blist_id%5D=a1b2c3d4e5"
        "&data%5Bnew_email%5D=api%2Bnew%40mailchimp.com&data%5Bold_email%5D=api%2Bold%40mailchimp.com"
    )
    assert post_form(client, mailchimp_url(mailchimp_connection), body).status_code == 200
    event = WebhookEvent.objects.get()
    assert (event.status, event.kind) == ("received", "email_changed")
    assert event.contact_id == subscriber_hash("api+old@mailchimp.com")
    assert event.new_contact_id == subscriber_hash("api+new@mailchimp.com")
    assert event.email == "api+new@mailchimp.com"


def test_a_nul_byte_is_stored_escaped(
    client: Client, mailchimp_connection: Connection, queued: list
) -> None:
    post_form(client, mailchimp_url(mailchimp_connection), "type=profile&\x00")
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    assert "\x00" not in event.body
    assert "\\x00" in event.body


def test_email_changes_stored_before_the_new_field_get_their_new_id(
    mailchimp_connection: Connection,
) -> None:
    from importlib import import_module

    from django.apps import apps

    migration = import_module("connections.migrations.0003_webhookevent_new_contact_id")
    body = fixture("mailchimp_profile.txt").replace("type=profile", "type=upemail")
    body += "&data%5Bnew_email%5D=new%40example.com&data%5Bold_email%5D=old%40example.com"
    row = WebhookEvent.objects.create(
        source="mailchimp", connection=mailchimp_connection, kind="email_changed", body=body
    )
    migration.backfill_new_contact_ids(apps, None)
    row.refresh_from_db()
    assert row.new_contact_id == subscriber_hash("new@example.com")


@pytest.mark.integration
def test_a_drift_delivery_keeps_the_time_drift_says_the_change_happened(
    client, settings, make_account
):
    import datetime as dt
    import json

    from django.urls import reverse

    settings.DRIFT_VERIFICATION_TOKEN = "tok"
    make_account("drift", remote_id="21")
    body = {
        "type": "contact_identified",
        "token": "tok",
        "orgId": 21,
        "createdAt": 1767225600000,  # 2026-01-01 00:00:00 UTC
        "data": {"id": 5, "attributes": {"email": "ann@example.com"}},
    }
    response = client.post(
        reverse("webhooks:drift"),
        json.dumps(body),
        content_type="application/json",
        headers={"X-Verification-Token": "tok"},
    )
    assert response.status_code == 200, response.content
    row = WebhookEvent.objects.get(contact_id="5")
    assert row.occurred_at == dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
