"""A stateful fake of HubSpot's CRM v3 contacts API, its properties API, its
OAuth token endpoints and the account-info endpoint.

Shapes follow HubSpot's public reference: records are ``{"id", "properties",
"createdAt", "updatedAt", "archived"}`` with every property value a string,
lists page with ``paging.next.after``, search answers ``{"total", "results",
"paging"}`` and refuses to page past 10,000 results, batches take at most 100
inputs and fail as a whole on one invalid input, and errors are
``{"status": "error", "message", "correlationId", "category"}``.

Indexes keep every request O(page) or O(matches): ids in a sorted list (the
list's ``after`` is an id), a unique email index, and a sorted
``(lastmodifieddate, id)`` index for the incremental search.
"""

from __future__ import annotations

import bisect
import datetime as dt
import json
import re
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.base import ContactWrite

from .base import HttpError, Request, Response, SandboxApp, SandboxConfig, route
from .facts import SandboxFacts

CONTACTS = "/crm/v3/objects/contacts"
PROPERTIES = "/crm/v3/properties/contacts"
MAX_BATCH = 100
MAX_LIST_LIMIT = 100
MAX_SEARCH_LIMIT = 200
SEARCH_RESULT_CAP = 10_000
DEFAULT_TAGS_PROPERTY = "driftsync_tags"
PORTAL_ID = 20_250_101
#: properties a read returns when it names none (HubSpot's documented default)
DEFAULT_READ = ("createdate", "email", "firstname", "hs_object_id", "lastmodifieddate", "lastname")
#: returned on every read whatever was asked
ALWAYS_READ = ("createdate", "hs_object_id", "lastmodifieddate")
EMAIL_RE = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
EXISTING_ID_MESSAGE = "Contact already exists. Existing ID: {id}"
#: the 400 VALIDATION_ERROR an update (or a create racing a secondary email)
#: gets when another contact has the email: verbatim shape of production
#: answers quoted in a public HubSpot intake test (code index id 68689323038)
TAKEN_VALUE_MESSAGE = (
    "Cannot set PropertyValueCoordinates{{portalId={portal}, objectTypeId=ObjectTypeId"
    "{{legacyObjectType=CONTACT}}, propertyName={name}, value={value}}} on {target}. "
    "{owner} already has that value."
)

#: scopes a token needs, per kind of call (any one of a tuple will do).
#: https://developers.hubspot.com/docs/api/crm/contacts (objects),
#: https://developers.hubspot.com/docs/api/crm/properties (schemas: creating or
#: changing a property needs crm.schemas.contacts.write)
READ_CONTACTS = ("crm.objects.contacts.read",)
WRITE_CONTACTS = ("crm.objects.contacts.write",)
READ_SCHEMA = ("crm.schemas.contacts.read", "crm.objects.contacts.read")
WRITE_SCHEMA = ("crm.schemas.contacts.write",)
#: what an issued token carries by default: everything the connector requests
FULL_SCOPES = (
    "oauth",
    "crm.objects.contacts.read",
    "crm.objects.contacts.write",
    "crm.schemas.contacts.read",
    "crm.schemas.contacts.write",
)

PERSON_KEYS = {
    "email": "email",
    "first_name": "firstname",
    "last_name": "lastname",
    "phone": "phone",
    "company": "company",
    "title": "jobtitle",
}


