"""Mailchimp's webhooks, verified and parsed as pure functions: no database,
no HTTP. Bodies are stored fixtures in ``fixtures/mailchimp`` (the shapes
Mailchimp documents)."""

from __future__ import annotations

from pathlib import Path

import pytest

from connectors.mailchimp import webhooks
from connectors.mailchimp.client import subscriber_hash
from connectors.webhooks import Delivery, Malformed, Scope, Unverified

FIXTURES = Path(__file__).parent / "fixtures" / "mailchimp"
AUDIENCE = {"audience": "a1b2c3d4e5"}
FORM = "application/x-www-form-urlencoded"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes().strip()


def delivery(body: bytes, url_secret: str = "") -> Delivery:
    return Delivery(body, FORM, {}, url_secret)


# -- verifying -------------------------------------------------------------


def test_the_secret_in_the_url_must_be_the_connections() -> None:
    assert webhooks.verify(delivery(b"", "s3cret"), "s3cret").event_type == ""
    for given, expected in (("guessed", "s3cret"), ("", "s3cret"), ("", "")):
        with pytest.raises(Unverified) as refused:
            webhooks.verify(delivery(b"", given), expected)
        assert "Wrong secret" in refused.value.reason
        assert refused.value.http_status == 403


def test_mailchimp_declares_a_url_per_connection_checked_with_a_get() -> None:
    from connectors.mailchimp.connector import MailchimpConnector

    assert MailchimpConnector.webhooks is webhooks.WEBHOOKS
    assert webhooks.WEBHOOKS.scope == Scope.CONNECTION
    assert "GET" in webhooks.WEBHOOKS.check_methods


# -- parsing ---------------------------------------------------------------


def test_an_unsubscribe_names_the_member_by_its_email_hash() -> None:
    parsed = webhooks.parse(delivery(load("unsubscribe.form")), AUDIENCE)
    assert parsed.event_type == "unsubscribe"
    [event] = parsed.events
    assert event.kind == "unsubscribed"
    assert event.email == "api+unsub@mailchimp.com"
    assert event.contact_id == subscriber_hash("api+unsub@mailchimp.com")
    assert event.unsubscribed
    assert not event.deleted
    assert event.record == {"FNAME": "Mailchimp", "LNAME": "API"}
    assert event.occurred_at is not None
    assert event.occurred_at.isoformat() == "2009-03-26T21:40:57+00:00"


def test_an_unsubscribe_that_deletes_is_a_deletion_not_an_unsubscribe() -> None:
    [event] = webhooks.parse(delivery(load("unsubscribe_delete.form")), AUDIENCE).events
    assert event.kind == "updated"
    assert event.deleted
    assert not event.unsubscribed


def test_an_email_change_gives_the_old_id_and_the_new_one() -> None:
    parsed = webhooks.parse(delivery(load("upemail.form")), AUDIENCE)
    [event] = parsed.events
    assert (parsed.event_type, event.kind) == ("upemail", "email_changed")
    assert event.contact_id == subscriber_hash("api+old@mailchimp.com")
    assert event.new_contact_id == subscriber_hash("api+new@mailchimp.com")
    assert event.email == "api+new@mailchimp.com"


@pytest.mark.parametrize(
    ("name", "kind"),
    [("subscribe.form", "identified"), ("profile.form", "profile"), ("cleaned.form", "updated")],
)
def test_each_member_event_has_its_kind(name: str, kind: str) -> None:
    [event] = webhooks.parse(delivery(load(name)), AUDIENCE).events
    assert event.kind == kind
    assert event.contact_id == subscriber_hash(event.email or "")


def test_an_event_of_another_audience_is_about_nothing_we_sync() -> None:
    body = load("profile.form").replace(b"a1b2c3d4e5", b"ffffffffff")
    assert webhooks.parse(delivery(body), AUDIENCE).events == ()
    # without an audience setting every list is ours
    assert len(webhooks.parse(delivery(body), {}).events) == 1


def test_an_event_type_we_do_not_sync_parses_to_nothing() -> None:
    parsed = webhooks.parse(delivery(b"type=campaign&data%5Bid%5D=1"), AUDIENCE)
    assert (parsed.event_type, parsed.events) == ("campaign", ())


@pytest.mark.parametrize("fired_at", [b"yesterday", b"0001-01-01T00%3A00%3A00%2B01%3A00"])
def test_a_fired_at_that_is_not_a_date_is_malformed(fired_at: bytes) -> None:
    body = load("profile.form").replace(b"2009-03-26+21%3A31%3A21", fired_at)
    with pytest.raises(Malformed) as refused:
        webhooks.parse(delivery(body), AUDIENCE)
    assert '"fired_at"' in refused.value.reason
    assert refused.value.event_type == "profile"


def test_a_delivery_without_fired_at_has_no_time() -> None:
    body = load("profile.form").replace(b"fired_at=2009-03-26+21%3A31%3A21&", b"")
    [event] = webhooks.parse(delivery(body), AUDIENCE).events
    assert event.occurred_at is None


@pytest.mark.parametrize(
    ("body", "reason", "event_type"),
    [
        (b"", 'no "type"', ""),
        (b"fired_at=2009-03-26&data%5Bemail%5D=x%40y.z", 'no "type"', ""),
        (
            b"type=unsubscribe&data%5Baction%5D=unsub",
            'unsubscribe without "data[email]"',
            "unsubscribe",
        ),
        (b"type=upemail&data%5Bold_email%5D=a%40b.c", 'without "data[new_email]"', "upemail"),
        (b"\x00\x01 not a form", "not a form body", ""),
        (b"type=profile&\xff\xfe", "not a form body", ""),
        (b"type=pro%00file", '"type" is not an event name', ""),
        (b"type=unsubscribe&data%5Bemail%5D=a%00b%40c.d", "is not an email address", "unsubscribe"),
        (b"type=upemail&data%5Bnew_email%5D=a%0Ab%40c.d", "is not an email address", "upemail"),
    ],
)
def test_a_malformed_delivery_is_refused(body: bytes, reason: str, event_type: str) -> None:
    with pytest.raises(Malformed) as refused:
        webhooks.parse(delivery(body), AUDIENCE)
    assert reason in refused.value.reason
    assert refused.value.event_type == event_type
    assert refused.value.http_status == 400
