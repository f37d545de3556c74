"""HubSpot CRM v3: one typed method per endpoint driftsync uses."""

from __future__ import annotations

import email.utils
import json
import re
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import requests

from ..base import AuthError, ConnectorError, NotFound, PermanentError
from ..http import HttpClient, shorten, text_error_message

CONTACTS = "/crm/v3/objects/contacts"
PROPERTIES = "/crm/v3/properties/contacts"
#: statuses whose body we read ourselves, to keep HubSpot's ``category``
HANDLED = (400, 403, 404, 409, 422)
_INNER = re.compile(r"^(?P<head>[^\[]*?):\s*(?P<json>\[.*\])\s*$", re.DOTALL)
_EXISTING_ID = re.compile(r"Existing ID:\s*(\d+)")
#: "Cannot set PropertyValueCoordinates{... propertyName=email, value=x} on <A>.
#: <B> already has that value.": B holds the value (A is the record written to)
_TAKEN_BY = re.compile(r"(\d+)\s+already has that value")


def hubspot_error_message(response: requests.Response) -> str:
    """HubSpot's own words. A validation error packs the per-property
    messages as JSON inside ``message``; unpack them so a person reads
    "Email address x is invalid", not a JSON dump."""
    try:
        body = response.json()
    except ValueError:
        return text_error_message(response)
    if not isinstance(body, dict):
        return shorten(str(body))
    message = str(body.get("message") or body.get("error_description") or body.get("error") or "")
    match = _INNER.match(message)
    if match:
        try:
            items = json.loads(match.group("json"))
            inner = [str(i["message"]) for i in items if isinstance(i, dict) and i.get("message")]
        except (ValueError, KeyError, TypeError):
            inner = []
        if inner:
            return "; ".join(inner)
    if not message and isinstance(body.get("errors"), list):
        message = "; ".join(str(e.get("message")) for e in body["errors"] if isinstance(e, dict))
    return message or f"HTTP {response.status_code}"


class MissingScopes(AuthError):
    """HubSpot's 403 MISSING_SCOPES: the token lacks a scope the call needs."""

    def __init__(self, scopes: list[str], message: str = "", *, status: int | None = 403) -> None:
        named = ", ".join(scopes) or "(HubSpot did not say which)"
        super().__init__(
            f"The HubSpot token lacks the scope {named}. OAuth: reconnect the account "
            "(driftsync requests every scope it uses); private app: add the scope in the "
            "app's settings and paste the new token."
            + (f" HubSpot said: {message}" if message else ""),
            status=status,
            code="MISSING_SCOPES",
        )
        self.scopes = scopes


def required_scopes(body: Any) -> list[str]:
    """The scopes a MISSING_SCOPES answer names: ``requiredGranularScopes`` or
    ``requiredScopes``, in ``context`` or in each ``errors[].context``
    (HubSpot/hubspot-api-nodejs#50, #268)."""
    if not isinstance(body, dict):
        return []
    contexts = [body.get("context")]
    contexts += [e.get("context") for e in body.get("errors") or [] if isinstance(e, dict)]
    out: list[str] = []
    for context in contexts:
        if not isinstance(context, dict):
            continue
        for key in ("requiredGranularScopes", "requiredScopes"):
            for scope in context.get(key) or []:
                if str(scope) not in out:
                    out.append(str(scope))
    return out


def existing_id(error: ConnectorError) -> str | None:
    """The contact that already has the email, from either answer HubSpot gives:
    409 "Contact already exists. Existing ID: 123" (HubSpot/hubspot-api-nodejs#545)
    or 400 VALIDATION_ERROR "... on 456. 123 already has that value." (verbatim
    production answers quoted in a public HubSpot intake test, code index id
    68689323038)."""
    if error.status == 409:
        match = _EXISTING_ID.search(error.message)
        return match.group(1) if match else None
    if error.status == 400:
        match = _TAKEN_BY.search(error.message)
        return match.group(1) if match else None
    return None


@dataclass
class BatchResult:
    results: list[dict[str, Any]]
    #: ids (or emails with idProperty=email) HubSpot reported as not found
    missing: list[str] = field(default_factory=list)