def iso_ms(ms: int) -> str:
    stamp = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def parse_ms(value: Any) -> int | None:
    """Epoch milliseconds from a filter value or a stored datetime/date."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def _option(value: str, label: str, order: int) -> dict[str, Any]:
    return {"label": label, "value": value, "displayOrder": order, "hidden": False}


def property_definition(
    name: str,
    label: str,
    type_: str = "string",
    field_type: str = "text",
    *,
    group: str = "contactinformation",
    options: Iterable[tuple[str, str]] = (),
    hubspot_defined: bool = True,
    calculated: bool = False,
    read_only: bool = False,
    hidden: bool = False,
    unique: bool = False,
) -> dict[str, Any]:
    now = iso_ms(int(time.time() * 1000))
    prop: dict[str, Any] = {
        "updatedAt": now,
        "createdAt": now,
        "name": name,
        "label": label,
        "type": type_,
        "fieldType": field_type,
        "description": "",
        "groupName": group,
        "options": [_option(v, lbl, i) for i, (v, lbl) in enumerate(options)],
        "displayOrder": -1,
        "calculated": calculated,
        "externalOptions": False,
        "hasUniqueValue": unique,
        "hidden": hidden,
        "modificationMetadata": {
            "archivable": not hubspot_defined,
            "readOnlyDefinition": hubspot_defined,
            "readOnlyValue": read_only or calculated,
        },
        "formField": not (read_only or calculated),
    }
    if hubspot_defined:
        prop["hubspotDefined"] = True
    return prop


def default_properties() -> dict[str, dict[str, Any]]:
    lifecycle = [
        ("subscriber", "Subscriber"),
        ("lead", "Lead"),
        ("marketingqualifiedlead", "Marketing Qualified Lead"),
        ("salesqualifiedlead", "Sales Qualified Lead"),
        ("opportunity", "Opportunity"),
        ("customer", "Customer"),
        ("evangelist", "Evangelist"),
        ("other", "Other"),
    ]
    lead_status = [
        ("NEW", "New"),
        ("OPEN", "Open"),
        ("IN_PROGRESS", "In Progress"),
        ("OPEN_DEAL", "Open Deal"),
        ("UNQUALIFIED", "Unqualified"),
        ("ATTEMPTED_TO_CONTACT", "Attempted to Contact"),
        ("CONNECTED", "Connected"),
        ("BAD_TIMING", "Bad Timing"),
    ]
    defs = [
        property_definition("email", "Email", unique=True),
        property_definition("firstname", "First Name"),
        property_definition("lastname", "Last Name"),
        property_definition("phone", "Phone Number", field_type="phonenumber"),
        property_definition("mobilephone", "Mobile Phone Number", field_type="phonenumber"),
        property_definition("company", "Company Name"),
        property_definition("jobtitle", "Job Title"),
        property_definition("website", "Website URL"),
        property_definition("address", "Street Address"),
        property_definition("city", "City"),
        property_definition("state", "State/Region"),
        property_definition("zip", "Postal Code"),
        property_definition("country", "Country/Region"),
        property_definition(
            "lifecyclestage", "Lifecycle Stage", "enumeration", "radio", options=lifecycle
        ),
        property_definition(
            "hs_lead_status", "Lead Status", "enumeration", "radio", options=lead_status
        ),
        property_definition(
            "hs_email_optout",
            "Unsubscribed from all email",
            "bool",
            "booleancheckbox",
            options=[("true", "True"), ("false", "False")],
            read_only=True,
        ),
        property_definition(
            "createdate",
            "Create Date",
            "datetime",
            "date",
            group="contact_activity",
            read_only=True,
        ),
        property_definition(
            "lastmodifieddate",
            "Last Modified Date",
            "datetime",
            "date",
            group="contact_activity",
            read_only=True,
        ),
        property_definition("hs_object_id", "Record ID", "number", "number", read_only=True),
        property_definition("hs_email_domain", "Email Domain", calculated=True),
        property_definition(
            "hs_analytics_num_visits",
            "Number of Pageviews",
            "number",
            "number",
            group="analyticsinformation",
            calculated=True,
        ),
    ]
    return {d["name"]: d for d in defs}


def _validation_error(items: list[dict[str, Any]]) -> HttpError:
    return HttpError(
        400,
        "Property values were not valid: " + json.dumps(items),
        category="VALIDATION_ERROR",
        errors=[
            {
                "message": item["message"],
                "code": item["error"],
                "context": {"propertyName": [item["name"]]},
            }
            for item in items
        ],
    )


def _bad_request(message: str) -> HttpError:
    return HttpError(400, message, category="VALIDATION_ERROR")


@dataclass
class HubSpotConfig(SandboxConfig):
    #: the search endpoints' own limit (4 per second per token: HubSpot
    #: changelog "CRM Search API Rate Limit Increase")
    search_rate_limit: int = 4
    search_rate_window: float = 1.0
    #: requests per day (Free/Starter private apps: 250,000; developers.hubspot.com/apisbytier)
    daily_limit: int = 250_000


class HubSpotSandbox(SandboxApp):
    name = "hubspot"
    default_scopes = FULL_SCOPES
    config_class = HubSpotConfig
    config: HubSpotConfig
    # a rolling 100 requests / 10 s per app per account (developers.hubspot.com/apisbytier)
    config_defaults: ClassVar[dict[str, Any]] = {"rate_limit": 100, "rate_window": 10.0}

    def rate_buckets(self, request: Request) -> list[tuple[str, int, float]]:
        cfg = self.config
        if request.path.rstrip("/").endswith("/search"):
            # search has its own per-second limit (and no rate-limit headers)
            buckets = [("SECONDLY", cfg.search_rate_limit, cfg.search_rate_window)]
        else:
            buckets = [("TEN_SECONDLY_ROLLING", cfg.rate_limit, cfg.rate_window)]
        return [*buckets, ("DAILY", cfg.daily_limit, 86_400.0)]

    # ------------------------------------------------------------------ state

    def reset(self) -> None:
        self.properties: dict[str, dict[str, Any]] = default_properties()
        self.records: dict[int, dict[str, Any]] = {}
        self.live_ids: list[int] = []
        self.archived_ids: list[int] = []
        self.by_email: dict[str, int] = {}
        self.mod_index: list[tuple[int, int]] = []
        self.next_id = 101
        self.last_ms = 0

    def _now_ms(self) -> int:
        self.last_ms = max(self.last_ms, int(time.time() * 1000))
        return self.last_ms

    # ------------------------------------------------------------------ errors

    def error(self, status: int, message: str, **extra: Any) -> Response:
        categories = {
            400: "VALIDATION_ERROR",
            401: "INVALID_AUTHENTICATION",
            403: "MISSING_SCOPES",
            404: "OBJECT_NOT_FOUND",
            405: "VALIDATION_ERROR",
            409: "CONFLICT",
        }
        if status == 401:
            message = (
                "Authentication credentials not found. This API supports OAuth 2.0 "
                "authentication and you can find more details at "
                "https://developers.hubspot.com/docs/methods/auth/oauth-overview"
            )
        body: dict[str, Any] = {
            "status": "error",
            "message": message,
            "correlationId": str(uuid.uuid4()),
            "category": extra.pop("category", None)
            or categories.get(status, "INTERNAL_ERROR" if status >= 500 else "UNKNOWN"),
        }
        body.update(extra)
        return Response(status, body)

    def missing_scopes(self, needed: tuple[str, ...]) -> Response:
        """HubSpot's 403: hubspot-api-nodejs issues #50 and #268 show the body;
        ``requiredGranularScopes`` is what current answers carry."""
        return Response(
            403,
            {
                "status": "error",
                "message": "This app hasn't been granted all required scopes to make this "
                "call. Read more about required scopes here: https://developers.hubspot.com/scopes.",
                "correlationId": str(uuid.uuid4()),
                "errors": [
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": list(needed)},
                    }
                ],
                "links": {"scopes": "https://developers.hubspot.com/scopes"},
                "category": "MISSING_SCOPES",
            },
        )

    def rate_limited(self, retry_after: float, policy: str = "") -> Response:
        """HubSpot's 429: ``errorType: RATE_LIMIT`` and the policy hit, without
        ``Retry-After`` (HubSpot usage guidelines, "Error responses")."""
        policy = policy if policy in ("SECONDLY", "DAILY") else "TEN_SECONDLY_ROLLING"
        headers: dict[str, str] = {}
        if policy == "TEN_SECONDLY_ROLLING":
            headers = {
                "X-HubSpot-RateLimit-Max": str(self.config.rate_limit),
                "X-HubSpot-RateLimit-Remaining": "0",
                "X-HubSpot-RateLimit-Interval-Milliseconds": str(
                    int(self.config.rate_window * 1000)
                ),
            }
        response = Response(
            429,
            {
                "status": "error",
                "message": f"You have reached your {policy.lower()} limit.",
                "errorType": "RATE_LIMIT",
                "correlationId": str(uuid.uuid4()),
                "policyName": policy,
            },
            headers=headers,
        )
        return self.hint(response, retry_after)

    # ------------------------------------------------------------------ views

    def _view(self, rec: dict[str, Any], properties: Iterable[str] | None = None) -> dict[str, Any]:
        stored: dict[str, str] = rec["properties"]
        if properties is None:
            props = dict(stored)
        else:
            props = {}
            for name in (*properties, *ALWAYS_READ):
                if name in self.properties:
                    props[name] = stored.get(name)
        out: dict[str, Any] = {
            "id": str(rec["id"]),
            "properties": props,
            "createdAt": rec["properties"]["createdate"],
            "updatedAt": rec["properties"]["lastmodifieddate"],
            "archived": rec["archived"],
        }
        if rec["archived"]:
            out["archivedAt"] = iso_ms(rec["archived_at"])
        return out

    def _read_properties(self, names: list[str]) -> list[str]:
        # unknown names are ignored on reads, as HubSpot does
        return names or list(DEFAULT_READ)

    def _live(self, contact_id: str) -> dict[str, Any]:
        rec = self.records.get(int(contact_id)) if contact_id.isdigit() else None
        if rec is None or rec["archived"]:
            raise HttpError(404, "resource not found", category="OBJECT_NOT_FOUND")
        return rec

    # ------------------------------------------------------------------ validation

    def _validate(
        self, raw: dict[str, Any] | None, *, for_ui: bool = False
    ) -> dict[str, str | None]:
        """Check property values like HubSpot; return them normalized
        (``None`` clears). ``for_ui`` skips the read-only check (the app
        itself sets those)."""
        items: list[dict[str, Any]] = []
        out: dict[str, str | None] = {}
        for name, value in (raw or {}).items():
            prop = self.properties.get(name)

            def fail(code: str, message: str, name: str = name) -> None:
                items.append(
                    {
                        "isValid": False,
                        "message": message,
                        "error": code,
                        "name": name,
                        "localizedErrorMessage": message,
                    }
                )

            if prop is None:
                fail("PROPERTY_DOESNT_EXIST", f'Property "{name}" does not exist')
                continue
            if not for_ui and prop["modificationMetadata"]["readOnlyValue"]:
                fail(
                    "READ_ONLY_VALUE", f'"{name}" is a read only property; its value cannot be set.'
                )
                continue
            if value is None or (isinstance(value, str) and value.strip() == ""):
                out[name] = None
                continue
            if isinstance(value, bool):
                text = "true" if value else "false"
            else:
                text = str(value)
            kind, field_type = prop["type"], prop["fieldType"]
            if name == "email":
                text = text.strip().lower()
                if not EMAIL_RE.match(text):
                    fail("INVALID_EMAIL", f"Email address {text} is invalid")
                    continue
            elif kind == "number":
                try:
                    float(text)
                except ValueError:
                    fail("INVALID_DECIMAL", f"{text} is not a valid number")
                    continue
            elif kind == "bool":
                if text.lower() not in ("true", "false"):
                    fail("INVALID_BOOLEAN", f"{text} is not a valid boolean value")
                    continue
                text = text.lower()
            elif kind == "date":
                ms = parse_ms(text)
                if ms is None or ms % 86_400_000:
                    fail("INVALID_DATE", f"{text} is not a valid date at midnight UTC")
                    continue
                text = iso_ms(ms)[:10]
            elif kind == "datetime":
                ms = parse_ms(text)
                if ms is None:
                    fail("INVALID_DATETIME", f"{text} is not a valid datetime")
                    continue
                text = iso_ms(ms)
            elif kind == "enumeration":
                allowed = [o["value"] for o in prop["options"]]
                chosen = text.split(";") if field_type == "checkbox" else [text]
                bad = [c for c in chosen if c not in allowed]
                if bad:
                    fail(
                        "INVALID_OPTION",
                        f"{bad[0]} was not one of the allowed options: [{', '.join(allowed)}]",
                    )
                    continue
            out[name] = text
        if items:
            raise _validation_error(items)
        return out

    def _email_owner(self, props: dict[str, str | None]) -> int | None:
        email = props.get("email")
        return self.by_email.get(email) if email else None

    # ------------------------------------------------------------------ mutations

    def _insert(self, props: dict[str, str | None], now: int | None = None) -> dict[str, Any]:
        now = now if now is not None else self._now_ms()
        contact_id = self.next_id
        self.next_id += 1
        stored = {k: v for k, v in props.items() if v is not None}
        stored["hs_object_id"] = str(contact_id)
        stored["createdate"] = stored["lastmodifieddate"] = iso_ms(now)
        email = stored.get("email")
        if email:
            stored["hs_email_domain"] = email.partition("@")[2]
            self.by_email[email] = contact_id
        rec = {
            "id": contact_id,
            "properties": stored,
            "created": now,
            "modified": now,
            "archived": False,
            "archived_at": None,
        }
        self.records[contact_id] = rec
        self.live_ids.append(contact_id)  # ids only grow: the list stays sorted
        bisect.insort(self.mod_index, (now, contact_id))
        return rec

    def _apply(self, rec: dict[str, Any], props: dict[str, str | None]) -> None:
        stored: dict[str, str] = rec["properties"]
        if "email" in props and props["email"] != stored.get("email"):
            old = stored.get("email")
            if old and self.by_email.get(old) == rec["id"]:
                del self.by_email[old]
            new = props["email"]
            if new:
                self.by_email[new] = rec["id"]
                stored["hs_email_domain"] = new.partition("@")[2]
            else:
                stored.pop("hs_email_domain", None)
        for name, value in props.items():
            if name in ALWAYS_READ:
                continue  # kept by HubSpot itself
            if value is None:
                stored.pop(name, None)
            else:
                stored[name] = value
        self._touch(rec)

    def _touch(self, rec: dict[str, Any]) -> None:
        now = self._now_ms()
        old = (rec["modified"], rec["id"])
        index = bisect.bisect_left(self.mod_index, old)
        if index < len(self.mod_index) and self.mod_index[index] == old:
            del self.mod_index[index]
        rec["modified"] = now
        rec["properties"]["lastmodifieddate"] = iso_ms(now)
        bisect.insort(self.mod_index, (now, rec["id"]))

    def _archive(self, rec: dict[str, Any]) -> None:
        if rec["archived"]:
            return
        contact_id = rec["id"]
        index = bisect.bisect_left(self.live_ids, contact_id)
        if index < len(self.live_ids) and self.live_ids[index] == contact_id:
            del self.live_ids[index]
        key = (rec["modified"], contact_id)
        index = bisect.bisect_left(self.mod_index, key)
        if index < len(self.mod_index) and self.mod_index[index] == key:
            del self.mod_index[index]
        email = rec["properties"].get("email")
        if email and self.by_email.get(email) == contact_id:
            del self.by_email[email]
        rec["archived"] = True
        rec["archived_at"] = self._now_ms()
        bisect.insort(self.archived_ids, contact_id)

    def _create_checked(self, raw: dict[str, Any] | None) -> dict[str, Any]:
        props = self._validate(raw)
        existing = self._email_owner(props)
        if existing is not None:
            raise HttpError(409, EXISTING_ID_MESSAGE.format(id=existing), category="CONFLICT")
        return self._insert(props)

    def _update_checked(self, rec: dict[str, Any], raw: dict[str, Any] | None) -> None:
        props = self._validate(raw)
        self._refuse_taken_email(rec, props)
        self._apply(rec, props)

    def _refuse_taken_email(self, rec: dict[str, Any], props: dict[str, str | None]) -> None:
        """An update setting an email another contact has: 400, not 409."""
        owner = self._email_owner(props)
        if owner is not None and owner != rec["id"]:
            raise HttpError(
                400,
                TAKEN_VALUE_MESSAGE.format(
                    portal=PORTAL_ID,
                    name="email",
                    value=props["email"],
                    target=rec["id"],
                    owner=owner,
                ),
                category="VALIDATION_ERROR",
            )

    # ------------------------------------------------------------------ OAuth + account

    @route("POST", r"/oauth/v1/token", auth=False)
    def oauth_token(self, request: Request) -> Response:
        response = self.token_endpoint(request)
        if response.status >= 400:
            body = response.body or {}
            refresh = body.get("error") == "invalid_grant" and "refresh" in str(
                body.get("error_description", "")
            )
            response.body = {
                "status": "BAD_REFRESH_TOKEN" if refresh else "BAD_AUTH_CODE",
                "message": "missing or unknown refresh token"
                if refresh
                else str(body.get("error_description") or body.get("error")),
                "correlationId": str(uuid.uuid4()),
            }
        return response

    @route("GET", r"/oauth/authorize", auth=False)
    def oauth_authorize(self, request: Request) -> Response:
        return self.authorize_page(request)

    @route(
        "GET",
        r"/oauth/v1/access-tokens/(?P<token>[^/]+)",
        auth=False,
        name="GET /oauth/v1/access-tokens/{token}",
    )
    def access_token_info(self, request: Request, token: str) -> Any:
        expires = self.tokens.get(token)
        if token not in self.static_tokens and (expires is None or expires < time.time()):
            raise HttpError(404, "The access token is expired or invalid", category="NOT_FOUND")
        granted = self.scopes_of(token)
        return {
            "token": token,
            "user": "sandbox.user@example.com",
            "hub_domain": "driftsync-sandbox.com",
            "scopes": sorted(FULL_SCOPES if granted is None else granted),
            "hub_id": PORTAL_ID,
            "app_id": 1_234_567,
            "expires_in": int(expires - time.time()) if expires else 0,
            "user_id": 7_654_321,
            "token_type": "access",
        }

    @route(
        "POST",
        r"/oauth/v2/private-apps/get/access-token-info",
        auth=False,
        name="POST /oauth/v2/private-apps/get/access-token-info",
    )
    def private_app_token_info(self, request: Request) -> Any:
        """A private app token's scopes (https://developers.hubspot.com/docs/api/private-apps,
        cited in HubSpot/hubspot-api-php#171)."""
        token = str((request.json() or {}).get("tokenKey") or "")
        if token not in self.static_tokens and self.tokens.get(token, 0) < time.time():
            raise HttpError(404, "The access token is expired or invalid", category="NOT_FOUND")
        granted = self.scopes_of(token)
        return {
            "userId": 7_654_321,
            "hubId": PORTAL_ID,
            "appId": 1_234_568,
            "scopes": sorted(FULL_SCOPES if granted is None else granted),
        }

    @route("GET", r"/account-info/v3/details")
    def account_details(self, request: Request) -> Any:
        return {
            "portalId": PORTAL_ID,
            "accountType": "STANDARD",
            "timeZone": "US/Eastern",
            "companyCurrency": "USD",
            "additionalCurrencies": [],
            "utcOffset": "-05:00",
            "utcOffsetMilliseconds": -18_000_000,
            "uiDomain": "app.hubspot.com",
            "dataHostingLocation": "na1",
        }

    # ------------------------------------------------------------------ objects

    @route("GET", CONTACTS, name="GET /crm/v3/objects/contacts", scopes=READ_CONTACTS)
    def list_contacts(self, request: Request) -> Any:
        limit = self._int(request.arg("limit"), 10)
        if not 1 <= limit <= MAX_LIST_LIMIT:
            raise _bad_request(f"limit must be between 1 and {MAX_LIST_LIMIT}, got {limit}")
        archived = (request.arg("archived") or "false").lower() == "true"
        ids = self.archived_ids if archived else self.live_ids
        after = request.arg("after")
        start = bisect.bisect_left(ids, self._int(after, 0)) if after else 0
        chosen = ids[start : start + limit]
        props = self._read_properties(request.args("properties"))
        body: dict[str, Any] = {"results": [self._view(self.records[i], props) for i in chosen]}
        if start + limit < len(ids):
            token = str(ids[start + limit])
            query = f"limit={limit}&after={token}" + ("&archived=true" if archived else "")
            body["paging"] = {
                "next": {"after": token, "link": f"{request.base_url}{CONTACTS}?{query}"}
            }
        return body

    @route(
        "GET",
        CONTACTS + r"/(?P<contact_id>[^/]+)",
        name="GET /crm/v3/objects/contacts/{id}",
        scopes=READ_CONTACTS,
    )
    def get_contact(self, request: Request, contact_id: str) -> Any:
        if contact_id in ("search", "batch"):
            raise HttpError(405, f"Method GET not allowed on {request.path}")
        rec = self._by_id_property(contact_id, request.arg("idProperty"))
        archived = (request.arg("archived") or "false").lower() == "true"
        if rec is None or rec["archived"] != archived:
            raise HttpError(404, "resource not found", category="OBJECT_NOT_FOUND")
        return self._view(rec, self._read_properties(request.args("properties")))

    @route("POST", CONTACTS, name="POST /crm/v3/objects/contacts", scopes=WRITE_CONTACTS)
    def create_contact(self, request: Request) -> Response:
        body = request.json() or {}
        rec = self._create_checked(body.get("properties"))
        return Response(201, self._view(rec))

    @route(
        "PATCH",
        CONTACTS + r"/(?P<contact_id>[^/]+)",
        name="PATCH /crm/v3/objects/contacts/{id}",
        scopes=WRITE_CONTACTS,
    )
    def update_contact(self, request: Request, contact_id: str) -> Any:
        rec = self._by_id_property(contact_id, request.arg("idProperty"))
        if rec is None or rec["archived"]:
            raise HttpError(404, "resource not found", category="OBJECT_NOT_FOUND")
        self._update_checked(rec, (request.json() or {}).get("properties"))
        return self._view(rec)

    @route(
        "DELETE",
        CONTACTS + r"/(?P<contact_id>[^/]+)",
        name="DELETE /crm/v3/objects/contacts/{id}",
        scopes=WRITE_CONTACTS,
    )
    def archive_contact(self, request: Request, contact_id: str) -> Response:
        rec = self.records.get(int(contact_id)) if contact_id.isdigit() else None
        if rec is not None:
            self._archive(rec)
        return Response(204, None)

    def _by_id_property(self, value: str, id_property: str | None) -> dict[str, Any] | None:
        if id_property and id_property != "hs_object_id":
            if id_property != "email":
                raise _bad_request(
                    f"Unable to perform update/upsert by non-unique 0-1 property {id_property}"
                )
            found = self.by_email.get(value.strip().lower())
            return self.records.get(found) if found is not None else None
        return self.records.get(int(value)) if value.isdigit() else None

    # ------------------------------------------------------------------ batch

    def _inputs(self, request: Request) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        body = request.json() or {}
        inputs = body.get("inputs")
        if not isinstance(inputs, list):
            raise _bad_request("Invalid input JSON: 'inputs' is required")
        if len(inputs) > MAX_BATCH:
            raise _bad_request(
                f"Batch input size {len(inputs)} exceeds the limit of {MAX_BATCH} inputs"
            )
        return body, inputs

    @staticmethod
    def _batch_body(
        results: list[dict[str, Any]], started: str, errors: list[dict[str, Any]]
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "status": "COMPLETE",
            "results": results,
            "startedAt": started,
            "completedAt": iso_ms(int(time.time() * 1000)),
        }
        if errors:
            body["numErrors"] = len(errors)
            body["errors"] = errors
        return body

    @staticmethod
    def _not_found_error(ids: list[str]) -> dict[str, Any]:
        return {
            "status": "error",
            "category": "OBJECT_NOT_FOUND",
            "message": "Could not get some CONTACT objects, they may be deleted or not exist. "
            "Check that ids are valid.",
            "context": {"ids": ids},
        }

    @route(
        "POST",
        CONTACTS + r"/batch/read",
        name="POST /crm/v3/objects/contacts/batch/read",
        scopes=READ_CONTACTS,
    )
    def batch_read(self, request: Request) -> Response:
        started = iso_ms(int(time.time() * 1000))
        body, inputs = self._inputs(request)
        id_property = body.get("idProperty")
        archived = bool(body.get("archived"))
        props = self._read_properties(list(body.get("properties") or []))
        results, missing = [], []
        for item in inputs:
            value = str((item or {}).get("id", ""))
            rec = self._by_id_property(value, id_property)
            if rec is None or rec["archived"] != archived:
                missing.append(value)
            else:
                results.append(self._view(rec, props))
        errors = [self._not_found_error(missing)] if missing else []
        return Response(207 if errors else 200, self._batch_body(results, started, errors))

    @route(
        "POST",
        CONTACTS + r"/batch/create",
        name="POST /crm/v3/objects/contacts/batch/create",
        scopes=WRITE_CONTACTS,
    )
    def batch_create(self, request: Request) -> Response:
        started = iso_ms(int(time.time() * 1000))
        _body, inputs = self._inputs(request)
        validated = [self._validate((item or {}).get("properties")) for item in inputs]
        seen: set[str] = set()
        for props in validated:
            existing = self._email_owner(props)
            if existing is not None:
                raise HttpError(409, EXISTING_ID_MESSAGE.format(id=existing), category="CONFLICT")
            email = props.get("email")
            if email:
                if email in seen:
                    raise _bad_request(f"Duplicate email found in batch input: {email}")
                seen.add(email)
        now = self._now_ms()
        results = [self._view(self._insert(props, now)) for props in validated]
        return Response(201, self._batch_body(results, started, []))

    @route(
        "POST",
        CONTACTS + r"/batch/update",
        name="POST /crm/v3/objects/contacts/batch/update",
        scopes=WRITE_CONTACTS,
    )
    def batch_update(self, request: Request) -> Response:
        started = iso_ms(int(time.time() * 1000))
        body, inputs = self._inputs(request)
        id_property = body.get("idProperty")
        ids = [str((item or {}).get("id", "")) for item in inputs]
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        if dupes:
            raise _bad_request(f"Duplicate IDs found in batch input: {dupes}")
        plan, missing = [], []
        for value, item in zip(ids, inputs):
            rec = self._by_id_property(value, id_property)
            if rec is None or rec["archived"]:
                missing.append(value)
                continue
            props = self._validate(item.get("properties"))
            self._refuse_taken_email(rec, props)
            plan.append((rec, props))
        results = []
        for rec, props in plan:
            self._apply(rec, props)
            results.append(self._view(rec))
        errors = [self._not_found_error(missing)] if missing else []
        return Response(207 if errors else 200, self._batch_body(results, started, errors))

    @route(
        "POST",
        CONTACTS + r"/batch/upsert",
        name="POST /crm/v3/objects/contacts/batch/upsert",
        scopes=WRITE_CONTACTS,
    )
    def batch_upsert(self, request: Request) -> Response:
        started = iso_ms(int(time.time() * 1000))
        _body, inputs = self._inputs(request)
        plan: list[tuple[dict[str, Any] | None, dict[str, str | None]]] = []
        for item in inputs:
            if (item or {}).get("idProperty") != "email":
                raise _bad_request("Upsert requires idProperty 'email' for contacts")
            email = str(item.get("id", "")).strip().lower()
            props = self._validate({**(item.get("properties") or {}), "email": email})
            found = self.by_email.get(email)
            plan.append((self.records[found] if found is not None else None, props))
        results = []
        for rec, props in plan:
            if rec is None:
                view = self._view(self._insert(props))
                view["new"] = True
            else:
                self._apply(rec, props)
                view = self._view(rec)
                view["new"] = False
            results.append(view)
        return Response(200, self._batch_body(results, started, []))

    @route(
        "POST",
        CONTACTS + r"/batch/archive",
        name="POST /crm/v3/objects/contacts/batch/archive",
        scopes=WRITE_CONTACTS,
    )
    def batch_archive(self, request: Request) -> Response:
        _body, inputs = self._inputs(request)
        for item in inputs:
            value = str((item or {}).get("id", ""))
            rec = self.records.get(int(value)) if value.isdigit() else None
            if rec is not None:
                self._archive(rec)
        return Response(204, None)

    # ------------------------------------------------------------------ search

    @route(
        "POST",
        CONTACTS + r"/search",
        name="POST /crm/v3/objects/contacts/search",
        scopes=READ_CONTACTS,
    )
    def search(self, request: Request) -> Any:
        body = request.json() or {}
        limit = self._int(body.get("limit"), 10)
        if not 1 <= limit <= MAX_SEARCH_LIMIT:
            raise _bad_request(f"limit must be between 1 and {MAX_SEARCH_LIMIT}, got {limit}")
        after = self._int(body.get("after"), 0)
        if after >= SEARCH_RESULT_CAP:
            raise _bad_request(
                f"The search API returns at most {SEARCH_RESULT_CAP} results for a query; "
                f"after={after} is beyond it. Narrow the filters to read further."
            )
        groups = body.get("filterGroups") or []
        if len(groups) > 5 or sum(len(g.get("filters") or []) for g in groups) > 25:
            raise _bad_request("Too many filter groups or filters (at most 5 groups, 25 filters)")
        for group in groups:
            for flt in group.get("filters") or []:
                if flt.get("propertyName") not in self.properties:
                    raise _bad_request(f'Property "{flt.get("propertyName")}" does not exist')
        sorts = self._sorts(body.get("sorts") or [])
        end = min(after + limit, SEARCH_RESULT_CAP)
        since = self._modified_since(groups, str(body.get("query") or ""), sorts)
        if since is not None:
            # the incremental read's own query, answered from the index in O(page)
            start = bisect.bisect_left(self.mod_index, (since, -1))
            total = len(self.mod_index) - start
            chosen = [self.records[cid] for _, cid in self.mod_index[start + after : start + end]]
        else:
            ordered, matches = self._matches(groups, str(body.get("query") or ""), sorts)
            if not ordered:
                matches.sort(key=lambda rec: self._sort_key(rec, sorts), reverse=sorts[0][1])
            total = len(matches)
            chosen = matches[after:end]
        props = self._read_properties(list(body.get("properties") or []))
        out: dict[str, Any] = {"total": total, "results": [self._view(r, props) for r in chosen]}
        if end < total:
            out["paging"] = {"next": {"after": str(end)}}
        return out

    @staticmethod
    def _modified_since(
        groups: list[dict[str, Any]], query: str, sorts: list[tuple[str, bool]]
    ) -> int | None:
        """The bound of a lone ``lastmodifieddate GTE`` filter sorted by it."""
        if query or len(groups) != 1 or sorts[0] != ("lastmodifieddate", False):
            return None
        filters = groups[0].get("filters") or []
        if len(filters) != 1:
            return None
        (flt,) = filters
        if flt.get("propertyName") != "lastmodifieddate" or flt.get("operator") != "GTE":
            return None
        return parse_ms(flt.get("value"))

    def _sorts(self, raw: list[Any]) -> list[tuple[str, bool]]:
        sorts: list[tuple[str, bool]] = []
        for item in raw:
            if isinstance(item, str):
                name, desc = item.lstrip("-"), item.startswith("-")
            else:
                name = item.get("propertyName", "")
                desc = str(item.get("direction", "ASCENDING")).upper() == "DESCENDING"
            if name not in self.properties:
                raise _bad_request(f'Property "{name}" does not exist')
            sorts.append((name, desc))
        return sorts[:1] or [("hs_object_id", False)]

    def _sort_key(self, rec: dict[str, Any], sorts: list[tuple[str, bool]]) -> Any:
        name = sorts[0][0]
        value = self._typed(name, rec["properties"].get(name))
        # rows without a value compare among themselves only (first item differs)
        return (1, 0, rec["id"]) if value is None else (0, value, rec["id"])

    def _typed(self, name: str, value: Any) -> Any:
        if value is None or value == "":
            return None
        kind = self.properties[name]["type"] if name in self.properties else "string"
        if kind == "number":
            try:
                return float(value)
            except ValueError:
                return None
        if kind in ("datetime", "date"):
            return parse_ms(value)
        return str(value).casefold()

    def _candidates(self, group: list[dict[str, Any]]) -> tuple[bool, Iterable[int]]:
        """Ids to test for one filter group, from the best index; and whether
        they come ordered by (lastmodifieddate, id)."""
        for flt in group:
            name, op = flt.get("propertyName"), str(flt.get("operator", "EQ")).upper()
            if name == "lastmodifieddate" and op in ("GT", "GTE", "EQ", "BETWEEN"):
                low = parse_ms(flt.get("value")) or 0
                start = bisect.bisect_left(self.mod_index, (low, -1))
                return True, (cid for _, cid in self.mod_index[start:])
            if name == "email" and op in ("EQ", "IN"):
                values = flt.get("values") if op == "IN" else [flt.get("value")]
                found = (self.by_email.get(str(v).strip().lower()) for v in values or [])
                return False, sorted({cid for cid in found if cid is not None})
            if name == "hs_object_id" and op in ("EQ", "IN"):
                values = flt.get("values") if op == "IN" else [flt.get("value")]
                ids = {int(v) for v in values or [] if str(v).isdigit()}
                return False, sorted(i for i in ids if i in self.records)
            if name == "hs_object_id" and op in ("GT", "GTE"):
                low = self._int(flt.get("value"), 0)
                start = bisect.bisect_left(self.live_ids, low + (1 if op == "GT" else 0))
                return False, self.live_ids[start:]
        return False, list(self.live_ids)

    def _matches(
        self, groups: list[dict[str, Any]], query: str, sorts: list[tuple[str, bool]]
    ) -> tuple[bool, list[dict[str, Any]]]:
        if not groups:
            groups = [{"filters": []}]
        found: dict[int, dict[str, Any]] = {}
        ordered = len(groups) == 1 and sorts[0] == ("lastmodifieddate", False)
        for group in groups:
            filters = group.get("filters") or []
            by_mod, ids = self._candidates(filters)
            ordered = ordered and by_mod
            for cid in ids:
                rec = self.records[cid]
                if rec["archived"] or cid in found:
                    continue
                if all(self._test(rec, f) for f in filters) and self._query(rec, query):
                    found[cid] = rec
        return ordered, list(found.values())

    @staticmethod
    def _query(rec: dict[str, Any], query: str) -> bool:
        if not query:
            return True
        needle = query.casefold()
        props = rec["properties"]
        return any(
            needle in (props.get(k) or "").casefold()
            for k in ("email", "firstname", "lastname", "phone", "company", "website")
        )

    def _test(self, rec: dict[str, Any], flt: dict[str, Any]) -> bool:
        name = flt.get("propertyName", "")
        op = str(flt.get("operator", "EQ")).upper()
        raw = rec["properties"].get(name)
        if op == "HAS_PROPERTY":
            return raw not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return raw in (None, "")
        value = self._typed(name, raw)
        if op in ("IN", "NOT_IN"):
            wanted = {self._typed(name, v) for v in flt.get("values") or []}
            inside = value is not None and value in wanted
            if value is not None and self.properties[name]["fieldType"] == "checkbox":
                inside = bool(wanted & {self._typed(name, v) for v in str(raw).split(";")})
            return inside if op == "IN" else not inside
        if op in ("CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"):
            token = str(flt.get("value", "")).casefold().strip("*")
            inside = value is not None and token in str(value)
            return inside if op == "CONTAINS_TOKEN" else not inside
        target = self._typed(name, flt.get("value"))
        if op == "NEQ":
            return value != target
        if value is None or target is None:
            return False
        if op == "EQ":
            return value == target
        if op == "BETWEEN":
            high = self._typed(name, flt.get("highValue"))
            return high is not None and target <= value <= high
        compare = {
            "GT": value > target,
            "GTE": value >= target,
            "LT": value < target,
            "LTE": value <= target,
        }
        if op not in compare:
            raise _bad_request(f"Unsupported filter operator {op}")
        return compare[op]

    @staticmethod
    def _int(value: Any, default: int) -> int:
        if value in (None, ""):
            return default
        try:
            return int(str(value))
        except ValueError as exc:
            raise _bad_request(f"{value!r} is not a valid integer") from exc

    # ------------------------------------------------------------------ properties

    @route("GET", PROPERTIES, name="GET /crm/v3/properties/contacts", scopes=READ_SCHEMA)
    def list_properties(self, request: Request) -> Any:
        return {"results": list(self.properties.values())}

    @route(
        "GET",
        PROPERTIES + r"/(?P<prop>[^/]+)",
        name="GET /crm/v3/properties/contacts/{name}",
        scopes=READ_SCHEMA,
    )
    def get_property(self, request: Request, prop: str) -> Any:
        if prop not in self.properties:
            raise HttpError(404, f"Property {prop} does not exist", category="OBJECT_NOT_FOUND")
        return self.properties[prop]

    @route("POST", PROPERTIES, name="POST /crm/v3/properties/contacts", scopes=WRITE_SCHEMA)
    def create_property(self, request: Request) -> Response:
        body = request.json() or {}
        missing = [
            k for k in ("name", "label", "type", "fieldType", "groupName") if not body.get(k)
        ]
        if missing:
            raise _bad_request(f"Missing required fields: {', '.join(missing)}")
        name = str(body["name"])
        if not re.fullmatch(r"[a-z][a-z0-9_]*", name):
            raise _bad_request(f"Property name {name!r} must be lower case letters, digits and _")
        if name in self.properties:
            raise HttpError(
                409, f"A property named '{name}' already exists.", category="OBJECT_ALREADY_EXISTS"
            )
        prop = self._property_from(body)
        self.properties[name] = prop
        return Response(201, prop)

    @route(
        "PATCH",
        PROPERTIES + r"/(?P<prop>[^/]+)",
        name="PATCH /crm/v3/properties/contacts/{name}",
        scopes=WRITE_SCHEMA,
    )
    def update_property(self, request: Request, prop: str) -> Any:
        current = self.properties.get(prop)
        if current is None:
            raise HttpError(404, f"Property {prop} does not exist", category="OBJECT_NOT_FOUND")
        body = request.json() or {}
        merged = {**current, **{k: v for k, v in body.items() if k != "name"}}
        updated = self._property_from(merged, hubspot_defined=bool(current.get("hubspotDefined")))
        updated["createdAt"] = current["createdAt"]
        self.properties[prop] = updated
        return updated

    @route(
        "DELETE",
        PROPERTIES + r"/(?P<prop>[^/]+)",
        name="DELETE /crm/v3/properties/contacts/{name}",
        scopes=WRITE_SCHEMA,
    )
    def archive_property(self, request: Request, prop: str) -> Response:
        current = self.properties.get(prop)
        if current is None:
            raise HttpError(404, f"Property {prop} does not exist", category="OBJECT_NOT_FOUND")
        if current.get("hubspotDefined"):
            raise _bad_request(f"HubSpot-defined property {prop} cannot be archived")
        del self.properties[prop]
        return Response(204, None)

    def _property_from(self, body: dict[str, Any], hubspot_defined: bool = False) -> dict[str, Any]:
        kind, field_type = str(body["type"]), str(body["fieldType"])
        valid = {
            "string": {"text", "textarea", "phonenumber", "file", "html"},
            "number": {"number"},
            "bool": {"booleancheckbox"},
            "date": {"date"},
            "datetime": {"date"},
            "enumeration": {
                "select",
                "radio",
                "checkbox",
                "booleancheckbox",
                "calculation_equation",
            },
        }
        if kind not in valid:
            raise _bad_request(f"Unknown property type {kind}")
        if field_type not in valid[kind]:
            raise _bad_request(f"fieldType {field_type} is not valid for type {kind}")
        options: list[tuple[str, str]] = []
        seen: set[str] = set()
        for raw in body.get("options") or []:
            value, label = str(raw.get("value", "")), str(raw.get("label", ""))
            if not value or not label:
                raise _bad_request("Each option needs a label and a value")
            if value in seen:
                raise _bad_request(f"Duplicate option value {value}")
            seen.add(value)
            options.append((value, label))
        if kind == "enumeration" and not options and field_type != "booleancheckbox":
            raise _bad_request("Enumeration properties need at least one option")
        prop = property_definition(
            str(body["name"]),
            str(body["label"]),
            kind,
            field_type,
            group=str(body.get("groupName") or "contactinformation"),
            options=options,
            hubspot_defined=hubspot_defined,
            calculated=bool(body.get("calculated")) and hubspot_defined,
            read_only=bool((body.get("modificationMetadata") or {}).get("readOnlyValue"))
            and hubspot_defined,
            hidden=bool(body.get("hidden")),
            unique=bool(body.get("hasUniqueValue")),
        )
        prop["description"] = str(body.get("description") or "")
        return prop

    # ------------------------------------------------------------------ control API

    def _ensure_tag_options(self, tags: Iterable[str]) -> None:
        prop = self.properties.get(DEFAULT_TAGS_PROPERTY)
        if prop is None:
            prop = property_definition(
                DEFAULT_TAGS_PROPERTY,
                "DriftSync tags",
                "enumeration",
                "checkbox",
                hubspot_defined=False,
            )
            self.properties[DEFAULT_TAGS_PROPERTY] = prop
        known = {o["value"] for o in prop["options"]}
        for tag in tags:
            if tag not in known:
                prop["options"].append(_option(tag, tag, len(prop["options"])))
                known.add(tag)

    def _person_props(self, person: dict[str, Any]) -> dict[str, str | None]:
        raw: dict[str, Any] = {}
        for key, prop in PERSON_KEYS.items():
            if key in person:
                raw[prop] = person[key]
        for key, value in (person.get("custom") or {}).items():
            if key not in self.properties:
                # a person adds the property in settings before filling it in
                self.properties[key] = property_definition(
                    key, key.replace("_", " ").title(), hubspot_defined=False
                )
            raw[key] = value
        if "tags" in person:
            tags = [str(t) for t in person.get("tags") or []]
            self._ensure_tag_options(tags)
            raw[DEFAULT_TAGS_PROPERTY] = ";".join(sorted(set(tags))) or None
        return self._validate(raw, for_ui=True)

    def _person_create(self, person: dict[str, Any], now: int | None = None) -> dict[str, Any]:
        props = self._person_props(person)
        existing = self._email_owner(props)
        if existing is not None:
            raise HttpError(409, EXISTING_ID_MESSAGE.format(id=existing), category="CONFLICT")
        return self._insert(props, now)

    def _control_record(self, contact_id: str) -> dict[str, Any]:
        rec = self.records.get(int(contact_id)) if contact_id.isdigit() else None
        if rec is None:
            raise HttpError(404, f"No contact {contact_id}", category="OBJECT_NOT_FOUND")
        return rec

    @route("POST", r"/_sandbox/contacts", auth=False)
    def _control_create(self, request: Request) -> Any:
        rec = self._person_create(request.json() or {})
        return {"id": str(rec["id"])}

    @route("POST", r"/_sandbox/contacts/bulk", auth=False)
    def _control_bulk(self, request: Request) -> Any:
        people = (request.json() or {}).get("contacts") or []
        return {"ids": [str(self._person_create(p)["id"]) for p in people]}

    @route("GET", r"/_sandbox/contacts", auth=False)
    def _control_list(self, request: Request) -> Any:
        return {"contacts": [self._view(self.records[i]) for i in self.live_ids]}

    @route("GET", r"/_sandbox/contacts/(?P<contact_id>[^/]+)", auth=False)
    def _control_get(self, request: Request, contact_id: str) -> Any:
        return self._view(self._control_record(contact_id))

    @route("PATCH", r"/_sandbox/contacts/(?P<contact_id>[^/]+)", auth=False)
    def _control_patch(self, request: Request, contact_id: str) -> Any:
        rec = self._control_record(contact_id)
        if rec["archived"]:
            raise HttpError(404, f"Contact {contact_id} is archived", category="OBJECT_NOT_FOUND")
        props = self._person_props(request.json() or {})
        owner = self._email_owner(props)
        if owner is not None and owner != rec["id"]:
            raise HttpError(409, EXISTING_ID_MESSAGE.format(id=owner), category="CONFLICT")
        self._apply(rec, props)
        return self._view(rec)

    @route("DELETE", r"/_sandbox/contacts/(?P<contact_id>[^/]+)", auth=False)
    def _control_delete(self, request: Request, contact_id: str) -> Any:
        self._archive(self._control_record(contact_id))
        return {}

    @route("POST", r"/_sandbox/contacts/(?P<contact_id>[^/]+)/unsubscribe", auth=False)
    def _control_unsubscribe(self, request: Request, contact_id: str) -> Any:
        self._control_record(contact_id)
        raise _bad_request(
            "HubSpot contacts have no unsubscribe status on the record: email subscriptions "
            "live in the communication preferences API, which driftsync does not read."
        )

    @route("POST", r"/_sandbox/contacts/(?P<contact_id>[^/]+)/tags", auth=False)
    def _control_tags(self, request: Request, contact_id: str) -> Any:
        rec = self._control_record(contact_id)
        body = request.json() or {}
        add = [str(t) for t in body.get("add") or []]
        remove = {str(t) for t in body.get("remove") or []}
        self._ensure_tag_options(add)
        current = set(filter(None, (rec["properties"].get(DEFAULT_TAGS_PROPERTY) or "").split(";")))
        tags = (current | set(add)) - remove
        self._apply(rec, {DEFAULT_TAGS_PROPERTY: ";".join(sorted(tags)) or None})
        return self._view(rec)


FACTS = SandboxFacts(
    app=HubSpotSandbox,
    api_root="",
    unknown_id="999999999",
    create_route="POST /crm/v3/objects/contacts/batch/create",
    update_route="POST /crm/v3/objects/contacts/batch/update",
    update_batched=True,
    refused_write=ContactWrite(None, "not-an-email", {"email": "not-an-email"}, ref=0),
    refused_message="invalid",
)
