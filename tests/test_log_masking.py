"""Webhook secrets never reach the logs (issue 11, finding 4).

The Mailchimp webhook URL carries the connection's secret in its path;
Django's request logger prints the path of every 4xx/5xx answer and the
development server prints every request line.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import SimpleNamespace

import pytest
from django.core.servers.basehttp import WSGIRequestHandler
from django.test import Client

from connections.models import Account, Connection
from driftsync.logging import MASK, MaskWebhookSecrets, mask_secrets

pytestmark = pytest.mark.django_db


@contextmanager
def handler_output(logger_name: str, handler_name: str) -> Iterator[io.StringIO]:
    """What the configured handler ``handler_name`` of ``logger_name`` writes."""
    logger = logging.getLogger(logger_name)
    handler = next(h for h in logger.handlers if h.get_name() == handler_name)
    assert isinstance(handler, logging.StreamHandler)
    out = io.StringIO()
    previous = handler.setStream(out)
    try:
        yield out
    finally:
        handler.setStream(previous)


@pytest.fixture
def connection(
    make_account: Callable[..., Account], make_connection: Callable[..., Connection]
) -> Connection:
    return make_connection(make_account("mailchimp"), make_account("hubspot"))


def test_a_refused_webhook_request_logs_no_secret(
    connection: Connection, caplog: pytest.LogCaptureFixture
) -> None:
    secret = connection.webhook_secret
    wrong = "WrongGuess-0123456789abcdefABCDEF"
    with caplog.at_level(logging.WARNING), handler_output("", "console") as console:
        # the right secret with a body Mailchimp would never send: 400
        bad = Client().post(
            f"/webhooks/mailchimp/{secret}/?token=tok-123456789",
            data="nonsense=1",
            content_type="application/x-www-form-urlencoded",
        )
        # a guessed secret: 404, on the URL and on the old-style one
        guessed = Client().post(f"/webhooks/mailchimp/{wrong}/")
        old_style = Client().post(f"/webhooks/mailchimp/{connection.pk}/{wrong}/")
    assert (bad.status_code, guessed.status_code, old_style.status_code) == (400, 404, 404)
    captured = "\n".join(r.getMessage() for r in caplog.records)
    printed = console.getvalue()  # what the configured console handler wrote
    for logged in (captured, printed):
        assert "Bad Request" in logged  # django.request spoke, for every answer
        assert "Not Found" in logged
        assert f"/webhooks/mailchimp/{MASK}/" in logged
        assert f"/webhooks/mailchimp/{connection.pk}/{MASK}/" in logged
    logged = captured + printed
    assert secret not in logged
    assert wrong not in logged
    assert "tok-123456789" not in logged


def test_the_servers_access_log_masks_the_secret(connection: Connection) -> None:
    secret = connection.webhook_secret
    server = SimpleNamespace(request=None, log_date_time_string=lambda: "01/Jan/2025 00:00:00")
    line = f"POST /webhooks/mailchimp/{secret}/ HTTP/1.1"
    with handler_output("django.server", "django.server") as access_log:
        WSGIRequestHandler.log_message(server, '"%s" %s %s', line, "403", "31")
        WSGIRequestHandler.log_message(server, '"%s" %s %s', line, "200", "2")
    written = access_log.getvalue()
    assert written.count(f"/webhooks/mailchimp/{MASK}/") == 2
    assert secret not in written


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Forbidden: /webhooks/mailchimp/12/s3cr3t-XyZ/",
            f"Forbidden: /webhooks/mailchimp/12/{MASK}/",
        ),
        ("/webhooks/mailchimp/s3cr3t-XyZ/", f"/webhooks/mailchimp/{MASK}/"),
        ("/webhooks/drift/", "/webhooks/drift/"),
        ('"GET /webhooks/x/1/abc?y=1 HTTP/1.1"', f'"GET /webhooks/x/1/{MASK}?y=1 HTTP/1.1"'),
        ("/cb/?code=abc&state=s&token=t0k", f"/cb/?code={MASK}&state=s&token={MASK}"),
        ("/x?secret=s&access_token=a", f"/x?secret={MASK}&access_token={MASK}"),
        ("nothing to hide", "nothing to hide"),
    ],
)
def test_mask_secrets(text: str, expected: str) -> None:
    assert mask_secrets(text) == expected


def test_the_filter_masks_arguments_and_keeps_the_record() -> None:
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "%s: %s",
        ("Not Found", "/webhooks/m/1/sec/"),
        None,
    )
    assert MaskWebhookSecrets().filter(record) is True
    assert record.getMessage() == f"Not Found: /webhooks/m/1/{MASK}/"
