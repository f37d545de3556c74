"""The connector contract: what the engine and the admin may ask of an app.

A connector is handed credentials and settings as plain values and gives back
plain records. It never imports ``connections`` (the database side); whatever
it needs from there (saving refreshed tokens, reading the webhook inbox)
arrives as a callable or as plain data.

Values in ``Contact.fields`` are canonical, JSON-serialisable and comparable:

========== ===========================================================
type       canonical value
========== ===========================================================
text       ``str`` (stripped; empty string becomes ``None``)
email      ``str`` (stripped; case kept: matching folds case itself)
phone      ``str``
url        ``str``
number     ``int`` when integral, else ``float``
boolean    ``bool``
date       ``"YYYY-MM-DD"``
datetime   ``"YYYY-MM-DDTHH:MM:SSZ"`` (UTC)
choice     ``str`` (one of ``Field.choices`` when the app lists them)
multichoice sorted ``list[str]``
========== ===========================================================

``None`` always means "empty". Tags are not a field: they live in
``Contact.tags``.
"""

from __future__ import annotations

import datetime as dt
import enum
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

from .webhooks import WebhookApp

T = TypeVar("T")


class FieldType(enum.StrEnum):
    TEXT = "text"
    EMAIL = "email"
    PHONE = "phone"
    URL = "url"
    NUMBER = "number"
    BOOLEAN = "boolean"
    DATE = "date"
    DATETIME = "datetime"
    CHOICE = "choice"
    MULTICHOICE = "multichoice"


class Semantic(enum.StrEnum):
    """What a field means, so default mappings can pair fields across apps."""

    EMAIL = "email"
    FULL_NAME = "full_name"
    FIRST_NAME = "first_name"
    LAST_NAME = "last_name"
    PHONE = "phone"
    COMPANY = "company"
    TITLE = "title"
    LEAD_STAGE = "lead_stage"
    WEBSITE = "website"


#: The virtual field every split-name connector exposes: first + last joined.
#: The engine computes it on read and splits it back on write (see
#: ``connections.engine.names``); connectors never see it in a write.
FULL_NAME_KEY = "full_name"


@dataclass(frozen=True)
class Field:
    key: str
    label: str
    type: FieldType
    read_only: bool = False
    choices: tuple[str, ...] = ()
    custom: bool = False
    semantic: Semantic | None = None
    #: True when the app keeps several values (Google phones, emails) and the
    #: connector exposes the primary/first one; writing replaces only that one.
    multi_value: bool = False
    #: For the virtual full-name field: the keys of its parts (first, last).
    parts: tuple[str, ...] = ()
    #: the app's own type and format of the field, where the connector needs
    #: them to read and write values (Mailchimp: "date" and "DD/MM/YYYY"), so
    #: a connector given the cached schema need not read the app's again
    native_type: str = ""
    native_format: str = ""

    @property
    def is_virtual(self) -> bool:
        return bool(self.parts)


def full_name_field(first: str, last: str) -> Field:
    return Field(
        FULL_NAME_KEY,
        "Full name (first + last)",
        FieldType.TEXT,
        semantic=Semantic.FULL_NAME,
        parts=(first, last),
    )


@dataclass(frozen=True)
class Capabilities:
    #: Can list contacts and the changes since a cursor (Drift cannot).
    list_changes: bool = True
    detect_deletions: bool = False
    detect_unsubscribes: bool = False
    tags: bool = False
    webhooks: bool = False
    batch_writes: bool = False
    custom_fields: bool = False
    #: The change feed is current: a read of ``changes`` reports every change
    #: made before it (no search-index or propagation lag), deletions included.
    #: A contact absent from a feed read moments ago has not changed since the
    #: last sync, so the engine can take its counterpart's values from the
    #: binding's base instead of reading it again. False where the app
    #: documents a lag: Google's sync tokens ("Writes may have a propagation
    #: delay of several minutes for sync requests", people.connections.list
    #: reference), HubSpot's search index.
    current_changes: bool = False


@dataclass
class Credentials:
    """Plain credential values. The database side encrypts them at rest."""

    access_token: str = ""
    refresh_token: str = ""
    #: epoch seconds; None for tokens that never expire
    expires_at: float | None = None
    #: a pasted API key or private-app token
    api_key: str = ""
    #: app specifics (Mailchimp data center, Drift org id, scopes ...)
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "access_token": self.access_token,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at,
            "api_key": self.api_key,
            "extra": dict(self.extra),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> Credentials:
        data = data or {}
        return cls(
            access_token=data.get("access_token") or "",
            refresh_token=data.get("refresh_token") or "",
            expires_at=data.get("expires_at"),
            api_key=data.get("api_key") or "",
            extra=dict(data.get("extra") or {}),
        )

    def __repr__(self) -> str:  # never print a secret
        return "Credentials(<hidden>)"

    __str__ = __repr__


