"""Hostile input to the webhook views (issue 11, findings 2-4): every
malformed body is a 4xx stored as rejected, never a 500; refused deliveries
keep an excerpt and are rate-limited per client address; the inbox is
purged after its retention; a Mailchimp URL is its token alone, and a wrong
token looks exactly like an unknown one.

Integration: the NUL cases only fail on PostgreSQL (its text columns cannot
hold NUL, and it refuses NUL in a query)."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_q.models import Schedule

from connections import schedules, webhooks
from connections.models import Account, Connection, WebhookEvent

pytestmark = [pytest.mark.integration, pytest.mark.django_db]

TOKEN = "vtok-123"
DRIFT_URL = "/webhooks/drift/"


@pytest.fixture
def token(settings: Any) -> str:
    settings.DRIFT_VERIFICATION_TOKEN = TOKEN
    return TOKEN


@pytest.fixture
def drift(make_account: Callable[..., Account], make_connection: Callable[..., Connection]):
    account = make_account("drift", remote_id="1234")
    make_connection(account, make_account("hubspot"), state=Connection.State.ACTIVE)
    return account


@pytest.fixture
def mailchimp_conn(
    make_account: Callable[..., Account], make_connection: Callable[..., Connection]
) -> Connection:
    return make_connection(
        make_account("drift"),
        make_account("mailchimp", base_url="http://127.0.0.1:9/mailchimp/3.0"),
        settings_b={"audience": "a1b2c3d4e5"},
    )


def mailchimp_url(conn: Connection) -> str:
    return reverse("webhooks:mailchimp", args=[conn.webhook_secret])


def post_json(client: Client, body: str | bytes, *, header: str | None = TOKEN, **extra: Any):
    if header is not None:
        extra["HTTP_X_VERIFICATION_TOKEN"] = header
    return client.post(DRIFT_URL, body, content_type="application/json", **extra)


def post_form(client: Client, url: str, body: str, **extra: Any):
    return client.post(url, body, content_type="application/x-www-form-urlencoded", **extra)


def drift_body(**fields: Any) -> str:
    payload = {"type": "contact_identified", "token": TOKEN, "orgId": 1234}
    payload.update(fields)
    return json.dumps(payload)


def the_rejection() -> WebhookEvent:
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.REJECTED
    return event


# ------------------------------------------------- the reported bodies (finding 2)


def test_deeply_nested_json_without_a_token_is_a_400(client: Client, token: str, drift) -> None:
    depth = 30_000  # within the 64 KiB cap, far deeper than the JSON decoder goes
    body = '{"type": "contact_identified", "data": ' + "[" * depth + "]" * depth + "}"
    response = post_json(client, body, header=None)
    assert response.status_code == 400
    assert "nested too deeply" in the_rejection().error


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        ({"id": 1, "attributes": "ann@example.com"}, '"attributes" is not an object'),
        ({"id": 1, "attributes": ["ann@example.com"]}, '"attributes" is not an object'),
        ({"id": {"nested": 1}, "attributes": {}}, "contact id is not an id"),
        ({"id": 1, "attributes": {"email": ["a@b.c"]}}, "is not an email address"),
    ],
)
def test_a_drift_contact_of_the_wrong_shape_is_a_400(
    client: Client, token: str, drift, data: dict, reason: str
) -> None:
    response = post_json(client, drift_body(data=data))
    assert response.status_code == 400, response.content
    assert reason in the_rejection().error


def test_a_drift_diff_that_is_a_number_is_a_400(client: Client, token: str, drift) -> None:
    body = drift_body(type="contact_updated", data={"endUserId": 7, "diff": 5})
    response = post_json(client, body)
    assert response.status_code == 400
    assert '"diff" is not a list' in the_rejection().error


def test_a_mailchimp_fired_at_that_is_not_a_date_is_a_400(
    client: Client, mailchimp_conn: Connection
) -> None:
    body = "type=profile&fired_at=0001-01-01T00%3A00%3A00%2B01%3A00&data%5Bemail%5D=a%40b.c"
    response = post_form(client, mailchimp_url(mailchimp_conn), body)
    assert response.status_code == 400
    assert '"fired_at"' in the_rejection().error


@pytest.mark.parametrize(
    ("body", "header"),
    [
        (drift_body(type="contact_\u0000identified", data={"id": 1}), TOKEN),
        (drift_body(type="contact_\u0000identified", token="", data={"id": 1}), None),
        (drift_body(orgId="12\u00003", data={"id": 1}), TOKEN),
        (drift_body(type="contact_updated", data={"endUserId": "16\u00003"}), TOKEN),
        (drift_body(data={"id": 1, "attributes": {"email": "a\u0000@b.c"}}), TOKEN),
    ],
    ids=["type", "type-without-token", "orgId", "endUserId", "email"],
)
def test_a_nul_in_a_drift_value_is_a_400_stored_without_it(
    client: Client, token: str, drift, body: str, header: str | None
) -> None:
    response = post_json(client, body, header=header)
    assert 400 <= response.status_code < 500, response.content
    event = the_rejection()
    for field in ("event_type", "kind", "contact_id", "email", "body", "error"):
        assert "\x00" not in getattr(event, field)


def test_a_nul_in_a_mailchimp_email_is_a_400(client: Client, mailchimp_conn: Connection) -> None:
    body = "type=unsubscribe&data%5Blist_id%5D=a1b2c3d4e5&data%5Bemail%5D=a%00b%40example.com"
    response = post_form(client, mailchimp_url(mailchimp_conn), body)
    assert response.status_code == 400
    event = the_rejection()
    assert '"data[email]" is not an email address' in event.error
    assert "\x00" not in event.email + event.body


def test_a_lone_surrogate_is_stored_escaped(client: Client, token: str, drift) -> None:
    body = drift_body(type="conversation_\ud800x", data={})
    assert post_json(client, body).status_code == 200
    event = WebhookEvent.objects.get()
    assert event.status == WebhookEvent.Status.IGNORED
    assert event.event_type == "conversation_\\ud800x"


def test_a_parser_failing_unexpectedly_is_a_400_stored_as_rejected(
    client: Client, token: str, drift, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any) -> Any:
        raise KeyError("boom")

    app = webhooks.webhook_apps()["drift"]
    monkeypatch.setitem(webhooks.webhook_apps(), "drift", dataclasses.replace(app, parse=broken))
    response = post_json(client, drift_body(data={"id": 1}))
    assert response.status_code == 400
    assert "could not be read (KeyError)" in the_rejection().error


def test_every_text_column_is_made_storable_and_cut_to_its_size(db: None) -> None:
    event = WebhookEvent(source="drift")
    for field in WebhookEvent._meta.concrete_fields:
        if field.get_internal_type() in ("CharField", "TextField") and field.name != "status":
            setattr(event, field.attname, "a\x00" + "x" * 70_000)
    webhooks._make_storable(event)
    event.save()  # PostgreSQL refuses NUL; every column must take its value
    event.refresh_from_db()
    assert "\x00" not in event.contact_id
    assert event.contact_id.startswith("a\\x00x")
    assert len(event.event_type) == 60
    assert len(event.email) == 320


# ------------------------------------------------------ bounds (finding 3)


def test_a_rejected_delivery_keeps_an_excerpt_of_its_body(client: Client, token: str) -> None:
    response = post_json(client, drift_body(token="wrong", data={"junk": "x" * 20_000}))
    assert response.status_code == 403
    assert len(the_rejection().body) == webhooks.REJECTED_EXCERPT


def test_refused_deliveries_are_rate_limited_per_client_address(
    client: Client, token: str, drift, settings: Any
) -> None:
    settings.WEBHOOK_REJECTED_PER_SOURCE = 3
    bad = drift_body(token="wrong", data={"id": 1})
    attacker = {"REMOTE_ADDR": "203.0.113.5"}
    answers = [post_json(client, bad, **attacker).status_code for _ in range(5)]
    assert answers == [403, 403, 403, 429, 429]
    assert WebhookEvent.objects.count() == 3  # the 429s stored nothing
    # another address is not held back, nor is a genuine delivery
    assert post_json(client, bad, REMOTE_ADDR="198.51.100.7").status_code == 403
    good = post_json(client, drift_body(data={"id": 1}), **attacker)
    assert good.status_code == 200
    assert WebhookEvent.objects.filter(status="received").count() == 1


def test_refused_deliveries_from_everyone_are_bounded_too(
    client: Client, token: str, settings: Any
) -> None:
    settings.WEBHOOK_REJECTED_TOTAL = 2
    bad = drift_body(token="wrong")
    answers = [
        post_json(client, bad, REMOTE_ADDR=f"198.51.100.{n}").status_code for n in range(1, 4)
    ]
    assert answers == [403, 403, 429]


def test_an_ipv6_client_counts_by_its_64() -> None:
    class Request:
        def __init__(self, address: str) -> None:
            self.META = {"REMOTE_ADDR": address}

    key = webhooks.client_key
    assert key(Request("2001:db8:1:2::1")) == key(Request("2001:db8:1:2:ffff::9"))
    assert key(Request("2001:db8:1:2::1")) == "2001:db8:1:2::/64"
    assert key(Request("::ffff:203.0.113.5")) == "203.0.113.5"
    assert key(Request("not an address")) == ""


def test_the_purge_deletes_deliveries_past_their_retention(db: None, settings: Any) -> None:
    settings.WEBHOOK_RETENTION_DAYS = 30
    settings.WEBHOOK_REJECTED_RETENTION_DAYS = 7
    now = timezone.now()
    S = WebhookEvent.Status

    def row(status: str, days: int) -> WebhookEvent:
        return WebhookEvent.objects.create(
            source="drift", status=status, received_at=now - dt.timedelta(days=days)
        )

    kept = [row(S.PROCESSED, 29), row(S.IGNORED, 29), row(S.REJECTED, 6), row(S.RECEIVED, 100)]
    row(S.PROCESSED, 31)
    row(S.IGNORED, 31)
    row(S.REJECTED, 8)
    assert webhooks.purge_inbox() == {"processed": 2, "rejected": 1}
    assert set(WebhookEvent.objects.values_list("pk", flat=True)) == {e.pk for e in kept}


def test_the_purge_is_scheduled_daily_by_the_reconciliation(db: None) -> None:
    schedules.reconcile()
    purge = Schedule.objects.get(name=schedules.PURGE_NAME)
    assert (purge.func, purge.schedule_type, purge.repeats) == (
        "connections.webhooks.purge_inbox",
        Schedule.DAILY,
        -1,
    )
    assert schedules.sync_purge_schedule() == "unchanged"
    assert Schedule.objects.filter(name=schedules.PURGE_NAME).count() == 1


# ------------------------------------------- the Mailchimp URL (finding 4)


def test_the_mailchimp_url_is_its_token_alone(client: Client, mailchimp_conn: Connection) -> None:
    url = mailchimp_url(mailchimp_conn)
    assert url == f"/webhooks/mailchimp/{mailchimp_conn.webhook_secret}/"
    assert str(mailchimp_conn.pk) not in url.replace(mailchimp_conn.webhook_secret, "")
    assert client.get(url).status_code == 200
    body = "type=unsubscribe&data%5Blist_id%5D=a1b2c3d4e5&data%5Bemail%5D=a%40example.com"
    assert post_form(client, url, body).status_code == 200
    assert WebhookEvent.objects.get().connection == mailchimp_conn


def test_a_wrong_token_and_an_unknown_one_get_the_same_404(
    client: Client, mailchimp_conn: Connection
) -> None:
    pk = mailchimp_conn.pk
    answers = [
        client.post(f"/webhooks/mailchimp/{pk}/WrongGuess-0123456789abcdef/"),
        client.post(f"/webhooks/mailchimp/{pk + 1000}/WrongGuess-0123456789abcdef/"),
        client.post("/webhooks/mailchimp/WrongGuess-0123456789abcdef/"),
        client.get("/webhooks/mailchimp/WrongGuess-0123456789abcdef/"),
        # the right token with another connection's id
        client.post(f"/webhooks/mailchimp/{pk + 1000}/{mailchimp_conn.webhook_secret}/"),
    ]
    assert {(r.status_code, r.content) for r in answers} == {(404, b"Unknown webhook URL.\n")}
    assert set(WebhookEvent.objects.values_list("status", "connection")) == {("rejected", None)}


def test_an_old_style_url_still_works_for_registered_webhooks(
    client: Client, mailchimp_conn: Connection
) -> None:
    url = f"/webhooks/mailchimp/{mailchimp_conn.pk}/{mailchimp_conn.webhook_secret}/"
    body = "type=unsubscribe&data%5Blist_id%5D=a1b2c3d4e5&data%5Bemail%5D=a%40example.com"
    assert post_form(client, url, body).status_code == 200
    assert WebhookEvent.objects.get().connection == mailchimp_conn


def test_webhook_secrets_are_unique(make_connection: Callable[..., Connection]) -> None:
    from django.db import IntegrityError, transaction

    first = make_connection()
    with pytest.raises(IntegrityError), transaction.atomic():
        make_connection(webhook_secret=first.webhook_secret)
