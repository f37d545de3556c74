"""A typed client for the parts of Mailchimp's Marketing API 3.0 driftsync uses.

API keys (``<key>-us6``) authenticate with HTTP basic auth (any user name,
the key as password); OAuth tokens with ``Authorization: Bearer``. Mailchimp
OAuth tokens never expire, so there is no refresher. Errors are
``application/problem+json``; their ``detail`` (plus the per-field
``errors`` of a validation failure) is the message we surface.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
import tarfile
from typing import Any

import requests

from ..base import AuthError, Credentials, NotFound, PermanentError, TransientError
from ..hosts import check_destination, is_vendor_url
from ..http import (
    CONNECT_TIMEOUT,
    READ_TIMEOUT,
    HttpClient,
    make_session,
    shorten,
    text_error_message,
)

AUTHORIZE_URL = "https://login.mailchimp.com/oauth2/authorize"
TOKEN_URL = "https://login.mailchimp.com/oauth2/token"
METADATA_URL = "https://login.mailchimp.com/oauth2/metadata"
API_ROOT_TEMPLATE = "https://{dc}.api.mailchimp.com/3.0"
#: the only hosts a Mailchimp key or token is sent to: the account's data
#: center (``us6.api.mailchimp.com``) and the OAuth metadata endpoint's host
VENDOR_HOSTS = ("*.api.mailchimp.com", "login.mailchimp.com")

#: largest ``count`` a collection endpoint accepts / largest batch subscribe
MAX_COUNT = 1000
MAX_BATCH = 500
#: operations per ``POST /batches`` request (Mailchimp documents no cap; we
#: keep batch requests the size of a batch subscribe)
MAX_OPERATIONS = 500
#: the largest results archive read (500 member answers are ~1 MB)
MAX_ARCHIVE = 64 * 1024 * 1024

#: the member keys a sync needs (``fields=`` keeps 100k-member reads small)
MEMBER_FIELDS = (
    "id",
    "email_address",
    "status",
    "merge_fields",
    "tags",
    "last_changed",
    "timestamp_signup",
    "timestamp_opt",
    "list_id",
)

_DC_SUFFIX = re.compile(r"-([a-z]+[0-9]+)$")
_DC = re.compile(r"^[a-z]+[0-9]+$")


def subscriber_hash(email: str) -> str:
    """Mailchimp's member id: the MD5 of the lower-cased email address."""
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


def dc_from_api_key(api_key: str) -> str | None:
    match = _DC_SUFFIX.search(api_key.strip())
    return match.group(1) if match else None


def api_root_for(credentials: Credentials) -> str | None:
    """The real API root for these credentials, or None when nothing says the dc.

    An API key says its own dc (``-us6``); an OAuth token's comes from the
    metadata call. Anything that is not a Mailchimp data-center host is
    ignored, so credentials never go elsewhere through here."""
    if credentials.api_key:
        dc = dc_from_api_key(credentials.api_key)
        return API_ROOT_TEMPLATE.format(dc=dc) if dc else None
    endpoint = str(credentials.extra.get("api_endpoint") or "").rstrip("/")
    if endpoint and is_vendor_url(endpoint, VENDOR_HOSTS[:1]):
        return endpoint + "/3.0"
    dc = str(credentials.extra.get("dc") or "")
    return API_ROOT_TEMPLATE.format(dc=dc) if _DC.match(dc) else None


def mailchimp_auth(credentials: Credentials) -> dict[str, str]:
    if credentials.api_key:
        raw = f"driftsync:{credentials.api_key}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if credentials.access_token:
        return {"Authorization": f"Bearer {credentials.access_token}"}
    return {}


def mailchimp_error_message(response: requests.Response) -> str:
    """``detail`` of the problem+json body, with the field errors it lists."""
    try:
        body = response.json()
    except ValueError:
        return text_error_message(response)
    if not isinstance(body, dict):
        return shorten(str(body))
    message = str(body.get("detail") or body.get("title") or f"HTTP {response.status_code}")
    field_errors = [
        f"{err.get('field') or 'value'}: {err.get('message')}"
        for err in body.get("errors") or []
        if isinstance(err, dict) and err.get("message")
    ]
    if field_errors:
        message = f"{message} ({'; '.join(field_errors)})"
    return message


