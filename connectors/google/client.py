"""A typed client for the parts of the Google People API that driftsync uses.

Every call goes through ``HttpClient`` (retries, Retry-After, token refresh).
Two error answers carry more than a message and are turned into their own
exceptions: an expired sync token (Google answers 400 ``FAILED_PRECONDITION``
in practice and documents 410 for some list calls; both carry the
``EXPIRED_SYNC_TOKEN`` reason) and a failed batch write, whose
``contactErrors`` say which contacts were at fault (nothing was written).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import requests

from connectors.base import PermanentError
from connectors.http import HttpClient, classify, default_error_message

DEFAULT_BASE_URL = "https://people.googleapis.com/v1"
TOKEN_URL = "https://oauth2.googleapis.com/token"
#: the only hosts a Google token (and the OAuth client secret) is sent to
VENDOR_HOSTS = ("people.googleapis.com", "oauth2.googleapis.com")
EXPIRED_SYNC_TOKEN = "EXPIRED_SYNC_TOKEN"
#: Reads default to CONTACT and PROFILE sources; a contact linked to a Google
#: profile then carries the profile's names, emails and organizations next to
#: its own. driftsync syncs the contact, so every read asks for CONTACT only
#: (``sources`` in googleapis/google-api-python-client,
#: googleapiclient/discovery_cache/documents/people.v1.json). Changing this
#: invalidates saved sync tokens: see ``CURSOR_VERSION`` in the connector.
READ_SOURCES = ("READ_SOURCE_TYPE_CONTACT",)

Person = dict[str, Any]


class SyncTokenExpired(PermanentError):
    """The sync token is too old: the only way on is a full read without it."""


class BatchRejected(PermanentError):
    """A batch write failed as a whole; ``contact_errors`` names the culprits
    (by index for creates, by resource name for updates) with their Status."""

    def __init__(self, message: str, contact_errors: dict[str, dict[str, Any]], status: int):
        super().__init__(message, status=status)
        self.contact_errors = contact_errors


def _error_body(response: requests.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        return {}
    err = body.get("error") if isinstance(body, dict) else None
    return err if isinstance(err, dict) else {}


def _is_expired_sync_token(response: requests.Response) -> bool:
    err = _error_body(response)
    for detail in err.get("details") or []:
        if isinstance(detail, dict) and detail.get("reason") == EXPIRED_SYNC_TOKEN:
            return True
    message = str(err.get("message") or "")
    return response.status_code == 410 or "sync token is expired" in message.lower()


def _contact_errors(response: requests.Response) -> dict[str, dict[str, Any]] | None:
    for detail in _error_body(response).get("details") or []:
        if isinstance(detail, dict) and isinstance(detail.get("contactErrors"), dict):
            return {str(k): v for k, v in detail["contactErrors"].items()}
    return None


class GoogleClient:
    def __init__(self, http: HttpClient) -> None:
        self.http = http

    # -- people ----------------------------------------------------------------

    def get_me(self) -> Person:
        return self.http.get_json(
            "/people/me",
            params={"personFields": "names,emailAddresses"},
            stat_key="GET /people/me",
        )

    def list_connections(
        self,
        *,
        person_fields: str,
        page_size: int,
        page_token: str | None = None,
        sync_token: str | None = None,
        request_sync_token: bool = True,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "personFields": person_fields,
            "pageSize": page_size,
            "sources": list(READ_SOURCES),
        }
        if request_sync_token:
            params["requestSyncToken"] = "true"
        if sync_token:
            params["syncToken"] = sync_token
        if page_token:
            params["pageToken"] = page_token
        response = self.http.request(
            "GET",
            "/people/me/connections",
            params=params,
            ok=(400, 410),
            stat_key="GET /people/me/connections",
        )
        if response.status_code in (400, 410):
            message = default_error_message(response)
            if sync_token and _is_expired_sync_token(response):
                raise SyncTokenExpired(
                    message, status=response.status_code, code=EXPIRED_SYNC_TOKEN
                )
            raise classify(response.status_code, message)
        return response.json()

    def batch_get(self, resource_names: list[str], *, person_fields: str) -> list[dict[str, Any]]:
        """PersonResponses (``httpStatusCode``, ``person``, ``requestedResourceName``)."""
        body = self.http.get_json(
            "/people:batchGet",
            params=[("personFields", person_fields)]
            + [("sources", source) for source in READ_SOURCES]
            + [("resourceNames", rn) for rn in resource_names],
            stat_key="GET /people:batchGet",
        )
        return list(body.get("responses") or [])

    def search_contacts(self, query: str, *, read_mask: str, page_size: int = 30) -> list[Person]:
        body = self.http.get_json(
            "/people:searchContacts",
            params={
                "query": query,
                "readMask": read_mask,
                "pageSize": page_size,
                "sources": list(READ_SOURCES),
            },
            stat_key="GET /people:searchContacts",
        )
        return [r["person"] for r in (body or {}).get("results") or [] if r.get("person")]

    def batch_create(self, people: list[Person], *, read_mask: str) -> list[dict[str, Any]]:
        # Google does not deduplicate: a create whose answer was lost may have
        # happened, so it is never resent blindly (the next run searches first)
        response = self._batch_write(
            "/people:batchCreateContacts",
            {
                "contacts": [{"contactPerson": p} for p in people],
                "readMask": read_mask,
                "sources": list(READ_SOURCES),
            },
            retry_ambiguous=False,
        )
        return list(response.get("createdPeople") or [])

    def batch_update(
        self, people: dict[str, Person], *, update_mask: str, read_mask: str
    ) -> dict[str, dict[str, Any]]:
        response = self._batch_write(
            "/people:batchUpdateContacts",
            {
                "contacts": people,
                "updateMask": update_mask,
                "readMask": read_mask,
                "sources": list(READ_SOURCES),
            },
        )
        return dict(response.get("updateResult") or {})

    def _batch_write(
        self, path: str, body: dict[str, Any], *, retry_ambiguous: bool = True
    ) -> dict[str, Any]:
        response = self.http.request(
            "POST",
            path,
            json=body,
            ok=(400,),
            stat_key=f"POST {path}",
            retry_ambiguous=retry_ambiguous,
        )
        if response.status_code == 400:
            message = default_error_message(response)
            errors = _contact_errors(response)
            if errors is None:
                raise BatchRejected(message, {}, 400)
            raise BatchRejected(message, errors, 400)
        return response.json() if response.content else {}

    # -- contact groups ----------------------------------------------------------

    def list_contact_groups(self) -> list[dict[str, Any]]:
        groups: list[dict[str, Any]] = []
        page_token: str | None = None
        while True:
            params: dict[str, Any] = {"pageSize": 1000}
            if page_token:
                params["pageToken"] = page_token
            body = self.http.get_json(
                "/contactGroups", params=params, stat_key="GET /contactGroups"
            )
            groups.extend(body.get("contactGroups") or [])
            page_token = body.get("nextPageToken")
            if not page_token:
                return groups

    def create_contact_group(self, name: str) -> dict[str, Any] | None:
        """The new group, or None when a group of that name already exists (409)."""
        response = self.http.request(
            "POST",
            "/contactGroups",
            json={"contactGroup": {"name": name}},
            ok=(409,),
            stat_key="POST /contactGroups",
        )
        return None if response.status_code == 409 else response.json()

    def modify_members(
        self, group: str, *, add: Sequence[str] = (), remove: Sequence[str] = ()
    ) -> dict[str, Any]:
        body: dict[str, Any] = {}
        if add:
            body["resourceNamesToAdd"] = list(add)
        if remove:
            body["resourceNamesToRemove"] = list(remove)
        return (
            self.http.post_json(
                f"/{group}/members:modify", body, stat_key="POST /contactGroups/{id}/members:modify"
            )
            or {}
        )
