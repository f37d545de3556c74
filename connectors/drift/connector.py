"""Drift contacts ↔ the common Contact record.

Drift cannot list contacts: they arrive through its webhooks
(``contact_identified``, ``contact_updated``, ``user_unsubscribed``), which the
engine reads from its inbox, and are then read and written one by one.
Several Drift contacts may share an email; lookups return them oldest first.

Tags: Drift "replaced contact tags with attributes" and one can "no longer
apply those tags to a contact's profile"
(https://devdocs.drift.com/docs/contact-model); its tag endpoint refuses a
name that maps to no known tag with 400 CONTACT-9
(https://devdocs.drift.com/docs/contact-errors). So a contact's tags live in
one text attribute by default (``driftsync_tags``, created by the first
write: an unknown key creates a custom attribute), comma separated, sorted.
Drift lists no multi-value attribute type (STRING, NUMERIC, BOOLEAN,
DATETIME, DATE: https://devdocs.drift.com/docs/listing-custom-attributes), so
a tag holding a comma cannot be stored and is refused for that contact. The
legacy tag endpoints are used only where a connection chooses them (side
setting ``tags_attribute`` = ``LEGACY_TAGS``), for orgs that still have tags;
a tag Drift refuses there stops the connection with a message naming it
(``TagRefused``), instead of failing the contact on every run.

Clearing: attributes are documented as "a key and a non-null value"; null is
never sent. A cleared value is written as "" and read back as empty.

CQL source: Drift documents no standard attribute for it (the CQL score is a
bolt rating, -1/1/2/3: https://help.drift.com/settings/the-cql-in-drift). An
org attribute labelled "CQL Source" or "Lead Source" is used when the org has
one; otherwise the field is the custom attribute ``cql_source``, created by
the first write.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

from ..base import (
    AccountInfo,
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    ConnectorError,
    Contact,
    ContactRejected,
    ContactWrite,
    Field,
    FieldType,
    InboxEvent,
    NotFound,
    PermanentError,
    Semantic,
    SideSetting,
    WriteResult,
    canonical_number,
    clean_text,
    epoch_ms_to_datetime,
    format_datetime,
    normalize_email,
    parse_iso_datetime,
)
from ..hosts import vendor_or_override
from ..http import HttpClient, oauth_app_credentials, oauth_refresh
from ..webhooks import Delivery, WebhookRejected
from . import webhooks as drift_webhooks
from .client import DEFAULT_BASE_URL, TOKEN_PATH, TOKEN_URL, VENDOR_HOSTS, DriftClient, Record

ATTRIBUTE_TYPES: dict[str, FieldType] = {
    "STRING": FieldType.TEXT,
    "NUMERIC": FieldType.NUMBER,
    "NUMBER": FieldType.NUMBER,
    "BOOLEAN": FieldType.BOOLEAN,
    "DATETIME": FieldType.DATETIME,
    "DATE": FieldType.DATE,
    "EMAIL": FieldType.EMAIL,
    "PHONE": FieldType.PHONE,
    "URL": FieldType.URL,
}

#: attributes that are not contact fields: structures Drift manages itself
NOT_FIELDS = frozenset({"tags", "socialProfiles", "events"})

#: display names (folded) that identify standard attributes whose key varies
COMPANY_LABELS = frozenset({"company", "company name"})
TITLE_LABELS = frozenset({"title", "job title", "employment title"})
LEAD_STAGE_LABELS = frozenset({"lead stage"})
CQL_SOURCE_LABELS = frozenset({"cql source", "lead source"})

#: where tags live unless a connection says otherwise (see the module doc)
DEFAULT_TAGS_ATTRIBUTE = "driftsync_tags"
#: the ``tags_attribute`` value that chooses Drift's legacy tag endpoints
LEGACY_TAGS = "drift:legacy-tags"
#: the custom attribute that holds the CQL source where the org has none
CQL_SOURCE_KEY = "cql_source"

#: the standard fields whose keys Drift fixes
BASE_FIELDS: tuple[Field, ...] = (
    Field("email", "Email", FieldType.EMAIL, semantic=Semantic.EMAIL),
    Field("name", "Name", FieldType.TEXT, semantic=Semantic.FULL_NAME),
    Field("phone", "Phone", FieldType.PHONE, semantic=Semantic.PHONE),
    Field("externalId", "External ID", FieldType.TEXT),
    Field("start_date", "Start date", FieldType.DATETIME, read_only=True),
)


class DriftConnector(Connector):
    key = "drift"
    name = "Drift"
    default_base_url = DEFAULT_BASE_URL
    vendor_hosts = VENDOR_HOSTS
    capabilities = Capabilities(
        list_changes=False,
        detect_deletions=False,
        detect_unsubscribes=True,
        tags=True,
        webhooks=True,
        batch_writes=False,
        custom_fields=True,
    )
    webhooks = drift_webhooks.WEBHOOKS
    # Drift writes one contact per request and cannot list
    page_size = 1
    write_batch_size = 1
    #: ``limit`` of an email lookup: how many same-email contacts we see
    lookup_limit: ClassVar[int] = 100
    oauth_provider = "drift"
    paste_label = 'Access token (from "Install to Drift")'
    token_path: ClassVar[str] = TOKEN_PATH
    side_settings = (
        SideSetting(
            "tags_attribute",
            "Keep tags in attribute",
            help_text=(
                "Drift replaced contact tags with attributes: tags are kept, comma "
                f"separated, in a text attribute ({DEFAULT_TAGS_ATTRIBUTE} unless you pick "
                "another; created on first use). Choose Drift's legacy tags only if your "
                "org still has them: Drift refuses a tag name its settings do not define."
            ),
        ),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        refresher = None
        if self.credentials.refresh_token:
            client_id, secret = oauth_app_credentials(self.oauth_provider)
            refresher = oauth_refresh(
                self._session, self.token_url(), client_id, secret, self.vendor_hosts
            )
        self.http = HttpClient(
            self.base_url,
            credentials=self.credentials,
            refresher=refresher,
            refresh_hook=self.refresh_hook,
            account_key=self.account_key,
            vendor_hosts=self.vendor_hosts,
        )
        self.client = DriftClient(self.http)
        self._schema: dict[str, Field] | None = None

    def _session(self) -> Any:
        return self.http.session

    def token_url(self) -> str:
        """The token endpoint: Drift's own, or the sandbox's under an overridden
        base (only where overrides are allowed)."""
        derived = f"{self.base_url}{self.token_path}"
        return vendor_or_override(TOKEN_URL, derived, self.base_url, self.vendor_hosts)

    @property
    def tags_attribute(self) -> str:
        """The attribute holding the tags, or "" for Drift's legacy tags."""
        chosen = str(self.settings.get("tags_attribute") or "").strip()
        if chosen == LEGACY_TAGS:
            return ""
        return chosen or DEFAULT_TAGS_ATTRIBUTE

    # -- account ----------------------------------------------------------

    def check(self) -> AccountInfo:
        info: Record = {}
        for _attempt in range(2):
            token = self.http.credentials.access_token or self.http.credentials.api_key
            try:
                info = self.client.token_info(token)
                break
            except AuthError:
                # token_info carries the token in its body: a refresh on the
                # way changes it, so ask again once with the new one
                if (self.http.credentials.access_token or token) == token:
                    raise
        org_id = info.get("orgId") or info.get("org_id")
        userid = str(info.get("authenticated_userid") or "")
        if not org_id and userid.startswith("orgId:"):
            org_id = userid.partition(":")[2]
        if not org_id:
            org_id = self.credentials.extra.get("orgId") or self.credentials.extra.get("org_id")
        if not org_id:
            raise PermanentError("Drift did not say which organization this token belongs to")
        scope = str(info.get("scope") or "")
        return AccountInfo(
            remote_id=str(org_id),
            label=f"Drift org {org_id}",
            extra={"orgId": str(org_id), "scope": scope},
        )

    def side_options(self) -> dict[str, list[tuple[str, str]]]:
        options = [(DEFAULT_TAGS_ATTRIBUTE, "DriftSync tags attribute (created on first use)")]
        options += [
            (f.key, f.label)
            for f in self.fields()
            if f.custom
            and f.type == FieldType.TEXT
            and not f.read_only
            and f.key != DEFAULT_TAGS_ATTRIBUTE
        ]
        options.append((LEGACY_TAGS, "Drift tags (legacy: only where the org still has them)"))
        return {"tags_attribute": options}

    # -- schema -----------------------------------------------------------

    def fields(self) -> list[Field]:
        self._schema = None
        return list(self._fields().values())

    def _fields(self) -> dict[str, Field]:
        if self._schema is not None:
            return self._schema
        try:
            attributes = self.client.list_attributes()
        except (AuthError, ConfigError):
            raise
        except PermanentError:
            # listing attributes needs the elevated all_contact_read scope;
            # without it the standard fields still work
            attributes = []
        schema = {f.key: f for f in BASE_FIELDS}
        found: dict[Semantic, str] = {}
        found_keys: set[str] = set()
        extra: list[Field] = []
        for attr in attributes:
            key = str(attr["name"])
            label = str(attr.get("displayName") or key)
            folded = label.strip().casefold()
            ftype = ATTRIBUTE_TYPES.get(str(attr.get("type") or "").upper(), FieldType.TEXT)
            if key in schema or key in NOT_FIELDS or key.startswith("_"):
                continue
            if key == self.tags_attribute:
                continue  # the tags, not a field
            if folded in COMPANY_LABELS and Semantic.COMPANY not in found:
                found[Semantic.COMPANY] = key
                schema[key] = Field(key, label, FieldType.TEXT, semantic=Semantic.COMPANY)
            elif folded in TITLE_LABELS and Semantic.TITLE not in found:
                found[Semantic.TITLE] = key
                schema[key] = Field(key, label, FieldType.TEXT, semantic=Semantic.TITLE)
            elif folded in LEAD_STAGE_LABELS and Semantic.LEAD_STAGE not in found:
                found[Semantic.LEAD_STAGE] = key
                schema[key] = Field(key, label, ftype, semantic=Semantic.LEAD_STAGE)
            elif folded in CQL_SOURCE_LABELS and "cql_source" not in found_keys:
                found_keys.add("cql_source")
                schema[key] = Field(key, label, FieldType.TEXT)
            elif "cql" in folded.split() or key.casefold() in ("cql", "cql_score"):
                # Drift's own score (-1, 1, 2, 3): standard, not custom
                schema[key] = Field(key, label, FieldType.NUMBER)
            else:
                extra.append(Field(key, label, ftype, custom=True))
        for semantic, fallback, label in (
            (Semantic.COMPANY, "company", "Company"),
            (Semantic.TITLE, "title", "Title"),
        ):
            if semantic not in found and fallback not in schema:
                schema[fallback] = Field(fallback, label, FieldType.TEXT, semantic=semantic)
        if "cql_source" not in found_keys:
            schema.pop(CQL_SOURCE_KEY, None)
            schema[CQL_SOURCE_KEY] = Field(CQL_SOURCE_KEY, "CQL source", FieldType.TEXT)
        for f in extra:
            schema.setdefault(f.key, f)
        self._schema = schema
        return schema

    # -- reading ----------------------------------------------------------

    def get_contacts(self, ids: Iterable[str]) -> dict[str, Contact]:
        out: dict[str, Contact] = {}
        for contact_id in dict.fromkeys(str(i) for i in ids):
            record = self.client.get_contact(contact_id)
            if record is not None:
                out[contact_id] = self.to_contact(record)
        return out

    def find_by_emails(self, emails: Iterable[str]) -> dict[str, list[Contact]]:
        out: dict[str, list[Contact]] = {}
        for email in dict.fromkeys(normalize_email(e) for e in emails):
            if not email:
                continue
            records = self.client.find_by_email(email, self.lookup_limit)
            contacts = [
                self.to_contact(r)
                for r in records
                if normalize_email((r.get("attributes") or {}).get("email")) == email
            ]
            if contacts:
                contacts.sort(key=_age)
                out[email] = contacts
        return out

    # -- writing ----------------------------------------------------------

    def write_contacts(self, writes: list[ContactWrite]) -> list[WriteResult]:
        results = []
        for write in writes:
            try:
                self._check_tag_names(write.add_tags)
                contact = self._create(write) if write.id is None else self._update(write)
            except (AuthError, ConfigError):
                raise
            except NotFound as exc:
                results.append(WriteResult(write.ref, error=exc))
            except PermanentError as exc:
                rejected = ContactRejected(exc.message, status=exc.status, code=exc.code)
                results.append(WriteResult(write.ref, error=rejected))
            else:
                results.append(WriteResult(write.ref, contact=contact))
        return results

    def _check_tag_names(self, tags: frozenset[str]) -> None:
        if not self.tags_attribute:
            return
        bad = sorted(t for t in tags if "," in t or ";" in t or not t.strip())
        if bad:
            raise ContactRejected(
                f"Drift keeps tags comma separated in the {self.tags_attribute!r} attribute: "
                f"cannot store tag {bad[0]!r}"
            )

    def _create(self, write: ContactWrite) -> Contact:
        attributes = {
            k: v for k, v in self.to_attributes(write.fields).items() if v not in (None, "")
        }
        if write.email:
            attributes["email"] = write.email.strip()
        add = write.add_tags
        if self.tags_attribute:
            if add:
                attributes[self.tags_attribute] = _join_tags(add)
            add = frozenset()
        try:
            record = self.client.create_contact(attributes)
        except PermanentError as exc:
            if not _already_exists(exc) or not write.email:
                raise
            # the email is taken (a race with another writer, or a crash after
            # a create): the existing contact is the one we meant
            existing = self.find_by_emails([write.email]).get(normalize_email(write.email))
            if not existing:
                raise
            return existing[0]
        return self._apply_tags(str(record["id"]), record, add, frozenset())

    def _update(self, write: ContactWrite) -> Contact:
        assert write.id is not None
        current = write.current
        attributes = self.to_attributes(write.fields)
        if write.email is not None and write.email.strip():
            # an email is never cleared: Drift takes no null, and "" is no address
            attributes["email"] = write.email.strip()
        if current is not None:
            # PATCH only what differs from the contact as last read
            attributes = {
                key: value
                for key, value in attributes.items()
                if self._canonical(key, value)
                != (current.email if key == "email" else current.fields.get(key))
            }
        add, remove = write.add_tags, write.remove_tags
        if current is not None:
            add, remove = add - current.tags, remove & current.tags
        if self.tags_attribute:
            if add or remove:
                if current is None:
                    current = self._require(write.id)
                wanted = (current.tags | add) - remove
                attributes[self.tags_attribute] = _join_tags(wanted)
            add = remove = frozenset()
        record: Record | None = None
        if attributes:
            record = self.client.update_contact(write.id, attributes)
        elif not (add or remove):
            return current if current is not None else self._require(write.id)
        return self._apply_tags(write.id, record, add, remove)

    def _require(self, contact_id: str) -> Contact:
        record = self.client.get_contact(contact_id)
        if record is None:
            raise NotFound(f"Contact {contact_id} not found", status=404)
        return self.to_contact(record)

    def _apply_tags(
        self, contact_id: str, record: Record | None, add: frozenset[str], remove: frozenset[str]
    ) -> Contact:
        stale = False
        if add:
            try:
                echoed = self.client.add_tags(contact_id, sorted(add))
            except PermanentError as exc:
                if exc.status != 400 or isinstance(exc, (AuthError, ConfigError)):
                    raise
                # the body holds nothing but tag names: a 400 is Drift's
                # CONTACT-9, a name with no known tag id
                raise TagRefused(sorted(add), exc) from exc
            record, stale = (echoed, False) if echoed else (record, True)
        if remove:
            echoed = self.client.remove_tags(contact_id, sorted(remove))
            record, stale = (echoed, False) if echoed else (record, True)
        if record is None:
            return self._require(contact_id)
        contact = self.to_contact(record)
        if stale:
            # the tag endpoints did not echo the contact: its tags are known
            contact.tags = (contact.tags | add) - remove
        return contact

    # -- mapping ----------------------------------------------------------

    def to_contact(self, record: Record) -> Contact:
        attributes: Mapping[str, Any] = record.get("attributes") or {}
        fields: dict[str, Any] = {}
        for key, value in attributes.items():
            if key in NOT_FIELDS or key.startswith("_"):
                continue
            fields[key] = self._canonical(key, value)
        if self.tags_attribute:
            tags = _split_tags(attributes.get(self.tags_attribute))
        else:
            tags = frozenset(
                str(t.get("name") if isinstance(t, dict) else t)
                for t in attributes.get("tags") or []
                if (t.get("name") if isinstance(t, dict) else t)
            )
        version = attributes.get("_END_USER_VERSION", attributes.get("_calculated_version"))
        return Contact(
            id=str(record["id"]),
            email=clean_text(attributes.get("email")),
            fields=fields,
            tags=tags,
            created_at=epoch_ms_to_datetime(record.get("createdAt")),
            version=str(version) if version is not None else None,
        )

    def to_attributes(self, fields: Mapping[str, Any]) -> Record:
        """Attributes as Drift takes them; a cleared value is "" (never null)."""
        out: Record = {}
        schema = self._fields()
        for key, value in fields.items():
            f = schema.get(key)
            if f is not None and f.read_only:
                continue
            converted = _to_drift(f.type if f else None, value)
            out[key] = "" if converted is None else converted
        return out

    def _canonical(self, key: str, value: Any) -> Any:
        # a webhook is parsed without calling Drift: types come from the
        # schema when it is already known, else from the value itself
        schema = self._schema if self._schema is not None else {f.key: f for f in BASE_FIELDS}
        f = schema.get(key)
        return _from_drift(f.type if f else None, value)

    # -- webhooks ---------------------------------------------------------

    def parse_webhook(
        self, body: bytes, content_type: str, headers: dict[str, str]
    ) -> list[InboxEvent]:
        delivery = Delivery(body, content_type, headers)
        try:
            parsed = drift_webhooks.parse(delivery, self.settings)
        except WebhookRejected as exc:
            raise PermanentError(exc.reason) from exc
        events = []
        for event in parsed.events:
            contact = self.to_contact(dict(event.record)) if event.record is not None else None
            if contact is not None and event.unsubscribed:
                contact.unsubscribed = True
            events.append(
                InboxEvent(event.kind, event.contact_id, event.email, contact, event.occurred_at)
            )
        return events