#: the tag set of every contact without tags (an empty frozenset of its own
#: costs 216 bytes: 20 MB over 100,000 contacts held at once)
NO_TAGS: frozenset[str] = frozenset()


@dataclass(slots=True)
class Contact:
    id: str
    email: str | None = None
    fields: dict[str, Any] = field(default_factory=dict)
    tags: frozenset[str] = NO_TAGS
    created_at: dt.datetime | None = None
    #: the app's own last-modified time (used by the "most recent" policy)
    updated_at: dt.datetime | None = None
    #: etag / version, passed back on update where the app checks it
    version: str | None = None
    deleted: bool = False
    unsubscribed: bool = False
    #: ids the app gave this same contact before (Google: a contact's resource
    #: name changes when it gets linked to a profile); a binding held by one of
    #: them belongs to this contact
    previous_ids: tuple[str, ...] = ()


@dataclass
class ContactWrite:
    """One create (``id is None``) or update of one contact.

    ``fields`` holds only what changes, canonical values, keyed by the
    connector's field keys (never the virtual full-name key). For an update
    ``current`` is the contact as last read, so a connector that must send
    whole sub-objects (Google names, organizations) can keep what it does not
    change.
    """

    id: str | None
    email: str | None
    fields: dict[str, Any] = field(default_factory=dict)
    add_tags: frozenset[str] = frozenset()
    remove_tags: frozenset[str] = frozenset()
    version: str | None = None
    current: Contact | None = None
    #: opaque to the connector; echoed back in the WriteResult
    ref: Any = None


@dataclass
class WriteResult:
    ref: Any
    contact: Contact | None = None
    error: ConnectorError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class Page:
    """One page of changes and the cursor that resumes right after it."""

    contacts: list[Contact]
    cursor: str | None
    #: True on the last page of this read
    done: bool = True
    #: True when this read is a full scan (first sync, or an expired cursor)
    full_scan: bool = False


@dataclass(frozen=True)
class AccountInfo:
    remote_id: str
    label: str
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class SideSetting:
    """A per-side setting a connection needs, e.g. the Mailchimp audience."""

    key: str
    label: str
    required: bool = False
    help_text: str = ""


@dataclass(frozen=True)
class InboxEvent:
    """What a connector makes of one received webhook delivery."""

    kind: str  # "identified" | "updated" | "unsubscribed" | "profile" | "email_changed"
    contact_id: str | None
    email: str | None
    contact: Contact | None = None
    occurred_at: dt.datetime | None = None


# ----------------------------------------------------------------- errors


class ConnectorError(Exception):
    """An app said no, or could not be reached. ``message`` is the app's own."""

    permanent: ClassVar[bool] = False

    def __init__(self, message: str, *, status: int | None = None, code: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self) -> str:
        prefix = f"HTTP {self.status}: " if self.status else ""
        return f"{prefix}{self.message}"


class TransientError(ConnectorError):
    """Worth retrying later: 429, 5xx, timeouts, dropped connections."""

    permanent = False


class PermanentError(ConnectorError):
    """Retrying the same request will fail the same way."""

    permanent = True


class ContactRejected(PermanentError):
    """The app refused this one contact (bad value, required field ...)."""


class NotFound(PermanentError):
    pass


class AuthError(PermanentError):
    """The account itself is unusable: revoked, refresh failed, 401 after refresh."""


class ConfigError(PermanentError):
    """The connection's settings do not fit the account (unknown audience ...)."""


class UntrustedHost(ConfigError):
    """Credentials were about to go to a host that is not the vendor's
    (see ``connectors.hosts``); nothing was sent."""


# -------------------------------------------------------------- connector


