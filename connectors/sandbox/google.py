"""A stateful fake of the Google People API (contacts and contact groups).

Served under ``/google``: the API under ``/google/v1`` (so the base URL is
``<server>/google/v1``, like ``https://people.googleapis.com/v1``), the OAuth
token endpoint at ``/google/token`` and the consent screen at
``/google/o/oauth2/auth``.

What it keeps faithful, because the connector relies on it:

- ``people/me/connections`` pages with ``pageToken`` (default 100, at most
  1000), ``nextSyncToken`` only on the last page and only with
  ``requestSyncToken=true``; a sync token returns what changed or was deleted
  since it was issued (tombstones ``metadata.deleted``); page and sync tokens
  refuse a call whose other parameters differ from the first call.
- Expired sync tokens (older than ``sync_token_ttl`` from the full sync that
  started the chain, or expired through the control API) are refused the way
  Google was observed to refuse them: HTTP 400 ``FAILED_PRECONDITION`` "Sync
  token is expired ..." with an ``ErrorInfo`` reason ``EXPIRED_SYNC_TOKEN``
  (the reference for ``otherContacts`` documents 410; the control API can
  switch to that form).
- Batch endpoints with their limits; batch failures answer 400 for the whole
  request with ``Batch*ContactsErrorDetails.contactErrors`` and apply nothing.
- Etags checked on update (stale → 400 ``FAILED_PRECONDITION``).
- Contact groups: system groups, user groups (409 on a duplicate name),
  ``members:modify`` (≤1000 names, a contact keeps at least one group).
- ``people:searchContacts``: prefix match on names, emails, phones and
  organizations, at most 30 results; an empty query is the warmup call.

Lookups are dict- and index-based; listing pages are O(page).
"""

from __future__ import annotations

import base64
import bisect
import datetime as dt
import itertools
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.base import ContactWrite

from .base import HttpError, Request, Response, SandboxApp, SandboxConfig, route
from .facts import SandboxFacts

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
BATCH_CREATE_ERRORS = "type.googleapis.com/google.people.v1.BatchCreateContactsErrorDetails"
BATCH_UPDATE_ERRORS = "type.googleapis.com/google.people.v1.BatchUpdateContactsErrorDetails"
FIELDS_DOC = "https://developers.google.com/people/api/rest/v1/people/get"