def fetch_metadata(
    token: str, metadata_url: str = METADATA_URL, session: requests.Session | None = None
) -> dict[str, Any]:
    """Who an OAuth token belongs to: ``dc``, ``api_endpoint``, ``user_id``,
    ``accountname``. Mailchimp answers a bad token with 200 and
    ``{"error": "invalid_token"}``; that is an ``AuthError`` here."""
    # the token goes in the header: Mailchimp's own endpoint only (or a sandbox's)
    check_destination(metadata_url, VENDOR_HOSTS, "Mailchimp")
    session = session or make_session(1)
    try:
        response = session.get(
            metadata_url,
            headers={"Authorization": f"OAuth {token}", "Accept": "application/json"},
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
        )
    except (requests.ConnectionError, requests.Timeout) as exc:
        raise TransientError(f"Mailchimp metadata call failed: {exc}") from exc
    if response.status_code >= 500 or response.status_code == 429:
        raise TransientError(mailchimp_error_message(response), status=response.status_code)
    try:
        body = response.json()
    except ValueError:
        body = {}
    if response.status_code >= 400 or not isinstance(body, dict) or body.get("error"):
        reason = body.get("error") if isinstance(body, dict) else None
        detail = body.get("error_description") if isinstance(body, dict) else None
        message = ": ".join(str(p) for p in (reason, detail) if p) or mailchimp_error_message(
            response
        )
        raise AuthError(f"Mailchimp refused the token: {message}", status=response.status_code)
    if not body.get("dc") or not body.get("api_endpoint"):
        raise AuthError(f"Mailchimp metadata without dc/api_endpoint: {sorted(body)}")
    return body