class Connector(ABC):
    key: ClassVar[str]
    name: ClassVar[str]
    capabilities: ClassVar[Capabilities]
    default_base_url: ClassVar[str]
    #: the only hosts this app's credentials are sent to (``connectors.hosts``)
    vendor_hosts: ClassVar[tuple[str, ...]] = ()
    #: largest page a list call may ask for / largest batch a write may send
    page_size: ClassVar[int] = 100
    write_batch_size: ClassVar[int] = 1
    #: True when one batch call takes new and existing contacts alike
    #: (Mailchimp's batch subscribe), so creates and updates share batches
    upsert_batches: ClassVar[bool] = False
    #: the connector's requests (``HttpClient.stats`` keys) that list contacts
    #: or changes, and those that write contacts in batches (the benchmark
    #: counts them apart)
    list_endpoints: ClassVar[frozenset[str]] = frozenset()
    batch_write_endpoints: ClassVar[frozenset[str]] = frozenset()
    side_settings: ClassVar[tuple[SideSetting, ...]] = ()
    #: OAuth provider id in allauth, or "" when only pasted keys work
    oauth_provider: ClassVar[str] = ""
    #: label for the pasted credential ("API key", "Private app token")
    paste_label: ClassVar[str] = "Access token"
    #: how the app's webhooks are verified, parsed and routed
    #: (``connectors/<app>/webhooks.py``); None: the app sends none
    webhooks: ClassVar[WebhookApp | None] = None

    def __init__(
        self,
        credentials: Credentials,
        settings: dict[str, Any] | None = None,
        *,
        base_url: str | None = None,
        account_key: str = "",
        refresh_hook: Callable[[str, Callable[[Credentials], Credentials]], Credentials]
        | None = None,
    ) -> None:
        self.credentials = credentials
        self.settings = dict(settings or {})
        self.base_url = (base_url or self.default_base_url).rstrip("/")
        self.account_key = account_key
        self.refresh_hook = refresh_hook

    # -- account ----------------------------------------------------------

    @abstractmethod
    def check(self) -> AccountInfo:
        """Call the app with the credentials ("Test connection")."""

    def side_options(self) -> dict[str, list[tuple[str, str]]]:
        """Choices for ``side_settings`` (audiences, contact groups)."""
        return {}

    # -- schema -----------------------------------------------------------

    @abstractmethod
    def fields(self) -> list[Field]:
        """Standard fields plus custom ones discovered now from the app."""

    #: the account's fields as last read, handed over by the engine while they
    #: are fresh (``use_schema``): a connector whose ``fields()`` costs a
    #: request answers from it instead, so an idle run reads no schema
    schema_hint: list[Field] | None = None

    def use_schema(self, fields: list[Field]) -> None:
        self.schema_hint = list(fields)

    #: set by the engine: does another binding of this connection hold this id
    #: of the app's? A connector that would redirect a write to another
    #: contact (HubSpot: the contact that already has the email) asks first,
    #: so it never writes one person's data over another synced person
    bound_elsewhere: Callable[[str], bool] | None = None

    # -- reading ----------------------------------------------------------

    def changes(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        """Pages of contacts changed since ``cursor`` (all of them when
        ``cursor`` is None or ``full``). Each page carries the cursor that
        resumes after it; the last page has ``done=True``."""
        raise PermanentError(f"{self.name} cannot list contacts")

    @abstractmethod
    def get_contacts(self, ids: Iterable[str]) -> dict[str, Contact]:
        """Contacts by id; an id that no longer exists is absent."""

    @abstractmethod
    def find_by_emails(self, emails: Iterable[str]) -> dict[str, list[Contact]]:
        """Contacts by email, keyed by the normalized email, oldest first."""

    def searched(self, emails: Iterable[str]) -> None:
        """The caller has just read every contact of this side (or searched
        these emails) and found none with these emails, so a create for them
        may skip its own look-up. A hint only: the default ignores it."""
        return None

    # -- writing ----------------------------------------------------------

    @abstractmethod
    def write_contacts(self, writes: list[ContactWrite]) -> list[WriteResult]:
        """Create (``id is None``) and update contacts, in the largest
        batches the API allows, tags included. One result per write, in
        order. A rejected contact is a result with an error; an account
        failure raises."""

    # -- webhooks ---------------------------------------------------------

    def parse_webhook(
        self, body: bytes, content_type: str, headers: dict[str, str]
    ) -> list[InboxEvent]:
        raise PermanentError(f"{self.name} does not send webhooks")


def normalize_email(value: str | None) -> str:
    """The matching key: trimmed and case-folded (an app's non-text value as text)."""
    if not isinstance(value, str):
        value = "" if value is None else str(value)
    return value.strip().casefold()


def chunked(items: list[T], size: int) -> Iterator[list[T]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def epoch_ms_to_datetime(value: int | float | str | None) -> dt.datetime | None:
    if value in (None, ""):
        return None
    return dt.datetime.fromtimestamp(int(value) / 1000, tz=dt.UTC)


def parse_iso_datetime(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def format_datetime(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clean_text(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value).strip()
    return text or None


def canonical_number(value: Any) -> int | float | None:
    if value in (None, ""):
        return None
    number = float(value)
    return int(number) if number.is_integer() else number
