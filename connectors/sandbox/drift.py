"""A stateful fake of Drift's contacts API (``https://driftapi.com``).

Contacts are found by id, by email (a list: Drift lets several contacts share
an email) and by external id; there is no endpoint that lists them.

Tags: Drift "replaced contact tags with attributes" and one can "no longer
apply those tags to a contact's profile" (https://devdocs.drift.com/docs/contact-model).
So by default an org here keeps a person's tags in the ``driftsync_tags`` text
attribute (what a Playbook setting an attribute does), and the legacy tag
endpoint refuses any tag name the org has not defined in its settings: 400,
CONTACT-9 "a provided tag name didn't map to a known tag id"
(https://devdocs.drift.com/docs/contact-errors). ``POST /_sandbox/org`` with
``legacy_tags: true`` makes an org that still uses tags; ``POST /_sandbox/tags``
defines tag names in its settings.

Null values: the contact model documents custom attributes as "a key and a
non-null value" and says nothing of null; this fake takes the strict reading
and refuses a null attribute value on the API (400, CONTACT-11). An empty
string is stored as an empty value. Person
actions on the control API fire the webhooks Drift would send:
``contact_identified`` (a visitor gives an email in chat), ``contact_updated``
(with a ``diff``) and ``user_unsubscribed``.
"""

from __future__ import annotations

import time
import urllib.parse
from typing import Any, ClassVar

from connectors.base import ContactWrite

from .base import HttpError, Request, Response, SandboxApp, route
from .facts import SandboxFacts

DEFAULT_ORG_ID = 1234

#: attributes every org has, as ``GET /contacts/attributes`` lists them
STANDARD_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("email", "Email", "STRING"),
    ("name", "Name", "STRING"),
    ("phone", "Phone", "STRING"),
    ("company", "Company", "STRING"),
    ("title", "Title", "STRING"),
    ("externalId", "External ID", "STRING"),
    ("start_date", "Start Date", "DATETIME"),
    ("lead_stage", "Lead Stage", "STRING"),
    ("cql", "CQL Score", "NUMERIC"),
)

#: custom attributes a freshly seeded org of the sandbox has
SEED_CUSTOM_ATTRIBUTES: tuple[tuple[str, str, str], ...] = (
    ("industry", "Industry", "STRING"),
    ("employees", "Employees", "NUMERIC"),
    ("is_customer", "Is Customer", "BOOLEAN"),
    ("renewal_date", "Renewal Date", "DATE"),
    ("last_demo_at", "Last Demo At", "DATETIME"),
)

#: attributes a PATCH cannot set (Drift keeps them itself or via other endpoints)
MANAGED_ATTRIBUTES = frozenset(
    {
        "tags",
        "socialProfiles",
        "events",
        "start_date",
        "_END_USER_VERSION",
        "_end_user_version",
        "_calculated_version",
    }
)

SCOPES = "contact_read contact_write all_contact_read conversation_read"

#: the text attribute a person's tags live in (the connector's default too)
TAGS_ATTRIBUTE = "driftsync_tags"


def _now_ms() -> int:
    return int(time.time() * 1000)


def _fold(email: Any) -> str:
    return str(email or "").strip().casefold()


def _infer_type(value: Any) -> str:
    if isinstance(value, bool):
        return "BOOLEAN"
    if isinstance(value, int | float):
        return "NUMERIC"
    return "STRING"


