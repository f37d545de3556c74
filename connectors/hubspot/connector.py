"""HubSpot contacts (CRM v3) as a driftsync connector.

Reading: a full read pages ``GET /crm/v3/objects/contacts`` (two calls to a
page, the next page read ahead while the run works on one); an incremental
read searches ``lastmodifieddate >= floor`` sorted ascending and pages by
moving the floor (keyset), never by ``after``. Offsets shift under a search
when records change while it is paged, and the search refuses to page past
10,000 results; a moving floor has neither problem. Records sharing one
millisecond beyond a page are walked by ``hs_object_id``. New writes take
seconds to reach the search index, so each run starts ``overlap_ms`` before
the previous run began (HubSpot's clock, from the ``Date`` header); the ids
and versions already reported inside that window travel in the cursor, so
the overlap is re-read but not re-reported.

Deletions: archived contacts are listed with ``archived=true``. That list is
ordered by id and cannot be filtered by time, so each incremental run reads
all of it (one request per 100 archived contacts; HubSpot purges archived
contacts after 90 days) and reports those archived since the last run.

Tags: HubSpot contacts have no tags. They live in a multiple-checkbox
property (``driftsync_tags`` unless the side setting ``tags_property`` names
another), values joined by ``;`` as HubSpot stores them; the property and
each new option are created on first use.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, ClassVar

from ..base import (
    FULL_NAME_KEY,
    AccountInfo,
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    Contact,
    ContactRejected,
    ContactWrite,
    Credentials,
    Field,
    FieldType,
    NotFound,
    Page,
    PermanentError,
    Semantic,
    SideSetting,
    WriteResult,
    canonical_number,
    chunked,
    clean_text,
    epoch_ms_to_datetime,
    format_datetime,
    full_name_field,
    normalize_email,
    parse_iso_datetime,
)
from ..hosts import vendor_or_override
from ..http import HttpClient, in_thread, make_session, oauth_app_credentials, oauth_refresh
from .client import HubSpotClient, MissingScopes, existing_id, hubspot_error_message

DEFAULT_TAGS_PROPERTY = "driftsync_tags"

#: every scope the connector uses, requested on OAuth and checked by ``check()``:
#: contacts read/write (https://developers.hubspot.com/docs/api/crm/contacts) and
#: the contact schema, read to list properties and write to create and extend
#: the tags property (https://developers.hubspot.com/docs/api/crm/properties)
REQUIRED_SCOPES: tuple[str, ...] = (
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
)

#: key -> (type, meaning, label used when the portal does not list the property)
STANDARD_FIELDS: dict[str, tuple[FieldType, Semantic | None, str]] = {
    "email": (FieldType.EMAIL, Semantic.EMAIL, "Email"),
    "firstname": (FieldType.TEXT, Semantic.FIRST_NAME, "First Name"),
    "lastname": (FieldType.TEXT, Semantic.LAST_NAME, "Last Name"),
    "phone": (FieldType.PHONE, Semantic.PHONE, "Phone Number"),
    "company": (FieldType.TEXT, Semantic.COMPANY, "Company Name"),
    "jobtitle": (FieldType.TEXT, Semantic.TITLE, "Job Title"),
    "website": (FieldType.URL, Semantic.WEBSITE, "Website URL"),
    "lifecyclestage": (FieldType.CHOICE, Semantic.LEAD_STAGE, "Lifecycle Stage"),
    "hs_lead_status": (FieldType.CHOICE, None, "Lead Status"),
}
#: always read: the change detection and the created/updated stamps need them
TIMESTAMPS = ("createdate", "lastmodifieddate")


def property_field_type(prop: dict[str, Any]) -> FieldType | None:
    kind, field_type = prop.get("type"), prop.get("fieldType")
    if kind == "bool" or field_type == "booleancheckbox":
        return FieldType.BOOLEAN
    if kind == "enumeration":
        return FieldType.MULTICHOICE if field_type == "checkbox" else FieldType.CHOICE
    if kind == "string":
        return FieldType.PHONE if field_type == "phonenumber" else FieldType.TEXT
    if kind == "phone_number":
        return FieldType.PHONE
    if kind == "number":
        return FieldType.NUMBER
    if kind == "date":
        return FieldType.DATE
    if kind == "datetime":
        return FieldType.DATETIME
    return None


def _ms(value: Any) -> int | None:
    """Epoch ms from HubSpot's ISO strings (v3) or ms strings (older data)."""
    if value in (None, ""):
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    parsed = parse_iso_datetime(text)
    return int(parsed.timestamp() * 1000) if parsed else None


def to_canonical(kind: FieldType, raw: Any) -> Any:
    if raw is None or raw == "":
        return None
    if kind in _TEXTUAL:
        return clean_text(raw)
    if kind == FieldType.NUMBER:
        try:
            return canonical_number(raw)
        except ValueError:
            return clean_text(raw)
    if kind == FieldType.BOOLEAN:
        return str(raw).strip().lower() == "true"
    if kind == FieldType.DATE:
        ms = _ms(raw) if str(raw).isdigit() else None
        if ms is not None:
            return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%d")
        return str(raw)[:10]
    if kind == FieldType.DATETIME:
        ms = _ms(raw)
        return format_datetime(epoch_ms_to_datetime(ms)) if ms is not None else None  # type: ignore[arg-type]
    if kind == FieldType.MULTICHOICE:
        return sorted({v.strip() for v in str(raw).split(";") if v.strip()}) or None
    return clean_text(raw)


