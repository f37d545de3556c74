"""Google Contacts (People API) ↔ the common Contact record.

Reads with sync tokens (tombstones become deletions), writes in batches of
200, keeps labels (user contact groups) as tags. Multi-valued fields (emails,
phones) expose the primary value; a write replaces that one and keeps the
others, which is why updates start from a fresh read of each person.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from connectors.base import (
    NO_TAGS,
    AccountInfo,
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
    chunked,
    clean_text,
    full_name_field,
    normalize_email,
    parse_iso_datetime,
)
from connectors.hosts import vendor_or_override
from connectors.http import HttpClient, make_session, oauth_app_credentials, oauth_refresh

from .client import (
    DEFAULT_BASE_URL,
    TOKEN_URL,
    VENDOR_HOSTS,
    BatchRejected,
    GoogleClient,
    Person,
    SyncTokenExpired,
)

log = logging.getLogger(__name__)

PERSON_FIELDS = (
    "names,emailAddresses,phoneNumbers,organizations,birthdays,memberships,userDefined,metadata"
)
CUSTOM_PREFIX = "custom:"
MY_CONTACTS = "contactGroups/myContacts"
#: Google's system groups have fixed resource names: a membership in one is
#: never a tag, and needs no read of the account's groups to tell
SYSTEM_GROUPS = frozenset(
    f"contactGroups/{name}"
    for name in (
        "myContacts",
        "starred",
        "chatBuddies",
        "all",
        "friends",
        "family",
        "coworkers",
        "blocked",
    )
)
EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
#: google.rpc.Code FAILED_PRECONDITION: the etag we sent is stale
FAILED_PRECONDITION = 9
#: saved cursors of another version hold sync tokens Google refuses (version 2
#: reads with ``sources=READ_SOURCE_TYPE_CONTACT``, and "all other request
#: parameters must match the first call"): they cost one full read instead
CURSOR_VERSION = 2
#: keys Google computes; sending them back on a write only invites conflicts
OUTPUT_ONLY = frozenset(
    {
        "metadata",
        "formattedType",
        "formattedProtocol",
        "canonicalForm",
        "displayName",
        "displayNameLastFirst",
        "unstructuredName",
    }
)
#: our field key -> the person field that holds it
PERSON_FIELD_OF = {
    "email": "emailAddresses",
    "given_name": "names",
    "family_name": "names",
    "phone": "phoneNumbers",
    "organization": "organizations",
    "job_title": "organizations",
    "birthday": "birthdays",
}

STANDARD_FIELDS = (
    Field("email", "Email", FieldType.EMAIL, semantic=Semantic.EMAIL, multi_value=True),
    Field("given_name", "First name", FieldType.TEXT, semantic=Semantic.FIRST_NAME),
    Field("family_name", "Last name", FieldType.TEXT, semantic=Semantic.LAST_NAME),
    full_name_field("given_name", "family_name"),
    Field("phone", "Phone", FieldType.PHONE, semantic=Semantic.PHONE, multi_value=True),
    Field("organization", "Company", FieldType.TEXT, semantic=Semantic.COMPANY),
    Field("job_title", "Job title", FieldType.TEXT, semantic=Semantic.TITLE),
    Field("birthday", "Birthday", FieldType.DATE),
)


def _own(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """The contact's own items: a contact linked to a Google profile also
    carries the profile's (``metadata.source.type`` PROFILE), which are not
    the contact's to sync nor to write back. Reads ask for CONTACT sources
    only; this holds when an answer carries more anyway."""
    return [
        item
        for item in items or []
        if (((item.get("metadata") or {}).get("source") or {}).get("type") or "CONTACT")
        == "CONTACT"
    ]


def _primary_index(items: list[dict[str, Any]]) -> int:
    # the field's primary may be a profile item: among the contact's own, its
    # source primary comes first
    for flag in ("sourcePrimary", "primary"):
        for index, item in enumerate(items):
            if (item.get("metadata") or {}).get(flag):
                return index
    return 0


def _primary(items: list[dict[str, Any]] | None) -> dict[str, Any]:
    items = _own(items)
    return items[_primary_index(items)] if items else {}


def _writable(items: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    return [{k: v for k, v in item.items() if k not in OUTPUT_ONLY} for item in _own(items)]


def _birthday(item: dict[str, Any]) -> str | None:
    date = item.get("date") or {}
    year, month, day = date.get("year"), date.get("month"), date.get("day")
    if year and month and day:
        return f"{int(year):04d}-{int(month):02d}-{int(day):02d}"
    text = clean_text(item.get("text"))
    if text:
        try:
            return dt.date.fromisoformat(text).isoformat()
        except ValueError:
            return None
    return None


def _updated_at(person: Person) -> dt.datetime | None:
    sources = (person.get("metadata") or {}).get("sources") or []
    for source in sources:
        if source.get("type") not in (None, "CONTACT"):
            continue
        if source.get("updateTime"):
            return parse_iso_datetime(source["updateTime"])
    return None


def _custom_keys(setting: Any) -> list[str]:
    if isinstance(setting, str):
        setting = setting.split(",")
    return [k.strip() for k in setting or [] if isinstance(k, str) and k.strip()]


class GoogleConnector(Connector):
    key = "google"
    name = "Google Contacts"
    capabilities = Capabilities(
        list_changes=True,
        detect_deletions=True,
        detect_unsubscribes=False,
        tags=True,
        webhooks=False,
        batch_writes=True,
        custom_fields=True,
    )
    default_base_url = DEFAULT_BASE_URL
    vendor_hosts = VENDOR_HOSTS
    page_size = 1000
    write_batch_size = 200
    list_endpoints = frozenset({"GET /people/me/connections"})
    batch_write_endpoints = frozenset(
        {
            "POST /people:batchCreateContacts",
            "POST /people:batchUpdateContacts",
            "POST /contactGroups/{id}/members:modify",
        }
    )
    #: people:batchGet takes at most 200 names; members:modify at most 1000
    get_batch_size = 200
    members_batch_size = 1000
    #: lookups of more emails than this read an email index instead of searching
    search_max = 10
    #: a create trusts a lookup of its email made this many seconds before
    lookup_trust_seconds = 30.0
    #: a read right after a write may answer the version before it, etag and
    #: all (google-api-python-client #2417, google-api-go-client #1904). Our
    #: own write's answer is current: it stands in for such a read this long
    recent_write_seconds = 120.0
    #: before a stale-etag retry: time for reads to catch up with a write
    stale_retry_wait = 1.5
    #: an update needs the whole person (Google replaces each field it is
    #: sent, other emails and phones included): a person this run read by id
    #: this recently stands in for a second read before it (its etag still
    #: guards the write: a stale one takes the stale-etag retry)
    just_read_seconds = 10.0
    #: (base url, resource name) -> (etags our writes replaced, last answer as
    #: compact JSON, until); shared by the instances of one process (one per
    #: run). A stand-in also needs the etag to match, so two accounts cannot mix
    #: their people up. The answer is kept as text: a person's dicts cost ~5 KB
    #: each, 25 MB for the 5,000 updates of an initial sync at 100,000 per side
    _recent_writes: dict[tuple[str, str], tuple[tuple[str, ...], str, float]] = {}
    _recent_lock = threading.Lock()
    side_settings = (
        SideSetting(
            "contact_group",
            "Contact group",
            help_text="Only sync members of this label; contacts created here join it.",
        ),
    )
    oauth_provider = "google"
    paste_label = "Access token"
    #: where the OAuth token endpoint sits relative to an overridden base URL's
    #: root (the base URL without its trailing ``/v1``): the sandbox serves it there
    token_path = "/token"

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
        super().__init__(
            credentials,
            settings,
            base_url=base_url,
            account_key=account_key,
            refresh_hook=refresh_hook,
        )
        refresher = None
        if credentials.refresh_token:
            client_id, secret = oauth_app_credentials(self.oauth_provider)
            refresher = oauth_refresh(
                make_session,
                self.token_url_for(self.base_url),
                client_id,
                secret,
                self.vendor_hosts,
            )
        self.http = HttpClient(
            self.base_url,
            credentials=credentials,
            refresher=refresher,
            refresh_hook=refresh_hook if refresher else None,
            account_key=account_key,
            vendor_hosts=self.vendor_hosts,
        )
        self.client = GoogleClient(self.http)
        self._groups: dict[str, dict[str, Any]] | None = None
        self._group_by_name: dict[str, str] = {}
        self._warmed_up = False
        #: email -> people, for large lookups; kept fresh with its own sync token
        self._index_people: dict[str, Person] = {}
        self._index_emails: dict[str, set[str]] = defaultdict(set)
        self._index_sync: str | None = None
        #: emails looked up lately (monotonic time): the create path trusts those
        self._looked_up: dict[str, float] = {}
        #: contacts created by this instance, by normalized email (a list only
        #: for an email created twice): search may lag behind writes
        self._created: dict[str, Contact | list[Contact]] = {}
        #: emails a search (a cache that lags writes) did not find: confirmed
        #: against the listing before anything is created for them
        self._search_missed: set[str] = set()
        #: old resource name -> new, from ``previousResourceNames`` in sync answers
        self._renamed: dict[str, str] = {}
        #: people read by id (``get_contacts``): resource name -> (when, person)
        self._just_read: dict[str, tuple[float, Person]] = {}

    @classmethod
    def token_url_for(cls, base_url: str) -> str:
        """Google's token endpoint; a sandbox's (next to its ``/v1``) only
        under an overridden base where overrides are allowed."""
        base = base_url.rstrip("/")
        derived = base.removesuffix("/v1") + cls.token_path
        return vendor_or_override(TOKEN_URL, derived, base, cls.vendor_hosts)

    @property
    def scope_group(self) -> str:
        return str(self.settings.get("contact_group") or "").strip()

    # -- account ----------------------------------------------------------------

    def check(self) -> AccountInfo:
        me = self.client.get_me()
        email = clean_text(_primary(me.get("emailAddresses")).get("value"))
        name = clean_text(_primary(me.get("names")).get("displayName"))
        return AccountInfo(
            remote_id=str(me.get("resourceName") or email or ""),
            label=email or name or str(me.get("resourceName")),
            extra={"name": name} if name else {},
        )

    def side_options(self) -> dict[str, list[tuple[str, str]]]:
        self._load_groups()
        assert self._groups is not None
        user = [
            (rn, str(g.get("formattedName") or g.get("name")))
            for rn, g in self._groups.items()
            if g.get("groupType") == "USER_CONTACT_GROUP"
        ]
        return {"contact_group": sorted(user, key=lambda option: option[1].casefold())}

    # -- schema -------------------------------------------------------------------

    def fields(self) -> list[Field]:
        if self.schema_hint is not None:
            return list(self.schema_hint)  # fresh from the last read
        keys = dict.fromkeys(_custom_keys(self.settings.get("custom_fields")))
        # reading every contact to find userDefined keys is too costly; one page will do
        page = self.client.list_connections(
            person_fields="userDefined", page_size=self.page_size, request_sync_token=False
        )
        for person in page.get("connections") or []:
            for item in person.get("userDefined") or []:
                key = clean_text(item.get("key"))
                if key:
                    keys.setdefault(key)
        custom = [Field(CUSTOM_PREFIX + k, k, FieldType.TEXT, custom=True) for k in keys]
        return [*STANDARD_FIELDS, *custom]

    # -- contact groups -------------------------------------------------------------

    def _load_groups(self) -> None:
        groups = self.client.list_contact_groups()
        self._groups = {g["resourceName"]: g for g in groups if g.get("resourceName")}
        self._group_by_name = {
            str(g.get("name")): rn
            for rn, g in self._groups.items()
            if g.get("groupType") == "USER_CONTACT_GROUP" and g.get("name")
        }

    def _group_name(self, rn: str) -> str | None:
        """The tag a membership stands for; None for system groups and the scope group."""
        if rn in SYSTEM_GROUPS or rn == self.scope_group:
            return None
        if self._groups is None or rn not in self._groups:
            self._load_groups()
        assert self._groups is not None
        group = self._groups.get(rn)
        if not group or group.get("groupType") != "USER_CONTACT_GROUP" or rn == self.scope_group:
            return None
        return str(group.get("name") or "") or None

    def _group_rn(self, tag: str, *, create: bool) -> str | None:
        if self._groups is None:
            self._load_groups()
        rn = self._group_by_name.get(tag)
        if rn or not create:
            return rn
        group = self.client.create_contact_group(tag)
        if group is None:  # 409: made meanwhile by someone else
            self._load_groups()
            rn = self._group_by_name.get(tag)
            if rn is None:
                raise ConfigError(f"Google refused to create the label {tag!r}: the name is taken")
            return rn
        assert self._groups is not None
        self._groups[group["resourceName"]] = group
        self._group_by_name[tag] = group["resourceName"]
        return group["resourceName"]

    # -- mapping ------------------------------------------------------------------------

    def to_contact(self, person: Person) -> Contact:
        rn = str(person.get("resourceName") or "")
        metadata = person.get("metadata") or {}
        if metadata.get("deleted"):
            return Contact(id=rn, deleted=True, version=person.get("etag"))
        name = _primary(person.get("names"))
        org = _primary(person.get("organizations"))
        email = clean_text(_primary(person.get("emailAddresses")).get("value"))
        fields: dict[str, Any] = {
            "email": email,
            "given_name": clean_text(name.get("givenName")),
            "family_name": clean_text(name.get("familyName")),
            "phone": clean_text(_primary(person.get("phoneNumbers")).get("value")),
            "organization": clean_text(org.get("name")),
            "job_title": clean_text(org.get("title")),
            "birthday": _birthday(_primary(person.get("birthdays"))),
        }
        for item in _own(person.get("userDefined")):
            key = clean_text(item.get("key"))
            if key:
                fields[CUSTOM_PREFIX + key] = clean_text(item.get("value"))
        tags = set()
        for membership in person.get("memberships") or []:
            group_rn = (membership.get("contactGroupMembership") or {}).get(
                "contactGroupResourceName"
            )
            tag = self._group_name(group_rn) if group_rn else None
            if tag:
                tags.add(tag)
        return Contact(
            id=rn,
            email=email,
            fields=fields,
            tags=frozenset(tags) or NO_TAGS,
            updated_at=_updated_at(person),
            version=person.get("etag"),
            previous_ids=tuple(metadata.get("previousResourceNames") or ()),
        )

    def _in_scope(self, person: Person) -> bool:
        if not self.scope_group or (person.get("metadata") or {}).get("deleted"):
            return True
        return any(
            (m.get("contactGroupMembership") or {}).get("contactGroupResourceName")
            == self.scope_group
            for m in person.get("memberships") or []
        )

    @staticmethod
    def apply_fields(current: Person, fields: dict[str, Any]) -> dict[str, list[Any]]:
        """The person fields to send so that ``fields`` hold, keeping everything
        else of ``current`` (other emails and phones, middle names, departments)."""
        out: dict[str, list[Any]] = {}

        def set_primary(person_field: str, value: Any) -> None:
            raw = _own(current.get(person_field))
            items = _writable(raw)
            index = _primary_index(raw)
            if value is None:
                if index < len(items):
                    del items[index]
            elif index < len(items):
                items[index]["value"] = value
            else:
                items.append({"value": value})
            out[person_field] = items

        for key, person_field in (("email", "emailAddresses"), ("phone", "phoneNumbers")):
            if key in fields:
                set_primary(person_field, clean_text(fields[key]))
        for keys, person_field, attrs in (
            (("given_name", "family_name"), "names", ("givenName", "familyName")),
            (("organization", "job_title"), "organizations", ("name", "title")),
        ):
            if not any(k in fields for k in keys):
                continue
            raw = _own(current.get(person_field))
            items = _writable(raw)
            index = _primary_index(raw)
            item = items[index] if index < len(items) else {}
            for key, attr in zip(keys, attrs):
                if key in fields:
                    value = clean_text(fields[key])
                    if value is None:
                        item.pop(attr, None)
                    else:
                        item[attr] = value
            rest = [x for i, x in enumerate(items) if i != index]
            out[person_field] = ([item] if any(v for v in item.values()) else []) + rest
        if "birthday" in fields:
            value = fields["birthday"]
            if value:
                date = dt.date.fromisoformat(str(value)[:10])
                birthday = {"date": {"year": date.year, "month": date.month, "day": date.day}}
                out["birthdays"] = [birthday]
            else:
                out["birthdays"] = []
        custom = {
            k[len(CUSTOM_PREFIX) :]: v for k, v in fields.items() if k.startswith(CUSTOM_PREFIX)
        }
        if custom:
            merged = {
                str(item.get("key")): item.get("value")
                for item in _writable(current.get("userDefined"))
                if item.get("key")
            }
            for key, value in custom.items():
                text = clean_text(value)
                if text is None:
                    merged.pop(key, None)
                else:
                    merged[key] = text
            out["userDefined"] = [{"key": k, "value": v} for k, v in merged.items()]
        return out

    # -- reading --------------------------------------------------------------------------

    def changes(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        state: dict[str, Any] = {"sync": None, "page": None, "full": True}
        if cursor and not full:
            saved = json.loads(cursor)
            if saved.get("v") == CURSOR_VERSION:
                state = {
                    "sync": saved.get("sync"),
                    "page": saved.get("page"),
                    "full": bool(saved.get("full")) or not saved.get("sync"),
                }
            else:
                log.info("Google cursor of an older version: reading everything once")
        restarted = False
        while True:
            try:
                body = self.client.list_connections(
                    person_fields=PERSON_FIELDS,
                    page_size=self.page_size,
                    page_token=state["page"],
                    sync_token=state["sync"],
                )
            except SyncTokenExpired as exc:
                log.info("Google sync token expired (%s): reading everything again", exc)
                state = {"sync": None, "page": None, "full": True}
                continue
            except PermanentError as exc:
                if exc.status != 400 or restarted or not (state["page"] or state["sync"]):
                    raise
                restarted = True
                if state["page"]:
                    # a saved page token Google no longer takes: redo this read from its start
                    log.info("Google refused a saved page token (%s): restarting the read", exc)
                    state = {**state, "page": None}
                else:
                    # a sync token from a call with other parameters: read everything once
                    log.info("Google refused a saved sync token (%s): reading everything", exc)
                    state = {"sync": None, "page": None, "full": True}
                continue
            for person in body.get("connections") or []:
                for old in (person.get("metadata") or {}).get("previousResourceNames") or []:
                    self._renamed[old] = person.get("resourceName")
            people = [p for p in body.get("connections") or [] if self._in_scope(p)]
            contacts = [self.to_contact(p) for p in people]
            next_page = body.get("nextPageToken")
            if next_page:
                state = {**state, "page": next_page}
                resume = json.dumps({**state, "v": CURSOR_VERSION})
                yield Page(contacts, resume, done=False, full_scan=state["full"])
                continue
            sync = body.get("nextSyncToken")
            # without a sync token the next read has to be a full one
            resume = (
                json.dumps({"sync": sync, "page": None, "full": False, "v": CURSOR_VERSION})
                if sync
                else None
            )
            yield Page(contacts, resume, done=True, full_scan=state["full"])
            return

    def get_contacts(self, ids: Iterable[str]) -> dict[str, Contact]:
        people = self._read_people(list(ids))
        now = time.monotonic()
        if len(self._just_read) > 10_000:
            self._just_read.clear()
        for rn, person in people.items():
            self._just_read[rn] = (now, person)
        return {rn: self.to_contact(p) for rn, p in people.items()}

    def _people_for_update(self, ids: list[str]) -> dict[str, Person]:
        """The whole people to update: those this run read moments ago by id
        (the engine reads a counterpart just before it plans a write to it),
        the rest read now."""
        now = time.monotonic()
        out: dict[str, Person] = {}
        for rn in ids:
            seen = self._just_read.pop(rn, None)
            if seen is not None and now - seen[0] <= self.just_read_seconds:
                out[rn] = seen[1]
        missing = [rn for rn in ids if rn not in out]
        if missing:
            out.update(self._read_people(missing))
        return out

    def _read_people(self, ids: list[str]) -> dict[str, Person]:
        """People by the ids asked for. An id Google renamed (seen in this
        run's sync answers) answers with the person under its new name."""
        wanted = list(dict.fromkeys(ids))
        asked = {self._renamed.get(rn, rn): rn for rn in wanted}
        out: dict[str, Person] = {}
        answers = self.client.http.in_flight(
            lambda chunk: self.client.batch_get(chunk, person_fields=PERSON_FIELDS),
            chunked(list(asked), self.get_batch_size),
        )
        for answer in answers:
            for response in answer:
                person = response.get("person")
                if int(response.get("httpStatusCode") or 200) == 200 and person:
                    rn = response.get("requestedResourceName") or person["resourceName"]
                    out[asked.get(rn, rn)] = self._not_older_than_our_write(person)
        return out

    def _memo_key(self, rn: str) -> tuple[str, str]:
        return (self.base_url, rn)

    def _remember_write(self, sent_etag: str | None, person: Person) -> None:
        if not sent_etag or not person.get("resourceName"):
            return
        now = time.monotonic()
        key = self._memo_key(person["resourceName"])
        with self._recent_lock:
            memo = type(self)._recent_writes
            for old in [k for k, (_, _, until) in memo.items() if until <= now]:
                del memo[old]
            # every version our writes replaced: a lagging read may show any
            replaced = memo[key][0] if key in memo else ()
            if sent_etag not in replaced:
                replaced += (sent_etag,)
            answer = json.dumps(person, separators=(",", ":"))
            memo[key] = (replaced, answer, now + self.recent_write_seconds)

    def _not_older_than_our_write(self, person: Person) -> Person:
        """A read that answers a version our own writes replaced lags behind
        them: the last write's own answer is the current person."""
        with self._recent_lock:
            memo = self._recent_writes.get(self._memo_key(str(person.get("resourceName"))))
        if memo is None:
            return person
        replaced, answer, until = memo
        if time.monotonic() < until and person.get("etag") in replaced:
            return json.loads(answer)
        return person

    def find_by_emails(self, emails: Iterable[str]) -> dict[str, list[Contact]]:
        wanted = sorted({normalize_email(e) for e in emails} - {""})
        out: dict[str, list[Contact]] = {}
        if not wanted:
            return out
        now = time.monotonic()
        self._looked_up.update(dict.fromkeys(wanted, now))
        if len(wanted) > self.search_max or self._index_sync:
            # one search per email would cost a request each: an email index
            # kept fresh with a sync token costs one request once it is built
            people = self._indexed_people(wanted)
        else:
            people = self._searched_people(wanted)
            # searchContacts reads a cache that lags writes: a miss is a maybe
            self._search_missed.update(e for e in wanted if not people.get(e))
            self._search_missed.difference_update(people)
        for email in wanted:
            found: dict[str, Contact] = {}
            for person in people.get(email, []):
                contact = self.to_contact(person)
                found[contact.id] = contact
            for contact in self._created_with(email):
                found.setdefault(contact.id, contact)
            if found:
                # Google keeps no creation time: the least recently changed comes first
                out[email] = sorted(found.values(), key=lambda c: (c.updated_at or EPOCH, c.id))
        return out

    def searched(self, emails: Iterable[str]) -> None:
        # the engine read every contact in this run: its misses are certain
        now = time.monotonic()
        keys = [normalize_email(e) for e in emails]
        self._looked_up.update(dict.fromkeys(keys, now))
        self._search_missed.difference_update(keys)

    def _searched_people(self, wanted: list[str]) -> dict[str, list[Person]]:
        if not self._warmed_up:
            # Google's search reads a cache that an empty query refreshes
            self.client.search_contacts("", read_mask=PERSON_FIELDS)
            self._warmed_up = True
        out: dict[str, list[Person]] = {}
        for email in wanted:
            for person in self.client.search_contacts(email, read_mask=PERSON_FIELDS):
                values = person.get("emailAddresses") or []
                if any(normalize_email(item.get("value")) == email for item in values):
                    out.setdefault(email, []).append(person)
        return out

    def _indexed_people(self, wanted: list[str]) -> dict[str, list[Person]]:
        self._refresh_index()
        return {
            email: [self._index_people[rn] for rn in sorted(self._index_emails.get(email, ()))]
            for email in wanted
            if self._index_emails.get(email)
        }

    def _refresh_index(self) -> None:
        sync = self._index_sync
        page: str | None = None
        while True:
            try:
                body = self.client.list_connections(
                    person_fields=PERSON_FIELDS,
                    page_size=self.page_size,
                    page_token=page,
                    sync_token=sync,
                )
            except SyncTokenExpired:
                self._index_people, self._index_emails = {}, defaultdict(set)
                sync, page = None, None
                continue
            for person in body.get("connections") or []:
                self._index(person)
            page = body.get("nextPageToken")
            if not page:
                self._index_sync = body.get("nextSyncToken")
                return

    def _index(self, person: Person) -> None:
        rn = person.get("resourceName")
        if not rn:
            return
        old = self._index_people.pop(rn, None)
        for item in (old or {}).get("emailAddresses") or []:
            self._index_emails[normalize_email(item.get("value"))].discard(rn)
        if (person.get("metadata") or {}).get("deleted"):
            return
        self._index_people[rn] = person
        for item in person.get("emailAddresses") or []:
            email = normalize_email(item.get("value"))
            if email:
                self._index_emails[email].add(rn)

    # -- writing ----------------------------------------------------------------------------

    def write_contacts(self, writes: list[ContactWrite]) -> list[WriteResult]:
        results: list[WriteResult | None] = [None] * len(writes)
        creates = [(i, w) for i, w in enumerate(writes) if w.id is None]
        updates = [(i, w) for i, w in enumerate(writes) if w.id is not None]
        if creates:
            self._create(creates, results)
        if updates:
            self._update(updates, results)
        return [r if r is not None else WriteResult(w.ref) for r, w in zip(results, writes)]

    def _create(
        self, items: list[tuple[int, ContactWrite]], results: list[WriteResult | None]
    ) -> None:
        emails = {i: normalize_email(w.fields.get("email", w.email)) for i, w in items}
        # never a second contact with an email Google already holds: look again
        # unless this instance looked the email up a moment ago (the engine does)
        now = time.monotonic()
        fresh = {
            e
            for e in emails.values()
            if e and now - self._looked_up.get(e, -math.inf) <= self.lookup_trust_seconds
        }
        existing = self.find_by_emails(e for e in emails.values() if e and e not in fresh)
        for email in fresh:
            if email in self._created:
                existing[email] = self._created_with(email)
        unsure = sorted({e for e in emails.values() if e in self._search_missed} - set(existing))
        if unsure:
            # a contact written moments ago (by a run that crashed before it
            # saved its link, by a person) is not in search results yet; the
            # listing has it. Confirm every search miss before creating.
            for email, people in self._indexed_people(unsure).items():
                existing[email] = [self.to_contact(p) for p in people]
            self._search_missed.difference_update(unsure)
        first_of: dict[str, int] = {}
        same_as: dict[int, int] = {}
        pending: list[tuple[int, ContactWrite, Person]] = []
        for i, write in items:
            email = emails[i]
            if email and existing.get(email):
                results[i] = WriteResult(write.ref, contact=existing[email][0])
                continue
            if email and email in first_of:
                same_as[i] = first_of[email]
                continue
            if email:
                first_of[email] = i
            fields = dict(write.fields)
            if write.email and "email" not in fields:
                fields["email"] = write.email
            person: Person = dict(self.apply_fields({}, fields))
            groups = {MY_CONTACTS}
            if self.scope_group:
                groups.add(self.scope_group)
            for tag in sorted(write.add_tags):
                rn = self._group_rn(tag, create=True)
                if rn:
                    groups.add(rn)
            person["memberships"] = [
                {"contactGroupMembership": {"contactGroupResourceName": rn}}
                for rn in sorted(groups)
            ]
            pending.append((i, write, person))
        for chunk in chunked(pending, self.write_batch_size):
            self._create_chunk(chunk, results)
        for i, first in same_as.items():
            done = results[first]
            write = next(w for j, w in items if j == i)
            results[i] = WriteResult(
                write.ref,
                contact=done.contact if done else None,
                error=done.error if done else None,
            )

    def _create_chunk(
        self, chunk: list[tuple[int, ContactWrite, Person]], results: list[WriteResult | None]
    ) -> None:
        try:
            created = self.client.batch_create([p for _, _, p in chunk], read_mask=PERSON_FIELDS)
        except BatchRejected as exc:
            # nothing was created: drop the culprits, send the rest again
            bad = {int(k): v for k, v in exc.contact_errors.items() if str(k).isdigit()}
            rest = [item for n, item in enumerate(chunk) if n not in bad]
            for n, status in bad.items():
                if n < len(chunk):
                    i, write, _ = chunk[n]
                    message = str(status.get("message") or exc.message)
                    results[i] = WriteResult(write.ref, error=ContactRejected(message, status=400))
            if len(rest) == len(chunk):  # no usable details: find the culprit one by one
                if len(chunk) == 1:
                    i, write, _ = chunk[0]
                    results[i] = WriteResult(
                        write.ref, error=ContactRejected(exc.message, status=400)
                    )
                    return
                for item in chunk:
                    self._create_chunk([item], results)
                return
            if rest:
                self._create_chunk(rest, results)
            return
        for (i, write, _), response in zip(chunk, created):
            person = response.get("person")
            if int(response.get("httpStatusCode") or 200) != 200 or not person:
                message = str((response.get("status") or {}).get("message") or "not created")
                results[i] = WriteResult(write.ref, error=ContactRejected(message, status=400))
                continue
            contact = self.to_contact(person)
            results[i] = WriteResult(write.ref, contact=contact)
            if contact.email:
                self._remember_created(contact)

    def _remember_created(self, contact: Contact) -> None:
        """Who has this email now, against Google's lagging search. The
        contact's identity is enough (a full copy of every contact an initial
        sync creates would cost tens of MB at 100,000), held once per email."""
        email = str(contact.email)
        key = normalize_email(email)
        if key == email:
            key = email  # the contact's own string, not a copy
        memo = Contact(
            contact.id, contact.email, updated_at=contact.updated_at, version=contact.version
        )
        held = self._created.get(key)
        if held is None:
            self._created[key] = memo
            return
        same = held if isinstance(held, list) else [held]
        ids = [c.id for c in same]
        if contact.id in ids:
            same[ids.index(contact.id)] = memo
        else:
            same.append(memo)
        self._created[key] = same[0] if len(same) == 1 else same

    def _created_with(self, email: str) -> list[Contact]:
        """The contacts this instance created with this normalized email."""
        held = self._created.get(email)
        if held is None:
            return []
        return list(held) if isinstance(held, list) else [held]

    def _update(
        self, items: list[tuple[int, ContactWrite]], results: list[WriteResult | None]
    ) -> None:
        """One read, then one write per contact: label changes of a contact
        whose fields change go in the same batch update (``memberships``), so
        no write of ours makes the etag we read stale; labels alone go through
        members:modify, which needs no etag."""
        fresh = self._people_for_update([str(w.id) for _, w in items])
        with_fields: list[tuple[int, ContactWrite]] = []
        labels_only: list[tuple[int, ContactWrite]] = []
        for i, write in items:
            if str(write.id) not in fresh:
                results[i] = WriteResult(
                    write.ref, error=NotFound(f"{write.id} no longer exists", status=404)
                )
            elif write.fields:
                with_fields.append((i, write))
            else:
                labels_only.append((i, write))
        self._apply_tags(labels_only, fresh, results)
        for i, write in labels_only:
            if results[i] is None:
                # the answer of members:modify holds no person, and a read now
                # would lag: the labels are what we just set. Reads that lag
                # get this person too (its etag is the old one: an update
                # with it takes the stale-etag retry)
                current = fresh[str(write.id)]
                person = {**current, "memberships": self._memberships(current, write)}
                self._remember_write(current.get("etag"), person)
                results[i] = WriteResult(write.ref, contact=self.to_contact(person))
        for chunk in chunked(with_fields, self.write_batch_size):
            self._update_chunk(chunk, fresh, results, retry=True)

    def _apply_tags(
        self,
        items: list[tuple[int, ContactWrite]],
        fresh: dict[str, Person],
        results: list[WriteResult | None],
    ) -> None:
        """Membership changes, one members:modify call per group and 1000 names."""
        changes: dict[str, list[tuple[str, str]]] = defaultdict(list)
        index_of: dict[str, list[int]] = defaultdict(list)
        ref_of = {i: write.ref for i, write in items}
        for i, write in items:
            rn = str(fresh[str(write.id)].get("resourceName") or write.id)
            index_of[rn].append(i)
            for tag in sorted(write.add_tags):
                group = self._group_rn(tag, create=True)
                if group:
                    changes[group].append(("add", rn))
            for tag in sorted(write.remove_tags - write.add_tags):
                group = self._group_rn(tag, create=False)
                if group:
                    changes[group].append(("remove", rn))
        for group, ops in changes.items():
            for chunk in chunked(ops, self.members_batch_size):
                answer = self.client.modify_members(
                    group,
                    add=[rn for op, rn in chunk if op == "add"],
                    remove=[rn for op, rn in chunk if op == "remove"],
                )
                for rn in answer.get("notFoundResourceNames") or []:
                    for i in index_of.get(rn, []):
                        results[i] = WriteResult(
                            ref_of[i], error=NotFound(f"{rn} no longer exists", status=404)
                        )
                for rn in answer.get("canNotRemoveLastContactGroupResourceNames") or []:
                    for i in index_of.get(rn, []):
                        results[i] = WriteResult(
                            ref_of[i],
                            error=ContactRejected(
                                "Google keeps every contact in at least one label: "
                                f"{rn} cannot leave its last one",
                                status=400,
                            ),
                        )

    def _memberships(self, current: Person, write: ContactWrite) -> list[dict[str, Any]]:
        """The contact's memberships after this write's label changes."""
        groups = {
            str((m.get("contactGroupMembership") or {}).get("contactGroupResourceName"))
            for m in _own(current.get("memberships"))
            if (m.get("contactGroupMembership") or {}).get("contactGroupResourceName")
        }
        for tag in sorted(write.remove_tags - write.add_tags):
            group = self._group_rn(tag, create=False)
            if group:
                groups.discard(group)
        for tag in sorted(write.add_tags):
            group = self._group_rn(tag, create=True)
            if group:
                groups.add(group)
        if self.scope_group:
            groups.add(self.scope_group)
        return [
            {"contactGroupMembership": {"contactGroupResourceName": rn}}
            for rn in sorted(groups or {MY_CONTACTS})
        ]

    def _update_chunk(
        self,
        chunk: list[tuple[int, ContactWrite]],
        fresh: dict[str, Person],
        results: list[WriteResult | None],
        *,
        retry: bool,
    ) -> None:
        mask = {PERSON_FIELD_OF.get(k, "userDefined") for _, w in chunk for k in w.fields}
        if self.scope_group or any(w.add_tags or w.remove_tags for _, w in chunk):
            mask.add("memberships")
        bodies: dict[str, Person] = {}
        name_of: dict[str, str] = {}
        for _, write in chunk:
            current = fresh[str(write.id)]
            rn = str(current.get("resourceName") or write.id)
            name_of[str(write.id)] = rn
            changed = self.apply_fields(current, write.fields)
            body: Person = {"etag": current.get("etag")}
            for person_field in sorted(mask):
                if person_field == "memberships":
                    body[person_field] = self._memberships(current, write)
                else:
                    body[person_field] = changed.get(
                        person_field, _writable(current.get(person_field))
                    )
            bodies[rn] = body
        try:
            updated = self.client.batch_update(
                bodies, update_mask=",".join(sorted(mask)), read_mask=PERSON_FIELDS
            )
        except BatchRejected as exc:
            self._retry_update(chunk, fresh, results, exc, retry=retry)
            return
        for i, write in chunk:
            rn = name_of[str(write.id)]
            response = updated.get(rn) or {}
            person = response.get("person")
            if person:
                # the answer carries the new etag: later reads may still lag
                self._remember_write(bodies[rn].get("etag"), person)
                results[i] = WriteResult(write.ref, contact=self.to_contact(person))
            else:
                message = str((response.get("status") or {}).get("message") or "not updated")
                results[i] = WriteResult(write.ref, error=ContactRejected(message, status=400))

    def _retry_update(
        self,
        chunk: list[tuple[int, ContactWrite]],
        fresh: dict[str, Person],
        results: list[WriteResult | None],
        exc: BatchRejected,
        *,
        retry: bool,
    ) -> None:
        """Nothing of the batch was written. Stale etags: read those people
        again and put our changes on top, once. Other culprits are rejected;
        the rest goes again."""
        if not exc.contact_errors:
            if len(chunk) == 1:
                i, write = chunk[0]
                results[i] = WriteResult(write.ref, error=ContactRejected(exc.message, status=400))
                return
            for item in chunk:
                self._update_chunk([item], fresh, results, retry=retry)
            return
        stale: list[tuple[int, ContactWrite]] = []
        rest: list[tuple[int, ContactWrite]] = []
        for i, write in chunk:
            rn = str(fresh[str(write.id)].get("resourceName") or write.id)
            status = exc.contact_errors.get(rn)
            if status is None:
                rest.append((i, write))
            elif int(status.get("code") or 0) == FAILED_PRECONDITION and retry:
                stale.append((i, write))
            elif int(status.get("code") or 0) == 5:
                results[i] = WriteResult(
                    write.ref, error=NotFound(str(status.get("message")), status=404)
                )
            else:
                message = str(status.get("message") or exc.message)
                results[i] = WriteResult(write.ref, error=ContactRejected(message, status=400))
        if len(rest) == len(chunk):  # details that name no one we sent
            for i, write in chunk:
                results[i] = WriteResult(write.ref, error=ContactRejected(exc.message, status=400))
            return
        if stale:
            # a stale etag: someone wrote meanwhile, or our read lagged behind a
            # write. Give reads time to catch up, read again, retry once
            time.sleep(self.stale_retry_wait)
            reread = self._read_people([str(w.id) for _, w in stale])
            for i, write in stale:
                if str(write.id) in reread:
                    fresh[str(write.id)] = reread[str(write.id)]
                    rest.append((i, write))
                else:
                    results[i] = WriteResult(
                        write.ref, error=NotFound(f"{write.id} no longer exists", status=404)
                    )
        if rest:
            self._update_chunk(rest, fresh, results, retry=retry and not stale)
