"""Drift's contacts API, one method per endpoint, over ``HttpClient``."""

from __future__ import annotations

import urllib.parse
from typing import Any

from ..base import PermanentError
from ..http import HttpClient

DEFAULT_BASE_URL = "https://driftapi.com"
#: where the token endpoint lives relative to the API base (also in the sandbox)
TOKEN_PATH = "/oauth2/token"
TOKEN_URL = DEFAULT_BASE_URL + TOKEN_PATH
#: the only hosts a Drift token (and the OAuth client secret) is sent to
VENDOR_HOSTS = ("driftapi.com",)

Record = dict[str, Any]


def _data(body: Any, what: str) -> Any:
    if not isinstance(body, dict) or "data" not in body:
        raise PermanentError(f"Drift answered {what} without a data object")
    return body["data"]


class DriftClient:
    def __init__(self, http: HttpClient) -> None:
        self.http = http

    # -- account ----------------------------------------------------------

    def token_info(self, access_token: str) -> Record:
        body = self.http.post_json(
            "/app/token_info", {"access_token": access_token}, stat_key="POST /app/token_info"
        )
        return body if isinstance(body, dict) else {}

    def list_attributes(self) -> list[Record]:
        body = self.http.get_json("/contacts/attributes", stat_key="GET /contacts/attributes")
        data = _data(body, "GET /contacts/attributes")
        properties = data.get("properties") if isinstance(data, dict) else data
        return [p for p in properties or [] if isinstance(p, dict) and p.get("name")]

    # -- contacts ---------------------------------------------------------

    def get_contact(self, contact_id: str) -> Record | None:
        """The contact, or ``None`` when Drift no longer has it."""
        response = self.http.request(
            "GET", f"/contacts/{_quote(contact_id)}", ok=(404,), stat_key="GET /contacts/{id}"
        )
        if response.status_code == 404:
            return None
        return _data(response.json(), "GET /contacts/{id}")

    def find_by_email(self, email: str, limit: int) -> list[Record]:
        response = self.http.request(
            "GET",
            "/contacts",
            params={"email": email, "limit": limit},
            ok=(404,),
            stat_key="GET /contacts?email",
        )
        if response.status_code == 404:
            return []
        data = _data(response.json(), "GET /contacts?email")
        return [data] if isinstance(data, dict) else list(data or [])

    def find_by_external_id(self, external_id: str) -> list[Record]:
        response = self.http.request(
            "GET",
            "/contacts",
            params={"idType": "external", "id": external_id},
            ok=(404,),
            stat_key="GET /contacts?idType=external",
        )
        if response.status_code == 404:
            return []
        data = _data(response.json(), "GET /contacts?idType=external")
        return [data] if isinstance(data, dict) else list(data or [])

    def create_contact(self, attributes: Record) -> Record:
        body = self.http.post_json(
            "/contacts", {"attributes": attributes}, stat_key="POST /contacts"
        )
        return _data(body, "POST /contacts")

    def update_contact(self, contact_id: str, attributes: Record) -> Record:
        response = self.http.request(
            "PATCH",
            f"/contacts/{_quote(contact_id)}",
            json={"attributes": attributes},
            stat_key="PATCH /contacts/{id}",
        )
        return _data(response.json(), "PATCH /contacts/{id}")

    def delete_contact(self, contact_id: str) -> None:
        self.http.request(
            "DELETE", f"/contacts/{_quote(contact_id)}", stat_key="DELETE /contacts/{id}"
        )

    # -- tags (legacy) ------------------------------------------------------

    def add_tags(self, contact_id: str, names: list[str]) -> Record | None:
        body = self.http.post_json(
            f"/contacts/{_quote(contact_id)}/tags",
            [{"name": name} for name in names],
            stat_key="POST /contacts/{id}/tags",
        )
        return _contact_or_none(body)

    def remove_tags(self, contact_id: str, names: list[str]) -> Record | None:
        body = self.http.post_json(
            f"/contacts/{_quote(contact_id)}/tags/delete/_bulk",
            names,
            stat_key="POST /contacts/{id}/tags/delete/_bulk",
        )
        return _contact_or_none(body)

    def remove_tag(self, contact_id: str, name: str) -> Record | None:
        response = self.http.request(
            "DELETE",
            f"/contacts/{_quote(contact_id)}/tags/{_quote(name)}",
            stat_key="DELETE /contacts/{id}/tags/{name}",
        )
        return _contact_or_none(response.json() if response.content else None)


def _quote(value: str) -> str:
    return urllib.parse.quote(str(value), safe="")


def _contact_or_none(body: Any) -> Record | None:
    """Tag endpoints may or may not echo the contact back."""
    data = body.get("data") if isinstance(body, dict) else None
    return data if isinstance(data, dict) and "attributes" in data else None