_TEXTUAL = frozenset(
    {FieldType.TEXT, FieldType.EMAIL, FieldType.PHONE, FieldType.URL, FieldType.CHOICE}
)


def to_hubspot(kind: FieldType | None, value: Any) -> str:
    """A canonical value as HubSpot takes it; "" clears a property."""
    if value is None:
        return ""
    if kind == FieldType.BOOLEAN or isinstance(value, bool):
        return "true" if value else "false"
    if kind == FieldType.MULTICHOICE or isinstance(value, (list, tuple, set, frozenset)):
        return ";".join(sorted(str(v) for v in value))
    return str(value)


def _is_record_error(exc: Exception) -> bool:
    """A refusal of the request, not of the account."""
    return isinstance(exc, PermanentError) and not isinstance(exc, (AuthError, ConfigError))


class HubSpotConnector(Connector):
    key = "hubspot"
    name = "HubSpot"
    # detect_unsubscribes: a HubSpot contact has no unsubscribed state of its
    # own; email subscriptions live per subscription type in the communication
    # preferences API, which would need another scope and a call per contact.
    # webhooks: HubSpot sends them only to a public app's one target URL,
    # configured in the developer account, not per portal.
    capabilities = Capabilities(
        list_changes=True,
        detect_deletions=True,
        detect_unsubscribes=False,
        tags=True,
        webhooks=False,
        batch_writes=True,
        custom_fields=True,
    )
    default_base_url = "https://api.hubapi.com"
    #: the only host a HubSpot token (and the OAuth client secret) is sent to
    vendor_hosts = ("api.hubapi.com",)
    #: GET /crm/v3/objects/contacts takes at most 100
    page_size = 100
    #: list calls to one page of a full read: 200 contacts, as a search page,
    #: so the other side's writes go in batches of up to 200 (Google's largest)
    list_calls_per_page: ClassVar[int] = 2
    #: POST .../search takes at most 200 (raised from 100 in 2024)
    search_page_size: ClassVar[int] = 200
    #: batch/create, batch/update and batch/read take at most 100 inputs
    write_batch_size = 100
    read_batch_size: ClassVar[int] = 100
    list_endpoints = frozenset(
        {"GET /crm/v3/objects/contacts", "POST /crm/v3/objects/contacts/search"}
    )
    batch_write_endpoints = frozenset(
        {
            "POST /crm/v3/objects/contacts/batch/create",
            "POST /crm/v3/objects/contacts/batch/update",
            "POST /crm/v3/objects/contacts/batch/upsert",
        }
    )
    oauth_provider = "hubspot"
    paste_label = "Private app access token"
    #: where the token endpoint is, relative to the API base URL (also a sandbox's)
    token_path: ClassVar[str] = "/oauth/v1/token"
    #: how far back each run re-reads: search results trail writes by seconds
    overlap_ms: ClassVar[int] = 30_000
    #: the list endpoint reads the primary store (only search lags), so after a
    #: full read the search starts at the read's start, less the Date header's
    #: rounding
    full_scan_margin_ms: ClassVar[int] = 1_000
    #: beyond this many entries, the cursor forgets what it reported in the overlap
    max_seen_in_cursor: ClassVar[int] = 2_000
    #: after a burst of writes too big to remember, the overlap shrinks to this
    min_overlap_ms: ClassVar[int] = 5_000
    side_settings = (
        SideSetting(
            "tags_property",
            "Tags property",
            help_text="Internal name of the multiple-checkbox contact property that holds "
            f"tags (default {DEFAULT_TAGS_PROPERTY}; created on first use).",
        ),
    )

    def __init__(self, credentials: Credentials, *args: Any, **kwargs: Any) -> None:
        super().__init__(credentials, *args, **kwargs)
        refresher = None
        if credentials.refresh_token:
            client_id, secret = oauth_app_credentials(self.oauth_provider)
            refresher = oauth_refresh(
                make_session, self.token_url(), client_id, secret, self.vendor_hosts
            )
        self.http = HttpClient(
            self.base_url,
            credentials=credentials,
            refresher=refresher,
            refresh_hook=self.refresh_hook,
            account_key=self.account_key,
            vendor_hosts=self.vendor_hosts,
            error_message=hubspot_error_message,
        )
        self.client = HubSpotClient(self.http)
        self._props: list[dict[str, Any]] | None = None
        self._fields: list[Field] | None = None
        self._type_of: dict[str, FieldType] | None = None
        self._tag_prop: dict[str, Any] | None = None
        self.tags_property = str(self.settings.get("tags_property") or DEFAULT_TAGS_PROPERTY)

    def token_url(self) -> str:
        """HubSpot's token endpoint; a sandbox's only under an overridden base
        where overrides are allowed."""
        vendor = f"{self.default_base_url}{self.token_path}"
        derived = f"{self.base_url}{self.token_path}"
        return vendor_or_override(vendor, derived, self.base_url, self.vendor_hosts)

    # ------------------------------------------------------------------ account

    def check(self) -> AccountInfo:
        details = self.client.account_details()
        portal = str(details.get("portalId", ""))
        extra: dict[str, Any] = {
            "portal_id": portal,
            "time_zone": details.get("timeZone"),
            "ui_domain": details.get("uiDomain"),
            "data_hosting": details.get("dataHostingLocation"),
        }
        label = f"HubSpot portal {portal}"
        token = self.http.credentials.access_token
        granted: list[str] | None = None
        if token:  # OAuth
            try:
                info = self.client.access_token_info(token)
            except NotFound:
                info = {}
            if info.get("user"):
                label = f"{label} ({info['user']})"
            granted = info.get("scopes") if "scopes" in info else None
            extra.update(
                {
                    "user": info.get("user"),
                    "hub_domain": info.get("hub_domain"),
                    "scopes": info.get("scopes") or [],
                }
            )
        elif self.http.credentials.api_key:  # a private app's token
            try:
                info = self.client.private_app_token_info(self.http.credentials.api_key)
            except (NotFound, MissingScopes):
                info = {}
            except AuthError:
                raise
            except PermanentError:
                info = {}  # no metadata for this token: the scopes show at first use
            granted = info.get("scopes") if "scopes" in info else None
            extra["scopes"] = info.get("scopes") or []
        if granted is not None:
            # "oauth" is an OAuth app's own scope: private apps have none such
            needed = REQUIRED_SCOPES if token else tuple(s for s in REQUIRED_SCOPES if s != "oauth")
            missing = [s for s in needed if s not in set(granted)]
            if missing:
                raise MissingScopes(missing)
        return AccountInfo(remote_id=portal, label=label, extra=extra)

    def side_options(self) -> dict[str, list[tuple[str, str]]]:
        options = [
            (p["name"], f"{p.get('label') or p['name']} ({p['name']})")
            for p in self._properties()
            if p.get("type") == "enumeration"
            and p.get("fieldType") == "checkbox"
            and not p.get("hubspotDefined")
        ]
        if not any(name == DEFAULT_TAGS_PROPERTY for name, _ in options):
            options.insert(0, (DEFAULT_TAGS_PROPERTY, "DriftSync tags (created on first use)"))
        return {"tags_property": options}

    # ------------------------------------------------------------------ schema

    def _properties(self) -> list[dict[str, Any]]:
        if self._props is None:
            self._props = self.client.list_properties()
        return self._props

    def fields(self) -> list[Field]:
        if self._fields is None and self.schema_hint is not None:
            self._fields = list(self.schema_hint)  # fresh from the last read
        if self._fields is not None:
            return list(self._fields)
        props = self._properties()
        by_name = {p.get("name"): p for p in props}
        out: list[Field] = []
        for key, (kind, semantic, label) in STANDARD_FIELDS.items():
            prop = by_name.get(key) or {}
            out.append(
                Field(
                    key,
                    str(prop.get("label") or label),
                    kind,
                    read_only=self._read_only(prop),
                    choices=self._choices(prop) if kind == FieldType.CHOICE else (),
                    semantic=semantic,
                )
            )
            if key == "lastname":
                out.append(full_name_field("firstname", "lastname"))
        for prop in props:
            name = str(prop.get("name") or "")
            if not name or name in STANDARD_FIELDS or name == self.tags_property:
                continue
            if prop.get("calculated") or prop.get("hidden"):
                continue
            kind = property_field_type(prop)
            if kind is None:
                continue
            out.append(
                Field(
                    name,
                    str(prop.get("label") or name),
                    kind,
                    read_only=self._read_only(prop),
                    choices=self._choices(prop)
                    if kind in (FieldType.CHOICE, FieldType.MULTICHOICE)
                    else (),
                    custom=not prop.get("hubspotDefined"),
                )
            )
        self._fields = out
        return list(out)

    @staticmethod
    def _read_only(prop: dict[str, Any]) -> bool:
        meta = prop.get("modificationMetadata") or {}
        return bool(meta.get("readOnlyValue") or prop.get("calculated"))

    @staticmethod
    def _choices(prop: dict[str, Any]) -> tuple[str, ...]:
        return tuple(
            str(o["value"]) for o in prop.get("options") or [] if o.get("value") is not None
        )

    def _types(self) -> dict[str, FieldType]:
        if self._type_of is None:
            self._type_of = {f.key: f.type for f in self.fields() if not f.is_virtual}
        return self._type_of

    def _read_properties(self) -> list[str]:
        """The properties each read asks for: standard and custom fields, or
        the connection's chosen list; never all of a portal's hundreds."""
        chosen = self.settings.get("properties")
        if chosen:
            names = [str(n) for n in chosen if n != FULL_NAME_KEY]
            names.append("email")
        else:
            names = [
                f.key
                for f in self.fields()
                if not f.is_virtual and (f.key in STANDARD_FIELDS or f.custom)
            ]
        names.extend((self.tags_property, *TIMESTAMPS))
        return list(dict.fromkeys(names))

    # ------------------------------------------------------------------ records

    def _contact(self, record: dict[str, Any]) -> Contact:
        props = record.get("properties") or {}
        types = self._types()
        tags_property = self.tags_property
        fields = {
            key: to_canonical(types[key], value)
            for key, value in props.items()
            if key in types and key != tags_property
        }
        tags_raw = props.get(tags_property) or ""
        modified = _ms(props.get("lastmodifieddate")) or _ms(record.get("updatedAt"))
        created = parse_iso_datetime(record.get("createdAt")) or epoch_ms_to_datetime(
            _ms(props.get("createdate"))
        )
        return Contact(
            id=str(record.get("id")),
            email=clean_text(props.get("email")),
            fields=fields,
            tags=frozenset(t.strip() for t in str(tags_raw).split(";") if t.strip()),
            created_at=created,
            updated_at=epoch_ms_to_datetime(modified) if modified is not None else None,
            version=str(modified) if modified is not None else None,
            deleted=bool(record.get("archived")),
        )

    @staticmethod
    def _modified_ms(record: dict[str, Any]) -> int | None:
        props = record.get("properties") or {}
        return _ms(props.get("lastmodifieddate")) or _ms(record.get("updatedAt"))

    # ------------------------------------------------------------------ reading

    def get_contacts(self, ids: Iterable[str]) -> dict[str, Contact]:
        wanted = [i for i in dict.fromkeys(str(i) for i in ids) if i.isdigit()]
        out: dict[str, Contact] = {}
        props = self._read_properties()
        answers = self.client.http.in_flight(
            lambda chunk: self.client.batch_read(chunk, properties=props),
            chunked(wanted, self.read_batch_size),
        )
        for answer in answers:
            for record in answer.results:
                contact = self._contact(record)
                out[contact.id] = contact
        return out

    def find_by_emails(self, emails: Iterable[str]) -> dict[str, list[Contact]]:
        """``batch/read`` with ``idProperty: email``: it reads the primary
        store, so a contact created seconds ago is found (the search index
        lags behind, which could let a duplicate through). It matches the
        primary email only, as HubSpot's own uniqueness does."""
        keys = [k for k in dict.fromkeys(normalize_email(e) for e in emails) if k]
        out: dict[str, list[Contact]] = {}
        props = self._read_properties()
        answers = self.client.http.in_flight(
            lambda chunk: self.client.batch_read(chunk, properties=props, id_property="email"),
            chunked(keys, self.read_batch_size),
        )
        for result in answers:
            for record in result.results:
                contact = self._contact(record)
                out.setdefault(normalize_email(contact.email), []).append(contact)
        epoch = dt.datetime.min.replace(tzinfo=dt.UTC)
        for found in out.values():
            found.sort(key=lambda c: (c.created_at or epoch, int(c.id) if c.id.isdigit() else 0))
        return out

    def changes(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        state = self._load_cursor(cursor)
        if full or state is None:
            yield from self._full_scan({})
        elif state.get("phase") == "full":
            yield from self._full_scan(state)
        else:
            yield from self._incremental(state)

    @staticmethod
    def _load_cursor(cursor: str | None) -> dict[str, Any] | None:
        if not cursor:
            return None
        try:
            state = json.loads(cursor)
        except ValueError:
            return None  # not ours (or damaged): start over with a full read
        return state if isinstance(state, dict) and state.get("v") == 1 else None

    @staticmethod
    def _dump(state: dict[str, Any]) -> str:
        return json.dumps({"v": 1, **state}, separators=(",", ":"), sort_keys=True)

    def _trim(self, seen: dict[str, int], keep_ms: int | None = None) -> dict[str, int]:
        """At most ``max_seen_in_cursor`` entries. Inside a search: only what
        paging needs (``keep_ms``). Between runs: the newest ones (a contact
        re-read but no longer remembered is reported again: an echo the run
        compares and leaves alone), never none of them: a burst of writes
        whose millisecond ties cross the cap would otherwise be reported
        again whole."""
        if len(seen) <= self.max_seen_in_cursor:
            return seen
        if keep_ms is not None:
            # too many to carry: keep only what paging needs and accept re-reads
            return {k: v for k, v in seen.items() if v == keep_ms}
        newest = sorted(seen.items(), key=lambda item: (item[1], item[0]), reverse=True)
        return dict(newest[: self.max_seen_in_cursor])

    def _settle(
        self, seen: dict[str, int], since: int, lag_from: int, burst_from: int
    ) -> tuple[int, dict[str, int]]:
        """Where the next run starts, and what it must not report again.

        ``lag_from``: the oldest change this run's search may have missed if
        the index trails writes by ``overlap_ms``; ``burst_from``: the same
        for ``min_overlap_ms`` (``_lag_bound``)."""
        since = max(since, lag_from)
        window = {k: v for k, v in seen.items() if v >= since}
        if len(window) <= self.max_seen_in_cursor:
            return since, window
        # a burst of writes: re-reading it all on every run would cost more
        # than it protects, so re-read only the newest, down to min_overlap_ms
        newest = sorted(window.values(), reverse=True)[self.max_seen_in_cursor - 1]
        since = max(since, min(newest, burst_from))
        return since, self._trim({k: v for k, v in window.items() if v >= since})

    def _lag_bound(
        self, low: int, high: int | None, fetched: int, lag: int, bound: int | None
    ) -> int | None:
        """The oldest change a search page may have missed, if the index trails
        writes by ``lag`` ms (``bound``: the oldest so far in the run).

        The page answered every indexed contact modified in ``[low, high)``
        (``high`` None: from ``low`` on, the run's last page); one modified
        before ``fetched - lag`` was indexed by then. So only the changes in
        ``[max(low, fetched - lag), high)`` can be missing: the overlap is
        measured from when each part of the window was read, not from the
        run's first page (a run that reads for a while re-read, the next time,
        changes it had read long after they were indexed)."""
        start = max(low, fetched - lag)
        if high is not None and start >= high:
            return bound
        return start if bound is None else min(bound, start)

    def _list_calls(
        self, after: str | None, props: list[str], clock: list[int]
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a full read: up to ``list_calls_per_page`` list calls,
        each from the ``after`` of the one before. ``clock`` gets HubSpot's
        time of the first answer when it is still empty."""
        records: list[dict[str, Any]] = []
        for _ in range(self.list_calls_per_page):
            data = self.client.list_contacts(properties=props, limit=self.page_size, after=after)
            if not clock:
                clock.append(self.client.now_ms())
            records.extend(data.get("results") or [])
            after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if not after:
                break
        return records, after

    def _full_scan(self, state: dict[str, Any]) -> Iterator[Page]:
        """The list endpoint, ``list_calls_per_page`` calls to a page, the
        next page read ahead (its calls in flight) while the run works on
        this one: each call's ``after`` comes from the one before, so a full
        read is a chain of calls, and the run's writes would otherwise wait
        for it and it for them."""
        after: str | None = state.get("after")
        clock: list[int] = [int(state["start"])] if state.get("start") is not None else []
        seen: dict[str, int] = {str(k): int(v) for k, v in (state.get("seen") or {}).items()}
        props = self._read_properties()
        ahead = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hubspot-read-ahead")
        try:
            pending: Future[tuple[list[dict[str, Any]], str | None]] | None = None
            while True:
                if pending is not None:
                    records, after = pending.result()
                else:
                    records, after = self._list_calls(after, props, clock)
                pending = (
                    ahead.submit(in_thread(self._list_calls), after, props, clock)
                    if after
                    else None
                )
                start = clock[0]
                horizon = start - self.full_scan_margin_ms
                for record in records:
                    modified = self._modified_ms(record)
                    if modified is not None and modified >= horizon:
                        seen[str(record.get("id"))] = modified
                contacts = [self._contact(r) for r in records]
                if after:
                    cursor = {
                        "phase": "full",
                        "after": after,
                        "start": start,
                        "seen": self._trim(seen),
                    }
                    yield Page(contacts, self._dump(cursor), done=False, full_scan=True)
                    continue
                cursor = {
                    "phase": "search",
                    "since": horizon,
                    "seen": self._trim(seen),
                    "arch_since": horizon,
                }
                yield Page(contacts, self._dump(cursor), done=True, full_scan=True)
                return
        finally:
            # a run that stops early waits for the page read ahead: no request
            # of this run is still on the wire once it has returned
            ahead.shutdown(wait=True, cancel_futures=True)

    def _search_request(self, floor: int, tie: int | None, props: list[str]) -> dict[str, Any]:
        if tie is None:
            filters = [{"propertyName": "lastmodifieddate", "operator": "GTE", "value": str(floor)}]
            sort = "lastmodifieddate"
        else:
            filters = [
                {"propertyName": "lastmodifieddate", "operator": "EQ", "value": str(floor)},
                {"propertyName": "hs_object_id", "operator": "GT", "value": str(tie)},
            ]
            sort = "hs_object_id"
        return {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": props,
            "limit": self.search_page_size,
        }

    def _incremental(self, state: dict[str, Any]) -> Iterator[Page]:
        props = self._read_properties()
        since = int(state.get("since") or 0)
        arch_since = int(state.get("arch_since") or since)
        run_start: int | None = state.get("run_start")
        seen: dict[str, int] = {str(k): int(v) for k, v in (state.get("seen") or {}).items()}
        phase = state.get("phase") or "search"
        floor = int(state.get("floor") or since)
        tie: int | None = state.get("tie")
        # the oldest changes this run's pages may have missed (``_lag_bound``);
        # a cursor from before they were kept: as from the run's first page
        lag_from: int | None = state.get("lag_from")
        burst_from: int | None = state.get("burst_from")
        if run_start is not None and lag_from is None:
            lag_from = run_start - self.overlap_ms
            burst_from = run_start - self.min_overlap_ms

        def common() -> dict[str, Any]:
            return {
                "since": since,
                "arch_since": arch_since,
                "run_start": run_start,
                "lag_from": lag_from,
                "burst_from": burst_from,
            }

        while phase == "search":
            low, walking = floor, tie is not None
            data = self.client.search_contacts(self._search_request(floor, tie, props))
            if run_start is None:
                run_start = self.client.now_ms()
            # HubSpot's clock at this answer, less the Date header's rounding
            fetched = self.client.now_ms() - self.full_scan_margin_ms
            records = data.get("results") or []
            contacts: list[Contact] = []
            for record in records:
                rid, modified = str(record.get("id")), self._modified_ms(record)
                if modified is not None and seen.get(rid) == modified:
                    continue  # reported already, unchanged since
                contacts.append(self._contact(record))
                if tie is None and modified is not None:
                    seen[rid] = modified
            more = bool(((data.get("paging") or {}).get("next") or {}).get("after"))
            if tie is not None:
                if more:
                    tie = int(records[-1]["id"])
                else:
                    tie, floor = None, floor + 1
            elif more:
                last = self._modified_ms(records[-1]) if records else None
                if last is None or last <= floor:
                    tie = 0  # a whole page in one millisecond: walk it by id
                else:
                    floor = last
            else:
                phase = "archived"
            # what this page answered: one millisecond (a walk by id), up to the
            # next page's floor (its own last millisecond is read again there),
            # or everything from ``low`` on (the last page)
            high = low + 1 if walking else (floor if phase == "search" else None)
            lag_from = self._lag_bound(low, high, fetched, self.overlap_ms, lag_from)
            burst_from = self._lag_bound(low, high, fetched, self.min_overlap_ms, burst_from)
            if phase == "search":
                keep_from = min(floor, run_start - self.overlap_ms)
                seen = {k: v for k, v in seen.items() if v >= keep_from}
                cursor = {
                    **common(),
                    "phase": "search",
                    "floor": floor,
                    "tie": tie,
                    "seen": self._trim(seen, floor),
                }
            else:
                assert lag_from is not None
                assert burst_from is not None
                since, seen = self._settle(seen, since, lag_from, burst_from)
                cursor = {**common(), "phase": "archived", "seen": seen}
            yield Page(contacts, self._dump(cursor), done=False)

        assert run_start is not None
        arch_after: str | None = (
            state.get("arch_after") if state.get("phase") == "archived" else None
        )
        # archived contacts reported already inside the overlap: id -> archivedAt
        arch_seen: dict[str, int] = {
            str(k): int(v) for k, v in (state.get("arch_seen") or {}).items()
        }
        next_arch_since = run_start - self.overlap_ms
        while True:
            data = self.client.list_contacts(
                properties=props, limit=self.page_size, after=arch_after, archived=True
            )
            deleted: list[Contact] = []
            for record in data.get("results") or []:
                rid, archived_at = str(record.get("id")), _ms(record.get("archivedAt"))
                if archived_at is None or archived_at < arch_since:
                    continue
                if arch_seen.get(rid) == archived_at:
                    continue
                arch_seen[rid] = archived_at
                contact = self._contact(record)
                contact.deleted = True
                deleted.append(contact)
            arch_after = ((data.get("paging") or {}).get("next") or {}).get("after")
            if arch_after:
                cursor = {
                    **common(),
                    "phase": "archived",
                    "seen": seen,
                    "arch_after": arch_after,
                    "arch_seen": arch_seen,
                }
                yield Page(deleted, self._dump(cursor), done=False)
                continue
            recent = {k: v for k, v in arch_seen.items() if v >= next_arch_since}
            final = {
                "phase": "search",
                "since": since,
                "seen": seen,
                "arch_since": next_arch_since,
                "arch_seen": self._trim(recent),
            }
            yield Page(deleted, self._dump(final), done=True)
            return

    # ------------------------------------------------------------------ tags

    def _ensure_tag_options(self, tags: set[str]) -> None:
        if not tags:
            return
        name = self.tags_property
        prop = self._tag_prop
        if prop is None or not tags <= {o.get("value") for o in prop.get("options") or []}:
            prop = self.client.get_property(name)  # fresh: another worker may have added options
        if prop is None:
            prop = self.client.create_property(
                {
                    "name": name,
                    "label": "DriftSync tags",
                    "description": "Tags kept in sync by driftsync.",
                    "groupName": "contactinformation",
                    "type": "enumeration",
                    "fieldType": "checkbox",
                    "options": [
                        {"label": t, "value": t, "displayOrder": i, "hidden": False}
                        for i, t in enumerate(sorted(tags))
                    ],
                }
            ) or self.client.get_property(name)
            if prop is None:
                raise ConfigError(f"HubSpot would not create the tags property {name!r}")
            self._props = None  # the portal's property list just grew
        if prop.get("type") != "enumeration" or prop.get("fieldType") != "checkbox":
            raise ConfigError(
                f"The HubSpot property {name!r} is not a multiple checkboxes property; "
                "choose another tags property for this connection."
            )
        options = list(prop.get("options") or [])
        known = {o.get("value") for o in options}
        missing = sorted(tags - known)
        if missing:
            options += [
                {"label": t, "value": t, "displayOrder": len(options) + i, "hidden": False}
                for i, t in enumerate(missing)
            ]
            prop = self.client.update_property(name, {"options": options})
        self._tag_prop = prop

    # ------------------------------------------------------------------ writing

    def write_contacts(self, writes: list[ContactWrite]) -> list[WriteResult]:
        return _WriteRun(self, writes).run()


class _WriteRun:
    """One ``write_contacts`` call: prepares properties, then creates and
    updates in batches, isolating a refused contact by retrying one by one."""

    def __init__(self, connector: HubSpotConnector, writes: list[ContactWrite]) -> None:
        self.c = connector
        self.client = connector.client
        self.writes = writes
        self.types = connector._types()
        self.results: list[WriteResult | None] = [None] * len(writes)
        self.props: dict[int, dict[str, str]] = {}
        self.new_tags: dict[int, frozenset[str]] = {}

    def run(self) -> list[WriteResult]:
        self._prepare()
        creates = [i for i in self.props if self.writes[i].id is None]
        updates = [i for i in self.props if self.writes[i].id is not None]
        self._create_all(creates)
        self._update_all(updates)
        return [
            r
            if r is not None
            else WriteResult(w.ref, error=PermanentError("HubSpot gave no answer for this contact"))
            for r, w in zip(self.results, self.writes)
        ]

    def _fail(self, i: int, error: PermanentError) -> None:
        self.results[i] = WriteResult(self.writes[i].ref, error=error)

    def _reject(self, i: int, exc: PermanentError) -> None:
        if isinstance(exc, NotFound) and self.writes[i].id is not None:
            self._fail(i, NotFound(exc.message, status=exc.status, code=exc.code))
        else:
            self._fail(i, ContactRejected(exc.message, status=exc.status, code=exc.code))

    # -- preparation ------------------------------------------------------

    def _prepare(self) -> None:
        tags_prop = self.c.tags_property
        lacking: list[int] = []
        for i, w in enumerate(self.writes):
            bad = sorted(t for t in w.add_tags if ";" in t or not t.strip())
            if bad:
                self._fail(
                    i,
                    ContactRejected(
                        f"HubSpot keeps tags as ';'-separated options: cannot store tag {bad[0]!r}"
                    ),
                )
                continue
            props = {
                key: to_hubspot(self.types.get(key), value)
                for key, value in w.fields.items()
                if key != FULL_NAME_KEY
            }
            if w.id is None and not props.get("email") and w.email:
                props["email"] = w.email.strip()
            self.props[i] = props
            if w.id is not None and (w.add_tags or w.remove_tags) and w.current is None:
                lacking.append(i)
        current: dict[str, frozenset[str]] = {}
        if lacking:
            ids = list(dict.fromkeys(str(self.writes[i].id) for i in lacking))
            for chunk in chunked(ids, self.c.read_batch_size):
                for record in self.client.batch_read(chunk, properties=[tags_prop]).results:
                    raw = (record.get("properties") or {}).get(tags_prop) or ""
                    current[str(record["id"])] = frozenset(t for t in raw.split(";") if t)
        wanted: set[str] = set()
        for i in list(self.props):
            w = self.writes[i]
            if w.id is None:
                if w.add_tags:
                    self.props[i][tags_prop] = ";".join(sorted(w.add_tags))
                    self.new_tags[i] = frozenset(w.add_tags)
                    wanted |= w.add_tags
                continue
            if not (w.add_tags or w.remove_tags):
                continue
            before = w.current.tags if w.current is not None else current.get(str(w.id))
            if before is None:
                del self.props[i]
                self._fail(i, NotFound(f"HubSpot contact {w.id} no longer exists", status=404))
                continue
            after = (before | w.add_tags) - w.remove_tags
            if after != before:
                self.props[i][tags_prop] = ";".join(sorted(after))
                self.new_tags[i] = frozenset(after)
                wanted |= w.add_tags - before
        self.c._ensure_tag_options(wanted)

    # -- results -----------------------------------------------------------

    def _written(self, i: int, record: dict[str, Any]) -> None:
        w = self.writes[i]
        answered = self.c._contact(record)
        fields = dict(w.current.fields) if w.current is not None else {}
        fields.update(w.fields)
        fields.pop(FULL_NAME_KEY, None)
        fields.update(answered.fields)  # HubSpot's normalized values win (e.g. email case)
        answered_props = record.get("properties") or {}
        if self.c.tags_property in answered_props:
            tags = answered.tags
        elif i in self.new_tags:
            tags = self.new_tags[i]
        else:
            tags = w.current.tags if w.current is not None else frozenset()
        answered.fields = fields
        answered.tags = tags
        answered.email = answered.email or clean_text(fields.get("email")) or w.email
        if answered.created_at is None and w.current is not None:
            answered.created_at = w.current.created_at
        self.results[i] = WriteResult(w.ref, contact=answered)

    def _existing(self, i: int, contact: Contact) -> None:
        self.results[i] = WriteResult(self.writes[i].ref, contact=contact)

    # -- creates -----------------------------------------------------------

    def _create_all(self, indexes: list[int]) -> None:
        pending = indexes
        while pending:
            batch: list[int] = []
            deferred: list[int] = []
            emails: set[str] = set()
            for i in pending:
                email = normalize_email(self.props[i].get("email"))
                if not email:
                    # without an email only a single create maps its answer back for sure
                    self._create_one(i)
                elif email in emails:
                    deferred.append(i)  # a second write for one email: in the next round
                else:
                    emails.add(email)
                    batch.append(i)
            # distinct emails: the round's batches are independent, sent together
            self.client.http.in_flight(
                self._create_batch, list(chunked(batch, self.c.write_batch_size))
            )
            pending = deferred

    def _create_batch(self, batch: list[int]) -> None:
        remaining = batch
        while remaining:
            try:
                records = self.client.batch_create([self.props[i] for i in remaining])
            except PermanentError as exc:
                if not _is_record_error(exc):
                    raise
                if exc.status != 409:
                    self.c._tag_prop = None
                    break
                # some emails exist already: return those contacts, create the rest
                found = self.c.find_by_emails(self.props[i]["email"] for i in remaining)
                still = []
                for i in remaining:
                    match = found.get(normalize_email(self.props[i]["email"]))
                    if match:
                        self._existing(i, match[0])
                    else:
                        still.append(i)
                if len(still) == len(remaining):
                    break
                remaining = still
                continue
            by_email = {
                normalize_email((r.get("properties") or {}).get("email")): r for r in records
            }
            for pos, i in enumerate(remaining):
                record = by_email.get(normalize_email(self.props[i]["email"]))
                if record is None and len(records) == len(remaining):
                    record = records[pos]
                if record is not None:
                    self._written(i, record)
                else:
                    self._create_one(i)
            return
        for i in remaining:
            self._create_one(i)

    def _create_one(self, i: int) -> None:
        try:
            record = self.client.create_contact(self.props[i])
        except PermanentError as exc:
            if not _is_record_error(exc):
                raise
            known = existing_id(exc)
            if known:
                found = self.c.get_contacts([known]).get(known)
                if found is not None:
                    self._existing(i, found)
                    return
            self._reject(i, exc)
            return
        self._written(i, record)

    # -- updates -----------------------------------------------------------

    def _update_all(self, indexes: list[int]) -> None:
        noop = [i for i in indexes if not self.props[i]]
        pending = [i for i in indexes if self.props[i]]
        while pending:
            batch: list[int] = []
            deferred: list[int] = []
            ids: set[str] = set()
            for i in pending:
                cid = str(self.writes[i].id)
                if cid in ids:
                    deferred.append(i)  # a contact's second write: in the next round
                else:
                    ids.add(cid)
                    batch.append(i)
            # one write per contact: the round's batches are independent, sent together
            self.client.http.in_flight(
                self._update_batch, list(chunked(batch, self.c.write_batch_size))
            )
            pending = deferred
        if noop:
            self._unchanged(noop)

    def _update_batch(self, batch: list[int]) -> None:
        try:
            answer = self.client.batch_update(
                [(str(self.writes[i].id), self.props[i]) for i in batch]
            )
        except PermanentError as exc:
            if not _is_record_error(exc):
                raise
            self.c._tag_prop = None
            for i in batch:
                self._update_one(i)
            return
        by_id = {str(r.get("id")): r for r in answer.results}
        for i in batch:
            cid = str(self.writes[i].id)
            record = by_id.get(cid)
            if record is not None:
                self._written(i, record)
            else:
                self._fail(i, NotFound(f"HubSpot contact {cid} no longer exists", status=404))

    def _update_one(self, i: int) -> None:
        try:
            record = self.client.update_contact(str(self.writes[i].id), self.props[i])
        except PermanentError as exc:
            if not _is_record_error(exc):
                raise
            holder = existing_id(exc) if self.props[i].get("email") else None
            if holder and holder != str(self.writes[i].id):
                self._update_holder(i, holder, exc)
                return
            self._reject(i, exc)
            return
        self._written(i, record)

    def _update_holder(self, i: int, holder: str, refusal: PermanentError) -> None:
        """The email this update sets belongs to contact ``holder``: contacts
        match on email, so bind to that contact and write the change there
        (retrying the same update would fail the same way forever) — unless
        another binding already holds that contact: then the two are
        duplicates for a person to merge, and nothing is written over it."""
        held = self.c.bound_elsewhere
        if held is not None and held(holder):
            self._reject(
                i,
                PermanentError(
                    f"HubSpot contact {holder} already has the email "
                    f"{self.props[i].get('email')} and is synced with another contact: "
                    "the two are duplicates; merge them in HubSpot, or change one email",
                    status=refusal.status,
                    code=refusal.code,
                ),
            )
            return
        try:
            record = self.client.update_contact(holder, self.props[i])
        except PermanentError as exc:
            if not _is_record_error(exc):
                raise
            self._reject(i, refusal)
            return
        contact = self.c._contact(record)
        contact.fields = {**self.writes[i].fields, **contact.fields}
        contact.fields.pop(FULL_NAME_KEY, None)
        if i in self.new_tags and self.c.tags_property not in (record.get("properties") or {}):
            contact.tags = self.new_tags[i]
        self._existing(i, contact)

    def _unchanged(self, indexes: list[int]) -> None:
        unknown = [str(self.writes[i].id) for i in indexes if self.writes[i].current is None]
        fetched = self.c.get_contacts(unknown) if unknown else {}
        for i in indexes:
            w = self.writes[i]
            contact = w.current if w.current is not None else fetched.get(str(w.id))
            if contact is None:
                self._fail(i, NotFound(f"HubSpot contact {w.id} no longer exists", status=404))
            else:
                self._existing(i, contact)