class TagRefused(ConfigError):
    """Drift refused a legacy tag name (400 CONTACT-9: no known tag id).

    Not one contact's fault: every contact given this tag would fail the
    same way, so it stops the connection with a message that says what to do.
    """

    def __init__(self, tags: list[str], cause: ConnectorError) -> None:
        names = ", ".join(repr(t) for t in tags)
        super().__init__(
            f"Drift refused tag {names} (CONTACT-9: no tag with that name in this Drift "
            f"org; Drift said: {cause.message}). Drift replaced contact tags with "
            "attributes: keep this connection's tags in an attribute (the default, "
            f"{DEFAULT_TAGS_ATTRIBUTE}) or create the tag in Drift's settings.",
            status=cause.status,
            code="CONTACT-9",
        )
        self.tags = tags


def _age(contact: Contact) -> tuple[float, int, str]:
    created = contact.created_at.timestamp() if contact.created_at else float("inf")
    return (created, int(contact.id) if contact.id.isdigit() else 0, contact.id)


def _already_exists(exc: PermanentError) -> bool:
    message = exc.message.casefold()
    return exc.status == 409 or (
        exc.status in (400, 422) and ("already exist" in message or "duplicate" in message)
    )


def _epoch_or_none(value: Any) -> dt.datetime | None:
    try:
        return epoch_ms_to_datetime(value)
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _split_tags(value: Any) -> frozenset[str]:
    if isinstance(value, list):
        items = [str(v) for v in value]
    else:
        items = str(value or "").replace(";", ",").split(",")
    return frozenset(t.strip() for t in items if t and t.strip())