class DriftSandbox(SandboxApp):
    name = "drift"
    # Drift documents a 429 but no window we could confirm: the conservative
    # 50 per 10 s the client assumes (connectors/pacing.py), no Retry-After
    config_defaults: ClassVar[dict[str, Any]] = {"rate_limit": 50, "rate_window": 10.0}

    def reset(self) -> None:
        self.org_id = DEFAULT_ORG_ID
        #: shape of token answers: Drift's keys are unconfirmed, clients must take both
        self.token_keys = "snake"
        self.org_in_token = True
        #: an org that still applies legacy tags to profiles (most no longer can)
        self.legacy_tags = False
        #: tag names defined in the org's settings: the only ones the tag endpoint takes
        self.org_tags: set[str] = set()
        self.contacts: dict[int, dict[str, Any]] = {}
        self.by_email: dict[str, list[int]] = {}
        self.by_external: dict[str, int] = {}
        self.unsubscribed: set[int] = set()
        self.webhooks: list[dict[str, str]] = []
        self.next_id = 16344778575
        self.attributes: dict[str, dict[str, str]] = {
            name: {"name": name, "displayName": label, "type": kind}
            for name, label, kind in STANDARD_ATTRIBUTES + SEED_CUSTOM_ATTRIBUTES
        }

    def error(self, status: int, message: str, **extra: Any) -> Response:
        kind = {
            400: "bad_request",
            401: "authentication_error",
            403: "forbidden",
            404: "not_found",
            405: "method_not_allowed",
            409: "conflict",
            429: "rate_limit_exceeded",
        }.get(status, "server_error" if status >= 500 else "error")
        error: dict[str, Any] = {"type": extra.get("type", kind), "message": message}
        if extra.get("code"):
            # Drift's documented contact error codes (CONTACT-1 ... CONTACT-11)
            error["code"] = extra["code"]
        return Response(status, {"error": error})

    # -- state helpers ---------------------------------------------------

    def _get(self, contact_id: str) -> dict[str, Any]:
        try:
            contact = self.contacts.get(int(contact_id))
        except ValueError:
            contact = None
        if contact is None:
            raise HttpError(404, f"Contact {contact_id} not found")
        return contact

    def _index_email(self, contact_id: int, old: Any, new: Any) -> None:
        if _fold(old) == _fold(new):
            return
        if _fold(old):
            ids = self.by_email.get(_fold(old), [])
            if contact_id in ids:
                ids.remove(contact_id)
            if not ids:
                self.by_email.pop(_fold(old), None)
        if _fold(new):
            self.by_email.setdefault(_fold(new), []).append(contact_id)

    def _bump(self, contact: dict[str, Any]) -> None:
        attrs = contact["attributes"]
        version = int(attrs.get("_END_USER_VERSION", 0)) + 1
        attrs["_END_USER_VERSION"] = attrs["_end_user_version"] = version
        attrs["_calculated_version"] = version

    def _learn_attribute(self, name: str, value: Any) -> None:
        if name not in self.attributes and value is not None:
            self.attributes[name] = {"name": name, "displayName": name, "type": _infer_type(value)}

    def _create(self, attributes: dict[str, Any], *, check_conflict: bool = True) -> dict[str, Any]:
        email = attributes.get("email")
        external = attributes.get("externalId")
        if not _fold(email) and not external:
            raise HttpError(400, "A contact needs an email or an externalId")
        if external and str(external) in self.by_external:
            raise HttpError(409, f"A contact with externalId {external} already exists")
        if check_conflict and not external and self.by_email.get(_fold(email)):
            raise HttpError(409, f"A contact with email {email} already exists")
        contact_id = self.next_id
        self.next_id += 1
        created = _now_ms()
        attrs: dict[str, Any] = {
            "socialProfiles": {},
            "events": {},
            "tags": [],
            "start_date": created,
        }
        for key, value in attributes.items():
            if key in MANAGED_ATTRIBUTES or value is None:
                continue
            self._learn_attribute(key, value)
            attrs[key] = value
        contact = {"id": contact_id, "createdAt": created, "attributes": attrs}
        self._bump(contact)
        self.contacts[contact_id] = contact
        self._index_email(contact_id, None, email)
        if external:
            self.by_external[str(external)] = contact_id
        return contact

    def _patch(self, contact: dict[str, Any], attributes: dict[str, Any]) -> list[dict[str, Any]]:
        """Apply only the keys sent; returns Drift's ``diff`` of what changed."""
        attrs = contact["attributes"]
        diff: list[dict[str, Any]] = []
        for key, value in attributes.items():
            if key in MANAGED_ATTRIBUTES:
                continue
            previous = attrs.get(key)
            if previous == value:
                continue
            if key == "email":
                self._index_email(contact["id"], previous, value)
            if key == "externalId":
                if previous is not None:
                    self.by_external.pop(str(previous), None)
                if value is not None:
                    if self.by_external.get(str(value), contact["id"]) != contact["id"]:
                        raise HttpError(409, f"A contact with externalId {value} already exists")
                    self.by_external[str(value)] = contact["id"]
            self._learn_attribute(key, value)
            if value is None:
                attrs.pop(key, None)
            else:
                attrs[key] = value
            diff.append({"name": f"attributes.{key}", "previous": previous, "updated": value})
        if diff:
            self._bump(contact)
        return diff

    def _tag(self, contact: dict[str, Any], add: list[str], remove: list[str]) -> list[Any]:
        attrs = contact["attributes"]
        before = [dict(t) for t in attrs.get("tags", [])]
        tags = [t for t in before if t["name"] not in set(remove)]
        have = {t["name"] for t in tags}
        for name in add:
            if name and name not in have:
                tags.append({"name": name, "color": "#3D4A5C"})
                have.add(name)
        if tags != before:
            attrs["tags"] = tags
            self._bump(contact)
            return [{"name": "attributes.tags", "previous": before, "updated": tags}]
        return []

    def _person_tags(
        self, contact: dict[str, Any], add: list[str], remove: list[str]
    ) -> list[dict[str, Any]]:
        """A person tags a contact: legacy tags where the org still has them,
        else the tags attribute (as a Playbook setting an attribute would)."""
        if self.legacy_tags:
            self.org_tags.update(t for t in add if t)
            return self._tag(contact, add, remove)
        raw = str(contact["attributes"].get(TAGS_ATTRIBUTE) or "")
        have = [t.strip() for t in raw.split(",") if t.strip()]
        wanted = [t for t in have if t not in set(remove)]
        wanted += [t for t in dict.fromkeys(add) if t and t not in wanted]
        value = ", ".join(sorted(wanted))
        if value == raw:
            return []
        return self._patch(contact, {TAGS_ATTRIBUTE: value})

    @staticmethod
    def _refuse_nulls(attributes: dict[str, Any]) -> None:
        nulls = sorted(k for k, v in attributes.items() if v is None)
        if nulls:
            raise HttpError(
                400,
                f"Attribute {nulls[0]!r} has a null value: attributes take a key and a "
                "non-null value",
                code="CONTACT-11",
            )

    def _delete(self, contact_id: int) -> None:
        contact = self.contacts.pop(contact_id)
        self._index_email(contact_id, contact["attributes"].get("email"), None)
        external = contact["attributes"].get("externalId")
        if external is not None:
            self.by_external.pop(str(external), None)
        self.unsubscribed.discard(contact_id)

    def _fire(self, kind: str, data: dict[str, Any]) -> None:
        for hook in self.webhooks:
            body = {
                "type": kind,
                "token": hook["token"],
                "orgId": self.org_id,
                "createdAt": _now_ms(),
                "data": data,
            }
            self.deliver(
                hook["url"], json_body=body, headers={"X-Verification-Token": hook["token"]}
            )

    @staticmethod
    def _person_attributes(person: dict[str, Any], *, partial: bool = False) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key in ("email", "phone", "company", "title"):
            if key in person or not partial:
                out[key] = person.get(key)
        if "first_name" in person or "last_name" in person or "name" in person:
            name = person.get("name") or " ".join(
                p for p in (person.get("first_name"), person.get("last_name")) if p
            )
            out["name"] = name or None
        out.update(person.get("custom") or {})
        if not partial:
            out = {k: v for k, v in out.items() if v is not None}
        return out

    # -- OAuth -------------------------------------------------------------

    @route("POST", r"/oauth2/token", auth=False, name="POST /oauth2/token")
    def oauth_token(self, request: Request) -> Response:
        response = self.token_endpoint(request)
        if response.status == 200:
            body = dict(response.body)
            if self.org_in_token:
                body["orgId"] = self.org_id
            if self.token_keys == "camel":
                renames = {
                    "access_token": "accessToken",
                    "refresh_token": "refreshToken",
                    "expires_in": "expiresIn",
                    "token_type": "tokenType",
                }
                body = {renames.get(k, k): v for k, v in body.items()}
            response.body = body
        return response

    @route("GET", r"/authorize", auth=False, name="GET /authorize")
    def authorize(self, request: Request) -> Response:
        return self.authorize_page(request)

    @route("POST", r"/app/token_info", auth=False, name="POST /app/token_info")
    def token_info(self, request: Request) -> Any:
        body = request.json() or {}
        token = str(body.get("access_token") or "")
        if not token:
            raise HttpError(400, "access_token is required")
        valid = token in self.static_tokens or self.tokens.get(token, 0) > time.time()
        if not valid:
            raise HttpError(401, "Invalid or expired access token")
        return {
            "orgId": self.org_id,
            "authenticated_userid": f"orgId:{self.org_id}",
            "scope": SCOPES,
            "expires_in": max(0, int(self.tokens.get(token, time.time()) - time.time())),
            "token_type": "bearer",
        }

    # -- contacts API --------------------------------------------------------

    @route("GET", r"/contacts/attributes", name="GET /contacts/attributes")
    def list_attributes(self, request: Request) -> Any:
        return {"data": {"properties": [dict(a) for a in self.attributes.values()]}}

    @route("GET", r"/contacts/(?P<contact_id>\d+)", name="GET /contacts/{id}")
    def get_contact(self, request: Request, contact_id: str) -> Any:
        return {"data": self._get(contact_id)}

    @route("GET", r"/contacts", name="GET /contacts")
    def find_contacts(self, request: Request) -> Any:
        limit = int(request.arg("limit") or 10)
        if request.arg("idType") == "external":
            external = request.arg("id") or ""
            found = self.by_external.get(external)
            return {"data": [self.contacts[found]] if found is not None else []}
        email = request.arg("email")
        if not email:
            raise HttpError(400, "Query by email (email=) or external id (idType=external&id=)")
        ids = self.by_email.get(_fold(email), [])
        # newest first, as a search index would rank them
        return {"data": [self.contacts[i] for i in reversed(ids)][:limit]}

    @route("POST", r"/contacts", name="POST /contacts")
    def create_contact(self, request: Request) -> Any:
        body = request.json() or {}
        attributes = body.get("attributes")
        if not isinstance(attributes, dict):
            raise HttpError(400, 'Request body must be {"attributes": {...}}', code="CONTACT-4")
        self._refuse_nulls(attributes)
        return {"data": self._create(attributes)}

    @route("PATCH", r"/contacts/(?P<contact_id>\d+)", name="PATCH /contacts/{id}")
    def update_contact(self, request: Request, contact_id: str) -> Any:
        contact = self._get(contact_id)
        body = request.json() or {}
        attributes = body.get("attributes")
        if not isinstance(attributes, dict):
            raise HttpError(400, 'Request body must be {"attributes": {...}}', code="CONTACT-4")
        self._refuse_nulls(attributes)
        self._patch(contact, attributes)
        return {"data": contact}

    @route("DELETE", r"/contacts/(?P<contact_id>\d+)", name="DELETE /contacts/{id}")
    def delete_contact(self, request: Request, contact_id: str) -> Response:
        contact = self._get(contact_id)
        self._delete(contact["id"])
        return Response(202, None)

    @route("POST", r"/contacts/(?P<contact_id>\d+)/tags", name="POST /contacts/{id}/tags")
    def add_tags(self, request: Request, contact_id: str) -> Any:
        contact = self._get(contact_id)
        body = request.json()
        if not isinstance(body, list) or not all(isinstance(t, dict) for t in body):
            raise HttpError(400, 'Tags must be a list of {"name": ...} objects', code="CONTACT-9")
        names = [str(t.get("name") or "") for t in body]
        unknown = [n for n in names if n not in self.org_tags]
        if unknown:
            raise HttpError(
                400,
                f"Bad format of contact tags: tag {unknown[0]!r} does not map to a known tag id",
                code="CONTACT-9",
            )
        self._tag(contact, names, [])
        return {"data": contact}

    @route(
        "POST",
        r"/contacts/(?P<contact_id>\d+)/tags/delete/_bulk",
        name="POST /contacts/{id}/tags/delete/_bulk",
    )
    def remove_tags_bulk(self, request: Request, contact_id: str) -> Any:
        contact = self._get(contact_id)
        body = request.json()
        if not isinstance(body, list) or not all(isinstance(t, str) for t in body):
            raise HttpError(400, "Tag names must be a list of strings")
        self._tag(contact, [], body)
        return {"data": contact}

    @route(
        "DELETE",
        r"/contacts/(?P<contact_id>\d+)/tags/(?P<tag>[^/]+)",
        name="DELETE /contacts/{id}/tags/{name}",
    )
    def remove_tag(self, request: Request, contact_id: str, tag: str) -> Any:
        contact = self._get(contact_id)
        self._tag(contact, [], [urllib.parse.unquote(tag)])
        return {"data": contact}

    # -- control API ---------------------------------------------------------

    @route("POST", r"/_sandbox/org", auth=False)
    def _set_org(self, request: Request) -> Any:
        """The org's id, and how its token answers look (``token_keys``:
        "snake" or "camel"; ``org_in_token``: whether they carry ``orgId``)."""
        body = request.json() or {}
        self.org_id = int(body.get("org_id", self.org_id))
        self.token_keys = str(body.get("token_keys", self.token_keys))
        self.org_in_token = bool(body.get("org_in_token", self.org_in_token))
        self.legacy_tags = bool(body.get("legacy_tags", self.legacy_tags))
        return {
            "org_id": self.org_id,
            "token_keys": self.token_keys,
            "org_in_token": self.org_in_token,
            "legacy_tags": self.legacy_tags,
        }

    @route("POST", r"/_sandbox/attributes", auth=False)
    def _define_attribute(self, request: Request) -> Any:
        """A person adds a custom attribute in Drift's settings."""
        body = request.json() or {}
        name = str(body.get("name") or "")
        if not name:
            raise HttpError(400, "name is required")
        self.attributes[name] = {
            "name": name,
            "displayName": str(body.get("displayName") or name),
            "type": str(body.get("type") or "STRING"),
        }
        return self.attributes[name]

    @route("POST", r"/_sandbox/tags", auth=False)
    def _define_tags(self, request: Request) -> Any:
        """A person defines tag names in the org's settings."""
        body = request.json() or {}
        self.org_tags.update(str(n) for n in body.get("names") or [] if n)
        return {"names": sorted(self.org_tags)}

    @route("POST", r"/_sandbox/webhooks", auth=False)
    def _register_webhook(self, request: Request) -> Any:
        body = request.json() or {}
        if not body.get("url"):
            raise HttpError(400, "url is required")
        hook = {"url": str(body["url"]), "token": str(body.get("token") or "")}
        self.webhooks = [h for h in self.webhooks if h["url"] != hook["url"]] + [hook]
        return {"webhooks": list(self.webhooks)}

    @route("POST", r"/_sandbox/contacts/bulk", auth=False)
    def _bulk_create(self, request: Request) -> Any:
        body = request.json() or {}
        ids = []
        for person in body.get("contacts") or []:
            contact = self._create(self._person_attributes(person), check_conflict=False)
            self._seed_tags(contact, person)
            ids.append(str(contact["id"]))
        return {"ids": ids}

    def _seed_tags(self, contact: dict[str, Any], person: dict[str, Any]) -> None:
        if not person.get("tags"):
            return
        tags = [str(t) for t in dict.fromkeys(person["tags"])]
        if self.legacy_tags:
            self.org_tags.update(tags)
            contact["attributes"]["tags"] = [{"name": t, "color": "#3D4A5C"} for t in tags]
        else:
            contact["attributes"][TAGS_ATTRIBUTE] = ", ".join(sorted(tags))
            self._learn_attribute(TAGS_ATTRIBUTE, "")

    @route("POST", r"/_sandbox/contacts", auth=False)
    def _create_person(self, request: Request) -> Any:
        person = request.json() or {}
        # a person in Drift's UI may add a second contact with a known email
        contact = self._create(self._person_attributes(person), check_conflict=False)
        self._seed_tags(contact, person)
        return {"id": str(contact["id"])}

    @route("GET", r"/_sandbox/contacts", auth=False)
    def _all_contacts(self, request: Request) -> Any:
        return {"contacts": list(self.contacts.values())}

    @route("GET", r"/_sandbox/contacts/(?P<contact_id>[^/]+)", auth=False)
    def _one_contact(self, request: Request, contact_id: str) -> Any:
        return self._get(contact_id)

    @route("PATCH", r"/_sandbox/contacts/(?P<contact_id>[^/]+)", auth=False)
    def _edit_person(self, request: Request, contact_id: str) -> Any:
        contact = self._get(contact_id)
        person = request.json() or {}
        diff = self._patch(contact, self._person_attributes(person, partial=True))
        if "tags" in person:
            wanted = list(dict.fromkeys(person["tags"] or []))
            if self.legacy_tags:
                current = {t["name"] for t in contact["attributes"].get("tags", [])}
            else:
                raw = str(contact["attributes"].get(TAGS_ATTRIBUTE) or "")
                current = {t.strip() for t in raw.split(",") if t.strip()}
            diff += self._person_tags(contact, wanted, sorted(current - set(wanted)))
        if diff:
            self._fire_updated(contact, diff)
        return contact

    def _fire_updated(self, contact: dict[str, Any], diff: list[dict[str, Any]]) -> None:
        self._fire(
            "contact_updated",
            {
                "endUserId": contact["id"],
                "timestamp": _now_ms(),
                "orgId": self.org_id,
                "diff": diff,
            },
        )

    @route("DELETE", r"/_sandbox/contacts/(?P<contact_id>[^/]+)", auth=False)
    def _delete_person(self, request: Request, contact_id: str) -> Any:
        self._delete(self._get(contact_id)["id"])
        return {}

    @route("POST", r"/_sandbox/contacts/(?P<contact_id>[^/]+)/unsubscribe", auth=False)
    def _unsubscribe(self, request: Request, contact_id: str) -> Any:
        contact = self._get(contact_id)
        if contact["id"] not in self.unsubscribed:
            self.unsubscribed.add(contact["id"])
            self._fire("user_unsubscribed", contact)
        return contact

    @route("POST", r"/_sandbox/contacts/(?P<contact_id>[^/]+)/tags", auth=False)
    def _tag_person(self, request: Request, contact_id: str) -> Any:
        contact = self._get(contact_id)
        body = request.json() or {}
        diff = self._person_tags(
            contact, list(body.get("add") or []), list(body.get("remove") or [])
        )
        if diff:
            self._fire_updated(contact, diff)
        return contact

    @route("POST", r"/_sandbox/identify", auth=False)
    def _identify(self, request: Request) -> Any:
        """A visitor gives an email in chat: Drift finds or creates the contact
        and sends ``contact_identified``."""
        person = request.json() or {}
        if not _fold(person.get("email")):
            raise HttpError(400, "email is required")
        ids = self.by_email.get(_fold(person["email"]))
        if ids:
            contact = self.contacts[ids[0]]
        else:
            contact = self._create(self._person_attributes(person))
            self._seed_tags(contact, person)
        self._fire("contact_identified", contact)
        return {"id": str(contact["id"])}


FACTS = SandboxFacts(
    app=DriftSandbox,
    api_root="",
    unknown_id="99999999999",
    create_route="POST /contacts",
    update_route="PATCH /contacts/{id}",
    update_batched=False,
    # Drift needs an email or an external id on every contact
    refused_write=ContactWrite(None, None, {"name": "Nobody Atall"}, ref=0),
    refused_message="needs an email",
)