class HubSpotClient:
    def __init__(self, http: HttpClient) -> None:
        self.http = http
        #: the server's clock (``Date`` header) at the last response, epoch ms
        self.server_time_ms: int | None = None

    # ------------------------------------------------------------------ plumbing

    def _send(
        self,
        method: str,
        path: str,
        *,
        stat_key: str,
        params: Any = None,
        body: Any = None,
        url: str | None = None,
    ) -> requests.Response:
        response = self.http.request(
            method, path, params=params, json=body, ok=HANDLED, stat_key=stat_key, url=url
        )
        date = response.headers.get("Date")
        if date:
            try:
                self.server_time_ms = int(
                    email.utils.parsedate_to_datetime(date).timestamp() * 1000
                )
            except (TypeError, ValueError):
                self.server_time_ms = None
        else:
            self.server_time_ms = None
        if response.status_code >= 400:
            raise self._error(response)
        return response

    @staticmethod
    def _error(response: requests.Response) -> ConnectorError:
        message = hubspot_error_message(response)
        try:
            body = response.json()
            category = str(body.get("category") or "")
        except (ValueError, AttributeError):
            body, category = None, ""
        status = response.status_code
        if status == 403 and category == "MISSING_SCOPES":
            return MissingScopes(required_scopes(body), message, status=status)
        if status == 403:
            # missing scopes or a portal without CRM access: a person must fix the account
            return AuthError(message, status=status, code=category)
        if status == 404:
            return NotFound(message, status=status, code=category)
        return PermanentError(message, status=status, code=category)

    def now_ms(self) -> int:
        """HubSpot's clock when known (lastmodifieddate is stamped by it)."""
        return self.server_time_ms or int(time.time() * 1000)

    # ------------------------------------------------------------------ account

    def account_details(self) -> dict[str, Any]:
        return self._send(
            "GET", "/account-info/v3/details", stat_key="GET /account-info/v3/details"
        ).json()

    def access_token_info(self, token: str) -> dict[str, Any]:
        return self._send(
            "GET",
            f"/oauth/v1/access-tokens/{token}",
            stat_key="GET /oauth/v1/access-tokens/{token}",
        ).json()

    def private_app_token_info(self, token: str) -> dict[str, Any]:
        """A private app token's scopes (https://developers.hubspot.com/docs/api/private-apps)."""
        return self._send(
            "POST",
            "/oauth/v2/private-apps/get/access-token-info",
            body={"tokenKey": token},
            stat_key="POST /oauth/v2/private-apps/get/access-token-info",
        ).json()

    # ------------------------------------------------------------------ properties

    def list_properties(self) -> list[dict[str, Any]]:
        body = self._send("GET", PROPERTIES, stat_key=f"GET {PROPERTIES}").json()
        return list(body.get("results") or [])

    def get_property(self, name: str) -> dict[str, Any] | None:
        try:
            return self._send(
                "GET", f"{PROPERTIES}/{name}", stat_key=f"GET {PROPERTIES}/{{name}}"
            ).json()
        except NotFound:
            return None

    def create_property(self, definition: dict[str, Any]) -> dict[str, Any] | None:
        """The new property, or ``None`` when one with that name exists (409)."""
        try:
            return self._send(
                "POST", PROPERTIES, body=definition, stat_key=f"POST {PROPERTIES}"
            ).json()
        except PermanentError as exc:
            if exc.status == 409:
                return None
            raise

    def update_property(self, name: str, changes: dict[str, Any]) -> dict[str, Any]:
        return self._send(
            "PATCH", f"{PROPERTIES}/{name}", body=changes, stat_key=f"PATCH {PROPERTIES}/{{name}}"
        ).json()

    # ------------------------------------------------------------------ reading

    def list_contacts(
        self,
        *,
        properties: Iterable[str],
        limit: int,
        after: str | None = None,
        archived: bool = False,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"limit": limit, "properties": ",".join(properties)}
        if after:
            params["after"] = after
        if archived:
            params["archived"] = "true"
        return self._send("GET", CONTACTS, params=params, stat_key=f"GET {CONTACTS}").json()

    def search_contacts(self, request: dict[str, Any]) -> dict[str, Any]:
        return self._send(
            "POST", f"{CONTACTS}/search", body=request, stat_key=f"POST {CONTACTS}/search"
        ).json()

    def batch_read(
        self,
        ids: list[str],
        *,
        properties: Iterable[str],
        id_property: str | None = None,
    ) -> BatchResult:
        body: dict[str, Any] = {
            "properties": list(properties),
            "inputs": [{"id": i} for i in ids],
        }
        if id_property:
            body["idProperty"] = id_property
        data = self._send(
            "POST", f"{CONTACTS}/batch/read", body=body, stat_key=f"POST {CONTACTS}/batch/read"
        ).json()
        return BatchResult(list(data.get("results") or []), _error_ids(data))

    # ------------------------------------------------------------------ writing

    def batch_create(self, inputs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        data = self._send(
            "POST",
            f"{CONTACTS}/batch/create",
            body={"inputs": [{"properties": p} for p in inputs]},
            stat_key=f"POST {CONTACTS}/batch/create",
        ).json()
        return list(data.get("results") or [])

    def batch_update(self, inputs: list[tuple[str, dict[str, Any]]]) -> BatchResult:
        data = self._send(
            "POST",
            f"{CONTACTS}/batch/update",
            body={"inputs": [{"id": i, "properties": p} for i, p in inputs]},
            stat_key=f"POST {CONTACTS}/batch/update",
        ).json()
        return BatchResult(list(data.get("results") or []), _error_ids(data))

    def create_contact(self, properties: dict[str, Any]) -> dict[str, Any]:
        return self._send(
            "POST", CONTACTS, body={"properties": properties}, stat_key=f"POST {CONTACTS}"
        ).json()

    def update_contact(self, contact_id: str, properties: dict[str, Any]) -> dict[str, Any]:
        return self._send(
            "PATCH",
            f"{CONTACTS}/{contact_id}",
            body={"properties": properties},
            stat_key=f"PATCH {CONTACTS}/{{id}}",
        ).json()


def _error_ids(data: dict[str, Any]) -> list[str]:
    """Ids named by the errors of a 207 multi-status batch answer."""
    missing: list[str] = []
    for error in data.get("errors") or []:
        context = error.get("context") or {}
        missing.extend(str(i) for i in context.get("ids") or [])
    return missing