STATUS_NAMES: dict[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "ALREADY_EXISTS",
    410: "GONE",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
#: google.rpc.Code numbers, for the per-contact statuses inside batch errors
RPC_CODES: dict[str, int] = {
    "INVALID_ARGUMENT": 3,
    "NOT_FOUND": 5,
    "FAILED_PRECONDITION": 9,
}

PERSON_FIELDS = frozenset(
    {
        "addresses",
        "ageRanges",
        "biographies",
        "birthdays",
        "calendarUrls",
        "clientData",
        "coverPhotos",
        "emailAddresses",
        "events",
        "externalIds",
        "genders",
        "imClients",
        "interests",
        "locales",
        "locations",
        "memberships",
        "metadata",
        "miscKeywords",
        "names",
        "nicknames",
        "occupations",
        "organizations",
        "phoneNumbers",
        "photos",
        "relations",
        "sipAddresses",
        "skills",
        "urls",
        "userDefined",
    }
)
#: fields a contact write may set (``metadata``, ``photos`` ... are read-only)
WRITABLE_FIELDS = PERSON_FIELDS - {
    "ageRanges",
    "coverPhotos",
    "metadata",
    "photos",
    "skills",
    "memberships",
}
SYSTEM_GROUPS = (
    ("myContacts", "My Contacts"),
    ("starred", "Starred"),
    ("chatBuddies", "Chat contacts"),
    ("all", "All Contacts"),
    ("friends", "Friends"),
    ("family", "Family"),
    ("coworkers", "Coworkers"),
    ("blocked", "Blocked"),
)
#: system groups a contact may be added to (the others only lose members)
ADDABLE_SYSTEM_GROUPS = frozenset({"contactGroups/myContacts", "contactGroups/starred"})
SEVEN_DAYS = 7 * 24 * 3600.0
MAX_PAGE_SIZE = 1000
MAX_BATCH_WRITE = 200
MAX_BATCH_GET = 200
MAX_BATCH_DELETE = 500
MAX_MEMBERS_MODIFY = 1000
MAX_SEARCH = 30


#: ``sources`` values (``ReadSourceType``) and the ``Source.type`` each returns.
#: Reads default to CONTACT and PROFILE, except ``searchContacts`` (CONTACT):
#: googleapis/google-api-python-client,
#: googleapiclient/discovery_cache/documents/people.v1.json (``sources``).
READ_SOURCE_TYPES = {
    "READ_SOURCE_TYPE_CONTACT": "CONTACT",
    "READ_SOURCE_TYPE_PROFILE": "PROFILE",
    "READ_SOURCE_TYPE_DOMAIN_CONTACT": "DOMAIN_CONTACT",
    "READ_SOURCE_TYPE_OTHER_CONTACT": "OTHER_CONTACT",
}
DEFAULT_SOURCES = frozenset({"CONTACT", "PROFILE"})
#: fields a linked Google profile contributes in the sandbox
PROFILE_FIELDS = ("names", "emailAddresses", "organizations", "photos")


@dataclass
class GoogleSandboxConfig(SandboxConfig):
    """Google's own awkward behaviour, set through ``POST /_sandbox/config``
    like the shared faults. Defaults are on: the suite runs against them."""

    #: seconds after an API write during which people.get / batchGet serve the
    #: previous version (etag included): google-api-python-client issue #2417,
    #: google-api-go-client issue #1904
    stale_read_window: float = 1.0
    #: seconds after an API create during which searchContacts does not find
    #: the new contact (its results come from a cache; see the searchContacts
    #: reference: "send a warmup request with an empty query to update the cache")
    search_lag: float = 2.0
    #: every Nth contact made through the control API is linked to a Google
    #: profile and carries PROFILE-source items (0: none)
    profile_share: int = 3


def _now_iso() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _new_etag() -> str:
    return "%" + secrets.token_urlsafe(15)


def _encode(data: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(data, separators=(",", ":")).encode()).decode()


def _decode(token: str, what: str) -> dict[str, Any]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
    except ValueError as exc:
        raise HttpError(400, f"Request contains an invalid argument: bad {what}.") from exc
    if not isinstance(data, dict):
        raise HttpError(400, f"Request contains an invalid argument: bad {what}.")
    return data


class GoogleSandbox(SandboxApp):
    name = "google"
    # "Read requests per minute per user": 90 as public clients report it
    # (MrCaspan/GAS-Gmail-Signature-Templator#1); 429 RESOURCE_EXHAUSTED,
    # reason RATE_LIMIT_EXCEEDED, no Retry-After (docs/api-fidelity.md)
    config_defaults: ClassVar[dict[str, Any]] = {"rate_limit": 90, "rate_window": 60.0}
    #: the account the tokens belong to (``people/me``)
    owner_email = "sandbox.user@example.com"
    owner_name = "Sandbox User"

    # the real window and Google's own behaviour, from the start and after
    # ``/_sandbox/config/defaults`` alike
    config_class = GoogleSandboxConfig
    config: GoogleSandboxConfig

    # -- state -------------------------------------------------------------

    def reset(self) -> None:
        self.people: dict[str, dict[str, Any]] = {}
        #: resource names in creation order: full listings walk it by index
        self.order: list[str] = []
        #: change log (parallel lists, seqs ascending) for sync tokens
        self.log_seqs: list[int] = []
        self.log_names: list[str] = []
        self.tombstones: dict[str, dict[str, Any]] = {}
        self.seq = 0
        self._ids = itertools.count(7_000_000_000_000_000_001)
        self.groups: dict[str, dict[str, Any]] = {}
        self.group_by_name: dict[str, str] = {}
        self.group_members: dict[str, set[str]] = {}
        self._group_ids = itertools.count(0x10000)
        for gid, formatted in SYSTEM_GROUPS:
            rn = f"contactGroups/{gid}"
            self.groups[rn] = {
                "resourceName": rn,
                "etag": _new_etag(),
                "metadata": {"updateTime": _now_iso()},
                "groupType": "SYSTEM_CONTACT_GROUP",
                "name": gid,
                "formattedName": formatted,
            }
            self.group_members[rn] = set()
        #: search index: token -> resource names, plus its keys sorted for prefixes
        self.tokens: dict[str, set[str]] = {}
        self.sorted_tokens: list[str] = []
        self.sorted_dirty = False
        #: sync tokens from before this epoch are expired
        self.sync_epoch = 0
        self.sync_token_ttl = SEVEN_DAYS
        self.expired_status = 400
        #: contacts made through the control API (every ``profile_share``-th is linked)
        self.seeded = 0
        #: old resource name -> new, after a contact was linked to a profile
        self.renamed: dict[str, str] = {}

    # -- errors ------------------------------------------------------------

    def error(self, status: int, message: str, **extra: Any) -> Response:
        status_name = extra.get("rpc_status") or STATUS_NAMES.get(status, "UNKNOWN")
        details: list[dict[str, Any]] = list(extra.get("details") or [])
        if status == 401:
            message = (
                "Request had invalid authentication credentials. Expected OAuth 2 access "
                "token, login cookie or other valid authentication credential. See "
                "https://developers.google.com/identity/sign-in/web/devconsole-project."
            )
            details = [
                {"@type": ERROR_INFO, "reason": "ACCESS_TOKEN_EXPIRED", "domain": "googleapis.com"}
            ]
        elif status == 429:
            message = (
                "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per "
                "minute per user' of service 'people.googleapis.com'."
            )
            details = [
                {"@type": ERROR_INFO, "reason": "RATE_LIMIT_EXCEEDED", "domain": "googleapis.com"}
            ]
        body = {"code": status, "message": message, "status": status_name, "details": details}
        return Response(status, {"error": body})

    # -- OAuth ---------------------------------------------------------------

    @route("POST", r"/token", auth=False, name="POST /token")
    def _token(self, request: Request) -> Response:
        return self.token_endpoint(request)

    @route("GET", r"/o/oauth2/(?:v2/)?auth", auth=False, name="GET /o/oauth2/auth")
    def _authorize(self, request: Request) -> Response:
        return self.authorize_page(request)

    # -- people storage --------------------------------------------------------

    def _bump(self, person: dict[str, Any]) -> None:
        self.seq += 1
        person["seq"] = self.seq
        person["etag"] = _new_etag()
        person["source_etag"] = _new_etag()
        person["updated"] = _now_iso()
        self.log_seqs.append(self.seq)
        self.log_names.append(person["rn"])

    def _insert(self, data: dict[str, list[Any]], groups: set[str]) -> dict[str, Any]:
        number = next(self._ids)
        rn = f"people/c{number}"
        person: dict[str, Any] = {
            "rn": rn,
            "source_id": format(number, "x"),
            "data": {},
            "groups": set(),
            "tokens": set(),
            #: PROFILE-source items of a linked Google profile (never written by the API)
            "profile": None,
            "previous": [],
            #: (previous version, monotonic time it stops being served) after an API write
            "stale": None,
            "searchable_at": 0.0,
        }
        self.people[rn] = person
        self.order.append(rn)
        self._set_data(person, data)
        self._set_groups(person, groups | {"contactGroups/myContacts"})
        self._bump(person)
        return person

    def _set_data(self, person: dict[str, Any], data: dict[str, list[Any]]) -> None:
        for key, values in data.items():
            if values:
                person["data"][key] = [self._clean_item(v) for v in values]
            else:
                person["data"].pop(key, None)
        self._reindex(person)

    def _set_groups(self, person: dict[str, Any], groups: set[str]) -> None:
        for rn in person["groups"] - groups:
            self.group_members[rn].discard(person["rn"])
        for rn in groups - person["groups"]:
            self.group_members[rn].add(person["rn"])
        person["groups"] = set(groups)

    def _delete(self, rn: str) -> None:
        person = self.people.pop(rn)
        self._set_groups(person, set())
        for token in person["tokens"]:
            self._drop_token(token, rn)
        self.seq += 1
        self.tombstones[rn] = {"seq": self.seq, "etag": _new_etag()}
        self.log_seqs.append(self.seq)
        self.log_names.append(rn)

    @staticmethod
    def _clean_item(item: Any) -> Any:
        if isinstance(item, dict):
            return {k: v for k, v in item.items() if k != "metadata"}
        return item

    # -- search index ------------------------------------------------------------

    @staticmethod
    def _tokens_of(person: dict[str, Any]) -> set[str]:
        data = person["data"]
        out: set[str] = set()

        def add_phrase(text: Any) -> None:
            text = str(text or "").strip().lower()
            if not text:
                return
            out.add(text)
            out.update(w for w in text.split() if w)

        for name in data.get("names", []):
            add_phrase(" ".join(filter(None, (name.get("givenName"), name.get("familyName")))))
            add_phrase(name.get("middleName"))
        for item in data.get("emailAddresses", []):
            add_phrase(item.get("value"))
        for item in data.get("phoneNumbers", []):
            add_phrase(item.get("value"))
        for item in data.get("organizations", []):
            add_phrase(item.get("name"))
        for item in data.get("nicknames", []):
            add_phrase(item.get("value"))
        return out

    def _reindex(self, person: dict[str, Any]) -> None:
        rn = person["rn"]
        new = self._tokens_of(person)
        for token in person["tokens"] - new:
            self._drop_token(token, rn)
        for token in new - person["tokens"]:
            holders = self.tokens.get(token)
            if holders is None:
                self.tokens[token] = {rn}
                # the sorted key list is rebuilt by the next search, not per insert:
                # seeding 100k contacts must not pay a list insert per token
                self.sorted_dirty = True
            else:
                holders.add(rn)
        person["tokens"] = new

    def _drop_token(self, token: str, rn: str) -> None:
        holders = self.tokens.get(token)
        if holders is None:
            return
        holders.discard(rn)
        if not holders:
            del self.tokens[token]  # a stale key in sorted_tokens is skipped by searches

    def _search(self, query: str, limit: int) -> list[str]:
        query = query.strip().lower()
        found: list[str] = []
        seen: set[str] = set()
        # an exact token first, so a full email finds its owner before longer ones
        for rn in sorted(self.tokens.get(query, ())):
            if rn not in seen:
                seen.add(rn)
                found.append(rn)
        if self.sorted_dirty:
            self.sorted_tokens = sorted(self.tokens)
            self.sorted_dirty = False
        index = bisect.bisect_left(self.sorted_tokens, query)
        while index < len(self.sorted_tokens) and len(found) < limit:
            token = self.sorted_tokens[index]
            if not token.startswith(query):
                break
            for rn in sorted(self.tokens.get(token, ())):
                if rn not in seen:
                    seen.add(rn)
                    found.append(rn)
            index += 1
        return found[:limit]

    # -- rendering -----------------------------------------------------------------

    def _source(self, person: dict[str, Any]) -> dict[str, Any]:
        return {"type": "CONTACT", "id": person["source_id"]}

    def _profile_source(self, person: dict[str, Any]) -> dict[str, Any]:
        return {"type": "PROFILE", "id": person["profile"]["id"]}

    def render(
        self,
        person: dict[str, Any],
        fields: frozenset[str] | set[str],
        sources: frozenset[str] = DEFAULT_SOURCES,
        *,
        sync: bool = False,
    ) -> dict[str, Any]:
        out: dict[str, Any] = {"resourceName": person["rn"], "etag": person["etag"]}
        source = self._source(person)
        profile = person.get("profile") if "PROFILE" in sources else None
        for key in sorted(fields):
            if key == "metadata":
                meta_sources: list[dict[str, Any]] = []
                if "CONTACT" in sources:
                    meta_sources.append(
                        {**source, "etag": person["source_etag"], "updateTime": person["updated"]}
                    )
                if profile:
                    meta_sources.append(
                        {
                            **self._profile_source(person),
                            "etag": profile["etag"],
                            "profileMetadata": {
                                "objectType": "PERSON",
                                "userTypes": ["GOOGLE_USER"],
                            },
                        }
                    )
                out["metadata"] = {"sources": meta_sources, "objectType": "PERSON"}
                if sync and person.get("previous"):
                    # only sync requests carry it (PersonMetadata.previousResourceNames)
                    out["metadata"]["previousResourceNames"] = list(person["previous"])
            elif key == "memberships":
                if person["groups"] and "CONTACT" in sources:
                    out["memberships"] = [
                        {
                            "metadata": {"source": source},
                            "contactGroupMembership": {
                                "contactGroupId": rn.partition("/")[2],
                                "contactGroupResourceName": rn,
                            },
                        }
                        for rn in sorted(person["groups"])
                    ]
            else:
                items: list[Any] = []
                # the profile's items come first and hold the field's primary:
                # which source is primary is Google's choice, not the contact's
                for index, item in enumerate((profile or {}).get(key) or []):
                    rendered = dict(item)
                    rendered["metadata"] = {
                        "primary": index == 0,
                        "verified": key == "emailAddresses",
                        "source": self._profile_source(person),
                    }
                    if key == "names":
                        self._name_display(rendered)
                    items.append(rendered)
                has_primary = bool(items)
                contact_items = person["data"].get(key, []) if "CONTACT" in sources else []
                for index, item in enumerate(contact_items):
                    rendered = dict(item) if isinstance(item, dict) else item
                    if isinstance(rendered, dict):
                        meta: dict[str, Any] = {"source": source}
                        if index == 0:
                            meta["sourcePrimary"] = True
                            if not has_primary:
                                meta["primary"] = True
                        rendered["metadata"] = meta
                        if key == "names":
                            self._name_display(rendered)
                    items.append(rendered)
                if items:
                    out[key] = items
        return out

    @staticmethod
    def _name_display(name: dict[str, Any]) -> None:
        given, family = name.get("givenName") or "", name.get("familyName") or ""
        display = " ".join(filter(None, (given, family)))
        if display:
            name["displayName"] = display
            name["displayNameLastFirst"] = ", ".join(filter(None, (family, given)))
            name["unstructuredName"] = display

    def tombstone(self, rn: str) -> dict[str, Any]:
        stone = self.tombstones[rn]
        return {"resourceName": rn, "etag": stone["etag"], "metadata": {"deleted": True}}

    # -- request helpers -------------------------------------------------------------

    @staticmethod
    def _mask(request: Request, name: str, *, required: bool = True) -> frozenset[str]:
        paths = set(request.args(name))
        if not paths and name == "personFields":
            paths = set(request.args("requestMask.includeField"))
        return GoogleSandbox._check_mask(paths, name, required=required)

    @staticmethod
    def _check_mask(paths: set[str], name: str, *, required: bool = True) -> frozenset[str]:
        paths = {p.strip().removeprefix("person.") for p in paths if p.strip()}
        if not paths and required:
            raise HttpError(
                400,
                f"{name} mask is required. Please specify one or more valid paths. "
                f"Valid paths are documented at {FIELDS_DOC}.",
            )
        unknown = sorted(paths - PERSON_FIELDS)
        if unknown:
            raise HttpError(
                400,
                f'Invalid {name} mask path: "{unknown[0]}". Valid paths are documented at '
                f"{FIELDS_DOC}.",
            )
        return frozenset(paths)

    @staticmethod
    def _page_size(request: Request, default: int, maximum: int) -> int:
        raw = request.arg("pageSize") or "0"
        try:
            size = int(raw)
        except ValueError as exc:
            raise HttpError(400, f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"") from exc
        if size < 0 or size > maximum:
            raise HttpError(400, f"Page size must be between 1 and {maximum}, inclusive.")
        return size or default

    @staticmethod
    def _read_sources(
        values: list[str], default: frozenset[str] = DEFAULT_SOURCES
    ) -> frozenset[str]:
        """The ``sources`` mask of a read (query parameter or batch body)."""
        out: set[str] = set()
        for value in values:
            if value not in READ_SOURCE_TYPES:
                raise HttpError(
                    400,
                    f"Invalid value at 'sources' (type.googleapis.com/ReadSourceType), {value!r}",
                )
            out.add(READ_SOURCE_TYPES[value])
        return frozenset(out) or default

    def _query_sources(
        self, request: Request, default: frozenset[str] = DEFAULT_SOURCES
    ) -> frozenset[str]:
        return self._read_sources(request.args("sources"), default)

    def _body_sources(self, body: Any) -> frozenset[str]:
        values = body.get("sources") if isinstance(body, dict) else None
        if isinstance(values, str):
            values = [values]
        return self._read_sources([str(v) for v in values or []])

    def _person(self, rn: str) -> dict[str, Any]:
        person = self.people.get(rn)
        if person is None:
            raise HttpError(404, "Requested entity was not found.")
        return person

    # -- read-after-write lag ------------------------------------------------------------

    @staticmethod
    def _snapshot(person: dict[str, Any]) -> dict[str, Any]:
        return {
            "data": {
                key: [dict(item) if isinstance(item, dict) else item for item in items]
                for key, items in person["data"].items()
            },
            "groups": set(person["groups"]),
            "etag": person["etag"],
            "source_etag": person["source_etag"],
            "updated": person["updated"],
        }

    def _written(self, person: dict[str, Any], before: dict[str, Any] | None) -> None:
        """An API write happened: reads of this person lag behind it for a while."""
        window = self.config.stale_read_window
        if before is not None and window > 0:
            now = time.monotonic()
            if person.get("stale") and person["stale"][1] > now:
                # a burst of writes: lagging reads still show the version before it
                before = person["stale"][0]
            person["stale"] = (before, now + window)

    def _as_read(self, person: dict[str, Any]) -> dict[str, Any]:
        """What people.get / batchGet see: the previous version during the
        stale window after an API write (the etag too), the person otherwise."""
        stale = person.get("stale")
        if stale is None:
            return person
        before, until = stale
        if time.monotonic() >= until:
            person["stale"] = None
            return person
        return {**person, **before}

    def _validate(self, body: Any, *, updating: frozenset[str] | None = None) -> dict[str, list]:
        """The writable fields of a person body, or an INVALID_ARGUMENT message."""
        if not isinstance(body, dict):
            raise HttpError(400, "Invalid JSON payload: a person must be an object.")
        keys = updating if updating is not None else frozenset(body) & PERSON_FIELDS
        data: dict[str, list] = {}
        for key in keys:
            if key in ("metadata", "memberships"):
                continue
            if key not in WRITABLE_FIELDS:
                raise HttpError(400, f"Person field {key} is read-only.")
            values = body.get(key) or []
            if not isinstance(values, list):
                raise HttpError(400, f"Invalid value at 'person.{key}': expected a list.")
            for item in values:
                source = ((item or {}).get("metadata") or {}).get("source") or {}
                if isinstance(item, dict) and source.get("type", "CONTACT") != "CONTACT":
                    # the reference says non-contact data is ignored; the sandbox
                    # refuses it so that a connector copying profile items shows
                    raise HttpError(
                        400,
                        f"person.{key} holds an item of source {source.get('type')}: only "
                        "CONTACT source fields can be written.",
                    )
            data[key] = values
        for key in ("names", "biographies", "birthdays", "genders"):
            # singletons for contact sources (people.updateContact / createContact)
            if len(data.get(key, [])) > 1:
                raise HttpError(400, f"Cannot have more than one person.{key} per source")
        for birthday in data.get("birthdays", []):
            date = birthday.get("date") or {}
            month, day = date.get("month", 0), date.get("day", 0)
            if date and not (1 <= int(month or 0) <= 12 and 1 <= int(day or 0) <= 31):
                raise HttpError(400, "Invalid birthday: month and day must be a valid date.")
        for item in data.get("userDefined", []):
            if not str(item.get("key") or "").strip() or not str(item.get("value") or "").strip():
                raise HttpError(400, "userDefined.key and userDefined.value must not be empty.")
        return data

    def _memberships(self, body: Any, existing: frozenset[str] = frozenset()) -> set[str] | None:
        """The groups a write asks for. Only user groups, myContacts and
        starred can be added; a membership the contact has may be kept
        (ContactGroupMembership.contactGroupResourceName in people.v1.json)."""
        if not isinstance(body, dict) or "memberships" not in body:
            return None
        groups: set[str] = set()
        for item in body.get("memberships") or []:
            membership = (item or {}).get("contactGroupMembership") or {}
            rn = membership.get("contactGroupResourceName") or (
                f"contactGroups/{membership['contactGroupId']}"
                if membership.get("contactGroupId")
                else ""
            )
            if rn not in self.groups:
                raise HttpError(400, f"Contact group {rn or '(none)'} does not exist.")
            if (
                self.groups[rn]["groupType"] == "SYSTEM_CONTACT_GROUP"
                and rn not in ADDABLE_SYSTEM_GROUPS
                and rn not in existing
            ):
                raise HttpError(400, f"Cannot add contacts to system group {rn}.")
            groups.add(rn)
        return groups

    def _status(self, exc: HttpError, status_name: str | None = None) -> dict[str, Any]:
        name = status_name or ("NOT_FOUND" if exc.status == 404 else "INVALID_ARGUMENT")
        return {"code": RPC_CODES.get(name, 3), "message": exc.message}

    # -- people: read ---------------------------------------------------------------------

    @route("GET", r"/v1/people/(?P<pid>[^/:]+)", name="GET /v1/people/{id}")
    def get_person(self, request: Request, pid: str) -> Any:
        fields = self._mask(request, "personFields")
        if pid == "me":
            return {
                "resourceName": "people/100000000000000000001",
                "etag": "%EgMBAgMaBAECBQc=",
                "names": [{"displayName": self.owner_name}] if "names" in fields else [],
                "emailAddresses": [{"value": self.owner_email, "metadata": {"primary": True}}]
                if "emailAddresses" in fields
                else [],
            }
        sources = self._query_sources(request)
        return self.render(self._as_read(self._person(f"people/{pid}")), fields, sources)

    @route("GET", r"/v1/people:batchGet", name="GET /v1/people:batchGet")
    def batch_get(self, request: Request) -> Any:
        fields = self._mask(request, "personFields")
        sources = self._query_sources(request)
        names = request.args("resourceNames")
        if not names:
            raise HttpError(400, "resourceNames must not be empty.")
        if len(names) > MAX_BATCH_GET:
            raise HttpError(400, f"Too many resourceNames: at most {MAX_BATCH_GET} are allowed.")
        responses = []
        for rn in names:
            person = self.people.get(rn)
            if person is None:
                responses.append(
                    {
                        "httpStatusCode": 404,
                        "requestedResourceName": rn,
                        "status": {"code": 5, "message": "Requested entity was not found."},
                    }
                )
            else:
                responses.append(
                    {
                        "httpStatusCode": 200,
                        "person": self.render(self._as_read(person), fields, sources),
                        "requestedResourceName": rn,
                        "status": {},
                    }
                )
        return {"responses": responses}

    @route("GET", r"/v1/people:searchContacts", name="GET /v1/people:searchContacts")
    def search_contacts(self, request: Request) -> Any:
        fields = self._mask(request, "readMask")
        query = request.arg("query")
        if query is None:
            raise HttpError(400, "query is required.")
        sources = self._query_sources(request, frozenset({"CONTACT"}))
        size = min(self._page_size(request, 10, 10**6), MAX_SEARCH)
        if not query.strip():
            return {}  # the warmup call
        # results come from a cache that lags writes: a contact created a
        # moment ago is not found yet
        now = time.monotonic()
        found = [
            rn
            for rn in self._search(query, MAX_SEARCH * 4)
            if self.people[rn]["searchable_at"] <= now
        ]
        found = found[:size]
        if not found:
            return {}
        return {
            "results": [{"person": self.render(self.people[rn], fields, sources)} for rn in found]
        }

    @route("GET", r"/v1/people/me/connections", name="GET /v1/people/me/connections")
    def connections(self, request: Request) -> Any:
        fields = self._mask(request, "personFields")
        size = self._page_size(request, 100, MAX_PAGE_SIZE)
        want_sync = (request.arg("requestSyncToken") or "false").lower() == "true"
        sync_token = request.arg("syncToken") or ""
        page_token = request.arg("pageToken") or ""
        sources = self._query_sources(request)
        src = ",".join(sorted(sources))
        params = {"f": ",".join(sorted(fields)), "r": want_sync, "t": sync_token, "src": src}
        if page_token:
            state = _decode(page_token, "page token")
            if any(state.get(k) != v for k, v in params.items()):
                raise HttpError(
                    400,
                    "Request contains an invalid argument: parameters must match the call "
                    "that provided the page token.",
                )
            start, snapshot, chain_start = state["i"], state["e"], state["fa"]
        else:
            start, snapshot, chain_start = None, self.seq, time.time()
        if sync_token:
            token = _decode(sync_token, "sync token")
            if (
                token.get("ep") != self.sync_epoch
                or time.time() - float(token.get("fa", 0)) > self.sync_token_ttl
            ):
                raise self._expired_error()
            if token.get("f") != params["f"] or token.get("src") != src:
                # "When the page_token or sync_token is specified, all other
                # request parameters must match the first call" (connections.list)
                raise HttpError(
                    400,
                    "Request contains an invalid argument: parameters must match the call "
                    "that provided the sync token.",
                )
            chain_start = float(token["fa"])
            if start is None:
                start = bisect.bisect_right(self.log_seqs, int(token["s"]))
            names, index = self._changes_page(start, snapshot, size)
            items = [
                self.render(self.people[rn], fields, sources, sync=True)
                if rn in self.people
                else self.tombstone(rn)
                for rn in names
            ]
            done = index >= len(self.log_seqs) or self.log_seqs[index] > snapshot
            total = len(items)
        else:
            items, index = self._full_page(start or 0, size, fields, sources)
            done = index >= len(self.order)
            total = len(self.people)
        body: dict[str, Any] = {"connections": items} if items else {}
        if done:
            if want_sync:
                body["nextSyncToken"] = _encode(
                    {
                        "s": snapshot,
                        "fa": chain_start,
                        "ep": self.sync_epoch,
                        "f": params["f"],
                        "src": src,
                    }
                )
        else:
            body["nextPageToken"] = _encode(
                {**params, "i": index, "e": snapshot, "fa": chain_start}
            )
        body["totalPeople"] = body["totalItems"] = total
        return body

    def _full_page(
        self, start: int, size: int, fields: frozenset[str], sources: frozenset[str]
    ) -> tuple[list, int]:
        items: list[dict[str, Any]] = []
        index = start
        while index < len(self.order) and len(items) < size:
            person = self.people.get(self.order[index])
            index += 1
            if person is not None:
                items.append(self.render(person, fields, sources))
        return items, index

    def _changes_page(self, start: int, snapshot: int, size: int) -> tuple[list[str], int]:
        names: list[str] = []
        index = start
        while index < len(self.log_seqs) and len(names) < size:
            seq = self.log_seqs[index]
            if seq > snapshot:
                break
            rn = self.log_names[index]
            index += 1
            if rn not in self.people and rn not in self.tombstones:
                continue  # renamed since: its new name is in the log too
            # only the latest change of a contact counts; later ones come with later reads
            latest = self.people[rn]["seq"] if rn in self.people else self.tombstones[rn]["seq"]
            if latest == seq:
                names.append(rn)
        return names, index

    def _expired_error(self) -> HttpError:
        status = self.expired_status
        return HttpError(
            status,
            "Sync token is expired. Clear local cache and retry call without the sync token.",
            rpc_status="GONE" if status == 410 else "FAILED_PRECONDITION",
            details=[
                {"@type": ERROR_INFO, "reason": "EXPIRED_SYNC_TOKEN", "domain": "googleapis.com"}
            ],
        )

    # -- people: write ---------------------------------------------------------------------

    @route("POST", r"/v1/people:createContact", name="POST /v1/people:createContact")
    def create_contact(self, request: Request) -> Any:
        fields = self._mask(request, "personFields", required=False) or frozenset(
            {"names", "emailAddresses", "phoneNumbers", "organizations", "metadata"}
        )
        sources = self._query_sources(request)
        body = request.json()
        data = self._validate(body)
        groups = self._memberships(body) or set()
        return self.render(self._api_insert(data, groups), fields, sources)

    @route("POST", r"/v1/people:batchCreateContacts", name="POST /v1/people:batchCreateContacts")
    def batch_create(self, request: Request) -> Any:
        body = request.json() or {}
        fields = self._check_mask(set(str(body.get("readMask") or "").split(",")), "readMask")
        sources = self._body_sources(body)
        contacts = body.get("contacts") or []
        if not contacts:
            raise HttpError(400, "contacts must not be empty.")
        if len(contacts) > MAX_BATCH_WRITE:
            raise HttpError(
                400, f"Too many contacts in the request: at most {MAX_BATCH_WRITE} are allowed."
            )
        prepared: list[tuple[dict[str, list], set[str]]] = []
        errors: dict[str, Any] = {}
        for index, item in enumerate(contacts):
            person = (item or {}).get("contactPerson")
            try:
                prepared.append((self._validate(person), self._memberships(person) or set()))
            except HttpError as exc:
                errors[str(index)] = self._status(exc)
        if errors:
            first = next(iter(errors.values()))["message"]
            raise HttpError(
                400,
                first,
                details=[{"@type": BATCH_CREATE_ERRORS, "contactErrors": errors}],
            )
        created = [self._api_insert(data, groups) for data, groups in prepared]
        return {
            "createdPeople": [
                {
                    "httpStatusCode": 200,
                    "person": self.render(person, fields, sources),
                    "requestedResourceName": person["rn"],
                    "status": {},
                }
                for person in created
            ]
        }

    def _api_insert(self, data: dict[str, list], groups: set[str]) -> dict[str, Any]:
        person = self._insert(data, groups)
        person["searchable_at"] = time.monotonic() + self.config.search_lag
        return person

    def _check_etag(self, person: dict[str, Any], body: dict[str, Any]) -> None:
        etag = body.get("etag")
        sources = (body.get("metadata") or {}).get("sources") or []
        source_etag = next(
            (
                s.get("etag")
                for s in sources
                if isinstance(s, dict) and s.get("etag") and s.get("type", "CONTACT") == "CONTACT"
            ),
            None,
        )
        if etag is None and source_etag is None:
            raise HttpError(
                400,
                "Request must set person.etag or person.metadata.sources.etag for the source "
                "that is being updated.",
            )
        if (etag is not None and etag != person["etag"]) or (
            source_etag is not None and source_etag != person["source_etag"]
        ):
            raise HttpError(
                400,
                "Request person.etag is different than the current person.etag. Clear local "
                "cache and get the latest person.",
                rpc_status="FAILED_PRECONDITION",
            )

    def _prepare_update(
        self, rn: str, body: Any, mask: frozenset[str]
    ) -> tuple[dict[str, Any], dict[str, list], set[str] | None]:
        person = self._person(rn)
        if not isinstance(body, dict):
            raise HttpError(400, "Invalid JSON payload: a person must be an object.")
        self._check_etag(person, body)
        data = self._validate(body, updating=mask)
        groups = (
            self._memberships(body, frozenset(person["groups"])) if "memberships" in mask else None
        )
        if groups is not None and not groups:
            raise HttpError(400, "A contact must keep at least one contact group membership.")
        return person, data, groups

    def _apply_update(
        self, person: dict[str, Any], data: dict[str, list], groups: set[str] | None
    ) -> None:
        before = self._snapshot(person)
        self._set_data(person, data)
        if groups is not None:
            self._set_groups(person, groups)
        self._bump(person)
        self._written(person, before)

    @route(
        "PATCH", r"/v1/people/(?P<pid>[^/:]+):updateContact", name="PATCH /v1/people:updateContact"
    )
    def update_contact(self, request: Request, pid: str) -> Any:
        mask = self._mask(request, "updatePersonFields")
        fields = self._mask(request, "personFields", required=False) or (mask | {"metadata"})
        sources = self._query_sources(request)
        person, data, groups = self._prepare_update(f"people/{pid}", request.json(), mask)
        self._apply_update(person, data, groups)
        # the write's own answer is current (it carries the new etag)
        return self.render(person, fields, sources)

    @route("POST", r"/v1/people:batchUpdateContacts", name="POST /v1/people:batchUpdateContacts")
    def batch_update(self, request: Request) -> Any:
        body = request.json() or {}
        mask = self._check_mask(set(str(body.get("updateMask") or "").split(",")), "updateMask")
        fields = self._check_mask(set(str(body.get("readMask") or "").split(",")), "readMask")
        sources = self._body_sources(body)
        contacts = body.get("contacts") or {}
        if not isinstance(contacts, dict) or not contacts:
            raise HttpError(400, "contacts must be a non-empty map of resource names to people.")
        if len(contacts) > MAX_BATCH_WRITE:
            raise HttpError(
                400, f"Too many contacts in the request: at most {MAX_BATCH_WRITE} are allowed."
            )
        prepared = []
        errors: dict[str, Any] = {}
        for rn, person_body in contacts.items():
            try:
                prepared.append(self._prepare_update(rn, person_body, mask))
            except HttpError as exc:
                errors[rn] = self._status(exc, exc.extra.get("rpc_status"))
        if errors:
            statuses = {e["code"] for e in errors.values()}
            first = next(iter(errors.values()))["message"]
            raise HttpError(
                400,
                first,
                rpc_status="FAILED_PRECONDITION" if statuses == {9} else "INVALID_ARGUMENT",
                details=[{"@type": BATCH_UPDATE_ERRORS, "contactErrors": errors}],
            )
        result = {}
        for person, data, groups in prepared:
            self._apply_update(person, data, groups)
            result[person["rn"]] = {
                "httpStatusCode": 200,
                "person": self.render(person, fields, sources),
                "requestedResourceName": person["rn"],
                "status": {},
            }
        return {"updateResult": result}

    @route(
        "DELETE",
        r"/v1/people/(?P<pid>[^/:]+):deleteContact",
        name="DELETE /v1/people:deleteContact",
    )
    def delete_contact(self, request: Request, pid: str) -> Any:
        rn = f"people/{pid}"
        self._person(rn)
        self._delete(rn)
        return {}

    @route("POST", r"/v1/people:batchDeleteContacts", name="POST /v1/people:batchDeleteContacts")
    def batch_delete(self, request: Request) -> Any:
        names = (request.json() or {}).get("resourceNames") or []
        if not names or len(names) > MAX_BATCH_DELETE:
            raise HttpError(400, f"resourceNames must hold 1 to {MAX_BATCH_DELETE} names.")
        missing = [rn for rn in names if rn not in self.people]
        if missing:
            raise HttpError(404, f"Requested entity was not found: {missing[0]}")
        for rn in names:
            self._delete(rn)
        return {}

    # -- contact groups ----------------------------------------------------------------------

    def _render_group(self, group: dict[str, Any]) -> dict[str, Any]:
        out = dict(group)
        count = len(self.group_members[group["resourceName"]])
        if count:
            out["memberCount"] = count
        return out

    def _create_group(self, name: str) -> dict[str, Any]:
        name = name.strip()
        if not name:
            raise HttpError(400, "Contact group name must not be empty.")
        if name in self.group_by_name or any(
            g["name"] == name
            for g in self.groups.values()
            if g["groupType"] != "USER_CONTACT_GROUP"
        ):
            raise HttpError(409, "Contact group name already exists.")
        rn = f"contactGroups/{next(self._group_ids):x}"
        group = {
            "resourceName": rn,
            "etag": _new_etag(),
            "metadata": {"updateTime": _now_iso()},
            "groupType": "USER_CONTACT_GROUP",
            "name": name,
            "formattedName": name,
        }
        self.groups[rn] = group
        self.group_by_name[name] = rn
        self.group_members[rn] = set()
        return group

    @route("GET", r"/v1/contactGroups", name="GET /v1/contactGroups")
    def list_groups(self, request: Request) -> Any:
        size = self._page_size(request, 30, MAX_PAGE_SIZE)
        start = (
            int(_decode(request.arg("pageToken"), "page token")["i"])
            if request.arg("pageToken")
            else 0
        )
        names = list(self.groups)
        page = names[start : start + size]
        body: dict[str, Any] = {
            "contactGroups": [self._render_group(self.groups[rn]) for rn in page],
            "totalItems": len(names),
        }
        if start + size < len(names):
            body["nextPageToken"] = _encode({"i": start + size})
        else:
            body["nextSyncToken"] = _encode({"g": self.seq})
        return body

    @route("GET", r"/v1/contactGroups/(?P<gid>[^/:]+)", name="GET /v1/contactGroups/{id}")
    def get_group(self, request: Request, gid: str) -> Any:
        group = self.groups.get(f"contactGroups/{gid}")
        if group is None:
            raise HttpError(404, "Requested entity was not found.")
        return self._render_group(group)

    @route("POST", r"/v1/contactGroups", name="POST /v1/contactGroups")
    def create_group(self, request: Request) -> Any:
        body = request.json() or {}
        group = (body.get("contactGroup") or {}) if isinstance(body, dict) else {}
        return self._render_group(self._create_group(str(group.get("name") or "")))

    @route(
        "POST",
        r"/v1/contactGroups/(?P<gid>[^/:]+)/members:modify",
        name="POST /v1/contactGroups/{id}/members:modify",
    )
    def modify_members(self, request: Request, gid: str) -> Any:
        rn = f"contactGroups/{gid}"
        group = self.groups.get(rn)
        if group is None:
            raise HttpError(404, "Requested entity was not found.")
        body = request.json() or {}
        add = list(body.get("resourceNamesToAdd") or [])
        remove = list(body.get("resourceNamesToRemove") or [])
        if len(add) + len(remove) > MAX_MEMBERS_MODIFY:
            raise HttpError(
                400,
                "The total number of resource names to add and to remove must be at most "
                f"{MAX_MEMBERS_MODIFY}.",
            )
        if add and group["groupType"] == "SYSTEM_CONTACT_GROUP" and rn not in ADDABLE_SYSTEM_GROUPS:
            raise HttpError(400, f"Cannot add contacts to system group {rn}.")
        not_found: list[str] = []
        last_group: list[str] = []
        for person_rn in add:
            person = self.people.get(person_rn)
            if person is None:
                not_found.append(person_rn)
            elif rn not in person["groups"]:
                before = self._snapshot(person)
                self._set_groups(person, person["groups"] | {rn})
                self._bump(person)
                self._written(person, before)
        for person_rn in remove:
            person = self.people.get(person_rn)
            if person is None:
                not_found.append(person_rn)
            elif rn in person["groups"]:
                if len(person["groups"]) == 1:
                    last_group.append(person_rn)
                    continue
                before = self._snapshot(person)
                self._set_groups(person, person["groups"] - {rn})
                self._bump(person)
                self._written(person, before)
        out: dict[str, Any] = {}
        if not_found:
            out["notFoundResourceNames"] = not_found
        if last_group:
            out["canNotRemoveLastContactGroupResourceNames"] = last_group
        return out

    # -- control API: people as a person would edit them -----------------------------------

    def _group_for_tag(self, tag: str) -> str:
        rn = self.group_by_name.get(tag)
        return rn or self._create_group(tag)["resourceName"]

    def _from_neutral(
        self, person: dict[str, Any], current: dict[str, Any] | None = None
    ) -> dict[str, list]:
        """The app-native fields a neutral control-API person sets."""
        data: dict[str, list] = {}
        old = current["data"] if current else {}

        def first(key: str) -> dict[str, Any]:
            items = old.get(key) or [{}]
            return dict(items[0])

        if "first_name" in person or "last_name" in person:
            name = first("names")
            if "first_name" in person:
                name["givenName"] = person["first_name"]
            if "last_name" in person:
                name["familyName"] = person["last_name"]
            name = {k: v for k, v in name.items() if v}
            data["names"] = [name] if name else []
        for key, field, kind in (
            ("email", "emailAddresses", "home"),
            ("phone", "phoneNumbers", "mobile"),
        ):
            if key in person:
                rest = list(old.get(field, []))[1:]
                value = person[key]
                head = [{**first(field), "value": value, "type": first(field).get("type", kind)}]
                data[field] = (head if value else []) + rest
        if "company" in person or "title" in person:
            org = first("organizations")
            if "company" in person:
                org["name"] = person["company"]
            if "title" in person:
                org["title"] = person["title"]
            org = {k: v for k, v in org.items() if v}
            data["organizations"] = [org] if org else []
        if "custom" in person:
            merged = {item["key"]: item["value"] for item in old.get("userDefined", [])}
            for key, value in (person.get("custom") or {}).items():
                if value in (None, ""):
                    merged.pop(key, None)
                else:
                    merged[key] = str(value)
            data["userDefined"] = [{"key": k, "value": v} for k, v in merged.items()]
        return data

    def _control_create(self, person: Any) -> dict[str, Any]:
        if not isinstance(person, dict):
            raise HttpError(400, "a person must be an object")
        groups = {self._group_for_tag(t) for t in person.get("tags") or []}
        created = self._insert(self._from_neutral(person), groups)
        self.seeded += 1
        wanted = person.get("profile")
        share = self.config.profile_share
        if wanted is None:
            # by default a deterministic share of seeded contacts is linked
            wanted = bool(share) and (self.seeded - 1) % share == 0
        if wanted:
            self._link_profile(created, wanted if isinstance(wanted, dict) else {})
        return created

    def _link_profile(self, person: dict[str, Any], spec: dict[str, Any]) -> None:
        """Give the contact a linked Google profile: PROFILE-source names,
        emails, organizations and a photo, none of them the contact's own."""
        pid = format(next(self._ids), "x")
        org = {"name": spec.get("company", "Profile Co"), "title": spec.get("title", "Profile")}
        person["profile"] = {
            "id": pid,
            "etag": _new_etag(),
            "names": [
                {
                    "givenName": spec.get("first_name", "Profile"),
                    "familyName": spec.get("last_name", f"Owner{pid[-4:]}"),
                }
            ],
            "emailAddresses": [{"value": spec.get("email", f"owner.{pid}@gmail.example")}],
            "organizations": [{k: v for k, v in org.items() if v}],
            "photos": [{"url": f"https://lh3.googleusercontent.example/a/{pid}"}],
        }

    @route("POST", r"/_sandbox/contacts", auth=False)
    def _c_create(self, request: Request) -> Any:
        return {"id": self._control_create(request.json())["rn"]}

    @route("POST", r"/_sandbox/contacts/bulk", auth=False)
    def _c_bulk(self, request: Request) -> Any:
        people = (request.json() or {}).get("contacts") or []
        return {"ids": [self._control_create(p)["rn"] for p in people]}

    # the control API shows the contact as stored (CONTACT source) unless
    # ``?sources=READ_SOURCE_TYPE_PROFILE...`` asks for more

    @route("GET", r"/_sandbox/contacts", auth=False)
    def _c_list(self, request: Request) -> Any:
        sources = self._query_sources(request, frozenset({"CONTACT"}))
        return {
            "contacts": [
                self.render(self.people[rn], PERSON_FIELDS, sources)
                for rn in self.order
                if rn in self.people
            ]
        }

    @staticmethod
    def _rn(pid: str) -> str:
        return pid if pid.startswith("people/") else f"people/{pid}"

    @route("GET", r"/_sandbox/contacts/(?P<pid>.+)", auth=False)
    def _c_get(self, request: Request, pid: str) -> Any:
        sources = self._query_sources(request, frozenset({"CONTACT"}))
        return self.render(self._person(self._rn(pid)), PERSON_FIELDS, sources)

    @route("PATCH", r"/_sandbox/contacts/(?P<pid>.+)", auth=False)
    def _c_patch(self, request: Request, pid: str) -> Any:
        person = self._person(self._rn(pid))
        patch = request.json() or {}
        self._set_data(person, self._from_neutral(patch, person))
        if "tags" in patch:
            user = {rn for rn in person["groups"] if rn in self.group_by_name.values()}
            wanted = {self._group_for_tag(t) for t in patch.get("tags") or []}
            self._set_groups(person, (person["groups"] - user) | wanted)
        self._bump(person)
        return self.render(person, PERSON_FIELDS, frozenset({"CONTACT"}))

    @route("DELETE", r"/_sandbox/contacts/(?P<pid>.+)", auth=False)
    def _c_delete(self, request: Request, pid: str) -> Any:
        rn = self._rn(pid)
        self._person(rn)
        self._delete(rn)
        return {}

    @route("POST", r"/_sandbox/contacts/(?P<pid>.+)/unsubscribe", auth=False)
    def _c_unsubscribe(self, request: Request, pid: str) -> Any:
        self._person(self._rn(pid))
        raise HttpError(400, "Google Contacts has no notion of unsubscribing a contact.")

    @route("POST", r"/_sandbox/contacts/(?P<pid>.+)/tags", auth=False)
    def _c_tags(self, request: Request, pid: str) -> Any:
        person = self._person(self._rn(pid))
        body = request.json() or {}
        groups = set(person["groups"])
        groups |= {self._group_for_tag(t) for t in body.get("add") or []}
        groups -= {
            self.group_by_name[t] for t in body.get("remove") or [] if t in self.group_by_name
        }
        if groups != person["groups"]:
            self._set_groups(person, groups or {"contactGroups/myContacts"})
            self._bump(person)
        return self.render(person, PERSON_FIELDS, frozenset({"CONTACT"}))

    @route("POST", r"/_sandbox/contacts/(?P<pid>.+)/link-profile", auth=False)
    def _c_link_profile(self, request: Request, pid: str) -> Any:
        """The contact gets linked to a Google profile (a verified email, say):
        Google gives it a new resource name and reports the old one in
        ``metadata.previousResourceNames`` of sync answers; the old name is
        gone (no tombstone: nothing was deleted)."""
        old = self._rn(pid)
        person = self._person(old)
        body = request.json() or {}
        new = f"people/c{next(self._ids)}"
        del self.people[old]
        self.people[new] = person
        self.order[self.order.index(old)] = new
        for members in self.group_members.values():
            if old in members:
                members.discard(old)
                members.add(new)
        for token in person["tokens"]:
            holders = self.tokens.get(token)
            if holders is not None and old in holders:
                holders.discard(old)
                holders.add(new)
        person["rn"] = new
        person["previous"] = [*person["previous"], old]
        self.renamed[old] = new
        if body.get("profile", True) and not person.get("profile"):
            profile = body.get("profile")
            self._link_profile(person, profile if isinstance(profile, dict) else {})
        self._bump(person)
        return {"id": new, "previous": person["previous"]}

    @route("POST", r"/_sandbox/synctokens/expire", auth=False)
    def _c_expire_sync(self, request: Request) -> Any:
        body = request.json() or {}
        if body.get("ttl") is not None:
            # only tokens whose chain began longer ago than this are expired
            self.sync_token_ttl = float(body["ttl"])
        else:
            self.sync_epoch += 1
        if body.get("status") in (400, 410):
            self.expired_status = int(body["status"])
        return {"epoch": self.sync_epoch, "status": self.expired_status}


FACTS = SandboxFacts(
    app=GoogleSandbox,
    api_root="/v1",
    unknown_id="people/c999999999999",
    create_route="POST /v1/people:batchCreateContacts",
    update_route="POST /v1/people:batchUpdateContacts",
    update_batched=True,
    # a label (tag) needs a name
    refused_write=ContactWrite(
        None, "label@example.com", {"email": "label@example.com"}, frozenset({" "})
    ),
    refused_message="must not be empty",
)