def _join_tags(tags: Iterable[str]) -> str:
    return ", ".join(sorted(tags))


def _from_drift(ftype: FieldType | None, value: Any) -> Any:
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, list):
        return sorted(str(v) for v in value) or None
    if ftype in (FieldType.DATETIME, FieldType.DATE):
        moment: dt.datetime | None
        if isinstance(value, int | float) and not isinstance(value, bool):
            moment = _epoch_or_none(value)
        elif isinstance(value, str) and value.strip().lstrip("-").isdigit():
            moment = _epoch_or_none(int(value.strip()))
        else:
            try:
                moment = parse_iso_datetime(str(value).strip())
            except ValueError:
                return clean_text(value)
        if moment is None:
            return None
        return (
            format_datetime(moment)
            if ftype == FieldType.DATETIME
            else (moment.astimezone(dt.UTC).date().isoformat())
        )
    if ftype == FieldType.NUMBER or (ftype is None and isinstance(value, int | float)):
        if isinstance(value, bool):
            return value
        try:
            return canonical_number(value)
        except ValueError:
            return clean_text(value)
    if ftype == FieldType.BOOLEAN or isinstance(value, bool):
        if isinstance(value, str):
            return value.strip().casefold() in ("true", "1", "yes")
        return bool(value)
    return clean_text(value)


def _to_drift(ftype: FieldType | None, value: Any) -> Any:
    if value is None:
        return None
    if ftype == FieldType.DATETIME:
        moment = parse_iso_datetime(str(value))
        return int(moment.timestamp() * 1000) if moment else None
    if ftype == FieldType.DATE:
        day = dt.date.fromisoformat(str(value)[:10])
        return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC).timestamp() * 1000)
    return value