class MailchimpClient:
    """One method per Marketing API endpoint driftsync calls."""

    def __init__(
        self,
        base_url: str,
        credentials: Credentials,
        *,
        account_key: str = "",
        session: requests.Session | None = None,
    ) -> None:
        self.http = HttpClient(
            base_url,
            credentials=credentials,
            authorize=mailchimp_auth,
            account_key=account_key,
            vendor_hosts=VENDOR_HOSTS,
            error_message=mailchimp_error_message,
            session=session,
        )

    # -- account ----------------------------------------------------------

    def root(self) -> dict[str, Any]:
        return self.http.get_json("/", stat_key="GET /")

    def lists(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = self.http.get_json(
                "/lists",
                params={
                    "count": MAX_COUNT,
                    "offset": offset,
                    "fields": "lists.id,lists.name,lists.stats.member_count,total_items",
                },
                stat_key="GET /lists",
            )
            page = body.get("lists") or []
            out.extend(page)
            offset += len(page)
            if not page or offset >= int(body.get("total_items") or 0):
                return out

    def get_list(self, list_id: str) -> dict[str, Any]:
        return self.http.get_json(f"/lists/{list_id}", stat_key="GET /lists/{list_id}")

    def merge_fields(self, list_id: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        offset = 0
        while True:
            body = self.http.get_json(
                f"/lists/{list_id}/merge-fields",
                params={"count": MAX_COUNT, "offset": offset},
                stat_key="GET /lists/{list_id}/merge-fields",
            )
            page = body.get("merge_fields") or []
            out.extend(page)
            offset += len(page)
            if not page or offset >= int(body.get("total_items") or 0):
                return out

    # -- members ----------------------------------------------------------

    def list_members(
        self,
        list_id: str,
        *,
        count: int = MAX_COUNT,
        offset: int = 0,
        since_last_changed: str | None = None,
        status: str | None = None,
        sort_dir: str = "DESC",
    ) -> dict[str, Any]:
        params: dict[str, Any] = {
            "count": count,
            "offset": offset,
            "sort_field": "last_changed",
            "sort_dir": sort_dir,
            "fields": ",".join(f"members.{f}" for f in MEMBER_FIELDS) + ",total_items",
        }
        if since_last_changed:
            params["since_last_changed"] = since_last_changed
        if status:
            params["status"] = status
        return self.http.get_json(
            f"/lists/{list_id}/members", params=params, stat_key="GET /lists/{list_id}/members"
        )

    def get_member(self, list_id: str, member_hash: str) -> dict[str, Any] | None:
        try:
            return self.http.get_json(
                f"/lists/{list_id}/members/{member_hash}",
                params={"fields": ",".join(MEMBER_FIELDS)},
                stat_key="GET /lists/{list_id}/members/{hash}",
            )
        except NotFound:
            return None

    def upsert_member(self, list_id: str, member_hash: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.request(
            "PUT",
            f"/lists/{list_id}/members/{member_hash}",
            json=body,
            stat_key="PUT /lists/{list_id}/members/{hash}",
        ).json()

    def update_member(self, list_id: str, member_hash: str, body: dict[str, Any]) -> dict[str, Any]:
        return self.http.request(
            "PATCH",
            f"/lists/{list_id}/members/{member_hash}",
            json=body,
            stat_key="PATCH /lists/{list_id}/members/{hash}",
        ).json()

    def archive_member(self, list_id: str, member_hash: str) -> None:
        self.http.request(
            "DELETE",
            f"/lists/{list_id}/members/{member_hash}",
            stat_key="DELETE /lists/{list_id}/members/{hash}",
        )

    def batch_subscribe(
        self, list_id: str, members: list[dict[str, Any]], *, update_existing: bool
    ) -> dict[str, Any]:
        """``POST /lists/{id}``: up to 500 members; per-member failures come
        back in ``errors`` with a 200."""
        if len(members) > MAX_BATCH:
            raise ValueError(f"Mailchimp takes at most {MAX_BATCH} members per batch")
        return self.http.post_json(
            f"/lists/{list_id}",
            {"members": members, "update_existing": update_existing},
            stat_key="POST /lists/{list_id}",
        )

    def update_member_tags(
        self, list_id: str, member_hash: str, tags: list[dict[str, str]]
    ) -> None:
        """``tags`` = ``[{"name": ..., "status": "active"|"inactive"}]``; 204."""
        self.http.request(
            "POST",
            f"/lists/{list_id}/members/{member_hash}/tags",
            json={"tags": tags},
            stat_key="POST /lists/{list_id}/members/{hash}/tags",
        )

    # -- batch operations -------------------------------------------------
    # mailchimp.com/developer/marketing/api/batch-operations/start-batch-operation/
    # and the guide .../guides/run-async-requests-batch-endpoint/ (the
    # mailchimp-marketing SDK: ``batches.start`` / ``batches.status``)

    def start_batch(self, operations: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /batches``: ``[{method, path, body (a JSON string), operation_id}]``.
        Answers at once with ``status: "pending"``; the work runs in the background."""
        if len(operations) > MAX_OPERATIONS:
            raise ValueError(f"at most {MAX_OPERATIONS} operations per batch")
        return self.http.post_json("/batches", {"operations": operations}, stat_key="POST /batches")

    def batch_status(self, batch_id: str) -> dict[str, Any]:
        """``GET /batches/{id}``: ``status`` (pending, preprocessing, started,
        finalizing, finished), ``total_operations``, ``finished_operations``,
        ``errored_operations``, ``response_body_url`` once finished."""
        return self.http.get_json(f"/batches/{batch_id}", stat_key="GET /batches/{batch_id}")

    def delete_batch(self, batch_id: str) -> None:
        """Stops a batch that has not finished (its finished operations stay done)."""
        self.http.request(
            "DELETE", f"/batches/{batch_id}", ok=(404,), stat_key="DELETE /batches/{batch_id}"
        )

    def batch_results(self, url: str) -> list[dict[str, Any]]:
        """The results archive of a finished batch: a gzip'd tar of JSON files,
        each an array of ``{status_code, operation_id, response}`` where
        ``response`` is the operation's JSON answer as a string.

        The URL is a signed link to Mailchimp's file storage (not the API
        host): it is fetched without the account's key."""
        http = self.http
        with http._stats_lock:
            http.stats["GET batch results archive"] += 1
        try:
            response = http.session.get(url, timeout=(CONNECT_TIMEOUT, READ_TIMEOUT))
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"Mailchimp batch results could not be fetched: {exc}") from exc
        if response.status_code != 200:
            raise TransientError(
                f"Mailchimp batch results could not be fetched: HTTP {response.status_code}",
                status=response.status_code,
            )
        if len(response.content) > MAX_ARCHIVE:
            raise PermanentError("Mailchimp batch results archive is too large to read")
        out: list[dict[str, Any]] = []
        try:
            with tarfile.open(fileobj=io.BytesIO(response.content), mode="r:gz") as archive:
                for member in archive.getmembers():
                    handle = archive.extractfile(member) if member.isfile() else None
                    if handle is None or not member.name.endswith(".json"):
                        continue
                    rows = json.load(handle)
                    out.extend(r for r in rows if isinstance(r, dict))
        except (tarfile.TarError, OSError, ValueError, TypeError) as exc:
            raise TransientError(f"Mailchimp batch results archive is unreadable: {exc}") from exc
        return out

    # -- webhooks ---------------------------------------------------------

    def list_webhooks(self, list_id: str) -> list[dict[str, Any]]:
        body = self.http.get_json(
            f"/lists/{list_id}/webhooks", stat_key="GET /lists/{list_id}/webhooks"
        )
        return list(body.get("webhooks") or [])

    def create_webhook(
        self,
        list_id: str,
        url: str,
        *,
        events: dict[str, bool],
        sources: dict[str, bool],
    ) -> dict[str, Any]:
        return self.http.post_json(
            f"/lists/{list_id}/webhooks",
            {"url": url, "events": events, "sources": sources},
            stat_key="POST /lists/{list_id}/webhooks",
        )

    def delete_webhook(self, list_id: str, webhook_id: str) -> None:
        self.http.request(
            "DELETE",
            f"/lists/{list_id}/webhooks/{webhook_id}",
            stat_key="DELETE /lists/{list_id}/webhooks/{id}",
        )
