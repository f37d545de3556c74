"""Receiving webhooks: the part each app owns, and the types it speaks.

An app that sends webhooks has a ``connectors/<app>/webhooks.py`` with a
``WEBHOOKS = WebhookApp(...)``, and its connector class points at it
(``Connector.webhooks``; ``None`` means the app sends none). Everything here
is pure: it reads the bytes, content type and headers of one delivery and the
secret we expect, and answers with parsed events or a ``WebhookRejected``. It
never touches the database nor the network; ``connections.webhooks`` does
that, driven by the facts a ``WebhookApp`` declares.
"""

from __future__ import annotations

import datetime as dt
import enum
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar


class Scope(enum.StrEnum):
    """Whom one delivery is for, which fixes its URL and where its secret lives."""

    #: one URL for the whole app (``/webhooks/<app>/``); the delivery names the
    #: account (``Envelope.account_ref``) and carries a token from the
    #: ``secret_setting``. The engine reads such deliveries from the inbox.
    ACCOUNT = "account"
    #: one URL per connection (``/webhooks/<app>/<secret>/``),
    #: the connection's ``webhook_secret`` in it. The delivery only triggers a
    #: run, which lists the changes itself: a run that succeeds has read it.
    CONNECTION = "connection"


@dataclass(frozen=True)
class Delivery:
    """One request as received."""

    body: bytes
    content_type: str = ""
    headers: Mapping[str, str] = field(default_factory=dict)
    #: the secret the URL carried (``Scope.CONNECTION``)
    url_secret: str = ""

    def header(self, name: str) -> str:
        folded = name.casefold()
        return next((str(v) for k, v in self.headers.items() if k.casefold() == folded), "")


@dataclass(frozen=True)
class Envelope:
    """What verifying a delivery learnt before reading its events."""

    #: the app's own name for the event ("contact_identified", "upemail"), if known yet
    event_type: str = ""
    #: the account it is for, in the app's terms (Drift's org id); ``Scope.ACCOUNT`` only
    account_ref: str | None = None
    #: values to mask in the stored body (tokens it carried)
    secrets: tuple[str, ...] = ()


@dataclass(frozen=True)
class ParsedEvent:
    """One change a delivery announces about one contact."""

    kind: str  # "identified" | "updated" | "unsubscribed" | "profile" | "email_changed"
    #: the contact's id as the engine knows it (for an email change: the old id)
    contact_id: str
    email: str | None = None
    #: ``email_changed`` in an app that keys contacts by email: the id it has now
    new_contact_id: str | None = None
    occurred_at: dt.datetime | None = None
    #: the contact as the body carried it, in the app's own shape (Drift: the
    #: contact object; Mailchimp: merge values by tag), for the connector to map
    record: Mapping[str, Any] | None = None
    unsubscribed: bool = False
    deleted: bool = False


@dataclass(frozen=True)
class Parsed:
    event_type: str
    #: empty: the delivery is about nothing this connection syncs
    events: tuple[ParsedEvent, ...] = ()


class WebhookRejected(Exception):
    """A delivery we refuse; ``reason`` is for the person reading the inbox."""

    http_status: ClassVar[int] = 400

    def __init__(self, reason: str, *, event_type: str = "", secrets: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        #: what was read before refusing, to store with the delivery
        self.event_type = event_type
        self.secrets = secrets


class Malformed(WebhookRejected):
    """The body is not what the app sends."""


class Unverified(WebhookRejected):
    """The token or secret does not match."""

    http_status = 403


class NotConfigured(WebhookRejected):
    """We hold no secret to check the delivery against: accept nothing."""

    http_status = 503


@dataclass(frozen=True)
class WebhookApp:
    """An app's webhooks: its routing facts and its two pure steps."""

    key: str
    name: str
    scope: Scope
    #: check the delivery against the ``expected`` secret (raises ``WebhookRejected``)
    verify: Callable[[Delivery, str], Envelope]
    #: read its events; ``settings`` are the connection side's settings
    parse: Callable[[Delivery, Mapping[str, Any]], Parsed]
    #: ``Scope.ACCOUNT``: the setting (or environment variable) holding the token
    secret_setting: str = ""
    #: ``Scope.ACCOUNT``: what the app calls the account a delivery names ("org")
    account_label: str = "account"
    #: methods that only check the URL (answered 200, stored nothing)
    check_methods: tuple[str, ...] = ()


__all__ = [
    "Delivery",
    "Envelope",
    "Malformed",
    "NotConfigured",
    "Parsed",
    "ParsedEvent",
    "Scope",
    "Unverified",
    "WebhookApp",
    "WebhookRejected",
]
