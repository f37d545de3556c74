"""A stateful fake of Mailchimp's Marketing API 3.0 (``https://<dc>.api.mailchimp.com/3.0``).

Audiences (lists) with merge fields, members keyed by subscriber hash, tags,
webhooks, the batch subscribe endpoint and batch operations (``/batches``:
asynchronous, results as a .tar.gz archive; see ``_start_batch``), plus the OAuth endpoints of
``login.mailchimp.com`` (``/oauth2/authorize``, ``/oauth2/token``,
``/oauth2/metadata``) under the same prefix. Errors are
``application/problem+json``.

Members are kept in ``last_changed`` order by an append-only change log with
a Fenwick tree over live entries, so a page at any offset (with or without
``since_last_changed``) costs O(page + log n) even with 100k members.

Timestamps have Mailchimp's one-second precision. So that tests never depend
on where a second boundary falls, the sandbox stamps a change made after a
member list was served at least one second later than the newest
``last_changed`` that list returned (at most one second ahead of the clock).
"""

from __future__ import annotations

import bisect
import datetime as dt
import functools
import hashlib
import io
import json
import re
import secrets
import tarfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any, ClassVar

from connectors.base import ContactWrite

from .base import HttpError, Request, Response, SandboxApp, SandboxConfig, route
from .facts import SandboxFacts

DEFAULT_LIST_ID = "a1b2c3d4e5"
DEFAULT_LIST_NAME = "Demo audience"
ACCOUNT_ID = "8d3a3db4d97663a9074efcc16"
DC = "us1"
MAX_COUNT = 1000
MAX_BATCH = 500
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
SETTABLE_STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional")
MERGE_TYPES = (
    "text",
    "number",
    "address",
    "phone",
    "date",
    "url",
    "imageurl",
    "radio",
    "dropdown",
    "birthday",
    "zip",
)
ERROR_DOCS = "https://mailchimp.com/developer/marketing/docs/errors/"
TITLES = {
    400: "Invalid Resource",
    401: "API Key Invalid",
    403: "Forbidden",
    404: "Resource Not Found",
    405: "Method Not Allowed",
    414: "Resource Nesting Too Deep",
    422: "Invalid Method Override",
    429: "Too Many Requests",
    500: "Internal Server Error",
    503: "Service Unavailable",
}
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")
_API_KEY_DC = re.compile(r"-[a-z]+[0-9]+$")
_DATE_FORMATS = {"MM/DD/YYYY": "%m/%d/%Y", "DD/MM/YYYY": "%d/%m/%Y"}


def member_hash(email: str) -> str:
    return hashlib.md5(email.strip().lower().encode()).hexdigest()


@functools.lru_cache(maxsize=4096)
def _iso(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _parse_time(value: str, name: str) -> int:
    try:
        parsed = dt.datetime.fromisoformat(value.strip().replace("Z", "+00:00").replace(" ", "+"))
    except ValueError as exc:
        raise HttpError(
            400,
            f"The value for {name} is not a valid ISO 8601 date time.",
            errors=[{"field": name, "message": "Invalid date time"}],
        ) from exc
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp())


# ------------------------------------------------------------ change index


class _Fenwick:
    """Counts live slots; ``find`` is the slot of the k-th live one."""

    def __init__(self, alive: bytearray, capacity: int) -> None:
        self.n = capacity
        tree = [0] * (capacity + 1)
        for i, v in enumerate(alive):
            tree[i + 1] = v
        for i in range(1, capacity + 1):
            j = i + (i & -i)
            if j <= capacity:
                tree[j] += tree[i]
        self.tree = tree
        self.top = 1 << (capacity.bit_length() - 1) if capacity else 0

    def add(self, index: int, delta: int) -> None:
        i = index + 1
        while i <= self.n:
            self.tree[i] += delta
            i += i & -i

    def prefix(self, index: int) -> int:
        """Live slots in ``[0, index)``."""
        total, i = 0, index
        while i > 0:
            total += self.tree[i]
            i -= i & -i
        return total

    def find(self, rank: int) -> int:
        pos, remaining, step = 0, rank, self.top
        while step:
            nxt = pos + step
            if nxt <= self.n and self.tree[nxt] <= remaining:
                pos, remaining = nxt, remaining - self.tree[nxt]
            step >>= 1
        return pos


class _ChangeIndex:
    """Member hashes in ``last_changed`` order: a change appends, the old
    slot dies. Stamps are non-decreasing, so the order is the time order."""

    def __init__(self) -> None:
        self.keys: list[str] = []
        self.times: list[int] = []
        self.alive = bytearray()
        self.slot: dict[str, int] = {}
        self.live = 0
        self.tree = _Fenwick(self.alive, 1024)

    def __len__(self) -> int:
        return self.live

    def touch(self, key: str, stamp: int) -> None:
        self.discard(key)
        if len(self.keys) >= self.tree.n:
            self._rebuild(compact=self.live * 2 < len(self.keys))
        index = len(self.keys)
        self.keys.append(key)
        self.times.append(stamp)
        self.alive.append(1)
        self.slot[key] = index
        self.tree.add(index, 1)
        self.live += 1

    def discard(self, key: str) -> None:
        index = self.slot.pop(key, None)
        if index is None:
            return
        self.alive[index] = 0
        self.tree.add(index, -1)
        self.live -= 1

    def _rebuild(self, *, compact: bool) -> None:
        if compact:
            kept = [i for i, a in enumerate(self.alive) if a]
            self.keys = [self.keys[i] for i in kept]
            self.times = [self.times[i] for i in kept]
            self.alive = bytearray([1]) * len(kept)
            self.slot = {k: i for i, k in enumerate(self.keys)}
        capacity = max(1024, 1 << (max(1, len(self.keys)) * 2 - 1).bit_length())
        self.tree = _Fenwick(self.alive, capacity)

    def window(self, since: int | None, before: int | None) -> tuple[int, int, int]:
        """(first slot, end slot, live count) of stamps in (since, before)."""
        start = bisect.bisect_right(self.times, since) if since is not None else 0
        end = bisect.bisect_left(self.times, before) if before is not None else len(self.keys)
        end = max(start, end)
        return start, end, self.tree.prefix(end) - self.tree.prefix(start)

    def page(
        self, since: int | None, before: int | None, offset: int, count: int, desc: bool
    ) -> tuple[list[str], int]:
        start, end, total = self.window(since, before)
        if offset >= total or count <= 0:
            return [], total
        base = self.tree.prefix(start)
        out: list[str] = []
        if desc:
            index = self.tree.find(base + total - 1 - offset)
            while index >= start and len(out) < count:
                if self.alive[index]:
                    out.append(self.keys[index])
                index -= 1
        else:
            index = self.tree.find(base + offset)
            while index < end and len(out) < count:
                if self.alive[index]:
                    out.append(self.keys[index])
                index += 1
        return out, total

    def ordered(self, desc: bool) -> list[str]:
        rng = range(len(self.keys) - 1, -1, -1) if desc else range(len(self.keys))
        return [self.keys[i] for i in rng if self.alive[i]]


# ------------------------------------------------------------------ state


@dataclass
class _Audience:
    id: str
    name: str
    created: str
    merge_fields: dict[str, dict[str, Any]] = field(default_factory=dict)
    members: dict[str, dict[str, Any]] = field(default_factory=dict)
    active: _ChangeIndex = field(default_factory=_ChangeIndex)
    archived: _ChangeIndex = field(default_factory=_ChangeIndex)
    webhooks: dict[str, dict[str, Any]] = field(default_factory=dict)
    next_merge_id: int = 1


@dataclass
class _Batch:
    """One ``POST /batches`` request, applied ``delay`` seconds after it came."""

    id: str
    operations: list[dict[str, Any]]
    base_url: str
    submitted: float
    delay: float
    submitted_at: str
    completed_at: str = ""
    results: list[dict[str, Any]] | None = None
    archive: bytes = b""
    cancelled: bool = False


class _Invalid(Exception):
    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(message)
        self.field = field_name
        self.message = message


@dataclass
class MailchimpConfig(SandboxConfig):
    #: whether a tag change moves ``last_changed`` (and so shows in
    #: ``since_last_changed`` reads). Undocumented; tags are not merge fields
    #: and no webhook event announces them, so the sandbox assumes the worst
    tags_bump_last_changed: bool = False
    #: parse slashed dates in the audience's display format (kinder than reported)
    dates_follow_display_format: bool = False
    #: seconds a ``POST /batches`` request takes to finish. Mailchimp runs
    #: batches in the background ("pending" → "preprocessing" → "started" →
    #: "finalizing" → "finished"); small ones take seconds there
    batch_delay: float = 1.0


class MailchimpSandbox(SandboxApp):
    name = "mailchimp"
    config_class = MailchimpConfig
    config: MailchimpConfig
    # "10 simultaneous connections" per user, no request window
    # (mailchimp.com/developer/marketing/docs/fundamentals/); 429 without Retry-After
    config_defaults: ClassVar[dict[str, Any]] = {"rate_limit": 0, "concurrency_limit": 10}

    def reset(self) -> None:
        self.audiences: dict[str, _Audience] = {}
        self.tag_ids: dict[str, int] = {}
        self.next_web_id = 100001
        self._last_stamp = 0
        self._floor = 0
        for batch in getattr(self, "batches", {}).values():
            batch.cancelled = True
        self.batches: dict[str, _Batch] = {}
        audience = self._new_audience(DEFAULT_LIST_ID, DEFAULT_LIST_NAME)
        for tag, label, kind in (("FNAME", "First Name", "text"), ("LNAME", "Last Name", "text")):
            self._add_merge_field(audience, {"tag": tag, "name": label, "type": kind})
        self._add_merge_field(audience, {"tag": "PHONE", "name": "Phone Number", "type": "phone"})

    # -- errors and tokens -------------------------------------------------

    def error(self, status: int, message: str, **extra: Any) -> Response:
        if status == 401:
            message = (
                "Your API key may be invalid, or you've attempted to access the wrong datacenter."
            )
        body: dict[str, Any] = {
            "type": ERROR_DOCS,
            "title": extra.get("title") or TITLES.get(status, "Error"),
            "status": status,
            "detail": message,
            "instance": str(uuid.uuid4()),
        }
        if extra.get("errors"):
            body["errors"] = extra["errors"]
        return Response(status, body, "application/problem+json")

    def too_many_connections(self) -> Response:
        return self.error(
            429,
            "You have exceeded the limit of 10 simultaneous connections.",
            title="Too Many Requests",
        )

    def issue_token(self, ttl: float | None = None) -> dict[str, Any]:
        # Mailchimp OAuth tokens never expire and come without a refresh token
        access = "sbx-mc-" + secrets.token_hex(16)
        with self.lock:
            self.tokens[access] = float("inf")
        return {"access_token": access, "token_type": "bearer", "expires_in": 0, "scope": None}

    def expire_all(self) -> None:
        """Mailchimp tokens do not expire: nothing to do (revoke still works)."""

    def authorized(self, request: Request) -> bool:
        if super().authorized(request):
            return True
        # an API key is "<key>-<dc>": accept a sandbox token with a dc suffix
        token = self.token_from(request)
        if not _API_KEY_DC.search(token):
            return False
        bare = _API_KEY_DC.sub("", token)
        with self.lock:
            expires = self.tokens.get(bare)
        return bare in self.static_tokens or (expires is not None and expires > time.time())

    # -- clock -------------------------------------------------------------

    def _stamp(self) -> int:
        stamp = max(int(time.time()), self._last_stamp, self._floor)
        self._last_stamp = stamp
        return stamp

    def _served(self, members: list[dict[str, Any]]) -> None:
        newest = max(
            (_parse_time(m["last_changed"], "last_changed") for m in members), default=None
        )
        if newest is not None:
            self._floor = max(self._floor, newest + 1)

    # -- audiences and merge fields -----------------------------------------

    def _new_audience(self, list_id: str, name: str) -> _Audience:
        audience = _Audience(list_id, name, _iso(int(time.time())))
        self.audiences[list_id] = audience
        return audience

    def _audience(self, list_id: str) -> _Audience:
        audience = self.audiences.get(list_id)
        if audience is None:
            raise HttpError(404, "The requested resource could not be found.")
        return audience

    def _add_merge_field(self, audience: _Audience, body: dict[str, Any]) -> dict[str, Any]:
        kind = str(body.get("type") or "")
        name = str(body.get("name") or "").strip()
        if kind not in MERGE_TYPES:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "type", "message": f"Invalid merge field type {kind!r}"}],
            )
        if not name:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "name", "message": "This value should not be blank."}],
            )
        tag = str(body.get("tag") or re.sub(r"[^A-Z0-9_]", "", name.upper()) or "MERGE")[:10]
        tag = tag.upper()
        if tag in audience.merge_fields or tag == "EMAIL":
            raise HttpError(
                400, f'A Merge Field with the tag "{tag}" already exists for this list.'
            )
        options: dict[str, Any] = dict(body.get("options") or {})
        if kind in ("radio", "dropdown"):
            options.setdefault("choices", [])
        if kind == "date":
            options.setdefault("date_format", "MM/DD/YYYY")
        if kind == "birthday":
            options.setdefault("date_format", "MM/DD")
        if kind == "phone":
            options.setdefault("phone_format", "none")
        merge_id = audience.next_merge_id
        audience.next_merge_id += 1
        merge = {
            "merge_id": merge_id,
            "tag": tag,
            "name": name,
            "type": kind,
            "required": bool(body.get("required", False)),
            "default_value": str(body.get("default_value") or ""),
            "public": bool(body.get("public", True)),
            "display_order": merge_id + 1,
            "options": options,
            "help_text": str(body.get("help_text") or ""),
            "list_id": audience.id,
            "_links": [],
        }
        audience.merge_fields[tag] = merge
        for member in audience.members.values():
            member["merge_fields"].setdefault(tag, "")
        return merge

    def _clean_merges(
        self, audience: _Audience, merges: dict[str, Any], *, creating: bool
    ) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for tag, value in (merges or {}).items():
            merge = audience.merge_fields.get(str(tag).upper())
            if merge is None:
                raise _Invalid(str(tag), "This merge field does not exist in this audience.")
            kind = merge["type"]
            if value is None:
                value = ""
            if kind == "number" and value != "":
                if isinstance(value, bool) or not isinstance(value, int | float | str):
                    raise _Invalid(merge["tag"], "Please enter a number")
                try:
                    number = float(value)
                except ValueError as exc:
                    raise _Invalid(merge["tag"], "Please enter a number") from exc
                value = int(number) if number.is_integer() else number
            elif kind == "date" and value != "":
                value = self._clean_date(merge, str(value))
            elif kind in ("radio", "dropdown") and value != "":
                if str(value) not in merge["options"].get("choices", []):
                    raise _Invalid(merge["tag"], "Please choose one of the listed options")
            elif kind == "address" and value != "":
                if not isinstance(value, dict) or not value.get("addr1"):
                    raise _Invalid(merge["tag"], "Please enter a complete address")
            elif kind != "address":
                value = str(value)
            out[merge["tag"]] = value
        if creating:
            for merge in audience.merge_fields.values():
                if merge["required"] and out.get(merge["tag"], "") in ("", None):
                    raise _Invalid(merge["tag"], "Please enter a value")
        return out

    def _clean_date(self, merge: dict[str, Any], value: str) -> str:
        """ISO ``YYYY-MM-DD`` is taken as is; a slashed date is read month
        first whatever the audience's display format, as integrations report
        (mailchimp/mc-woocommerce#313: DD/MM sent to a DD/MM field came out
        swapped; ebizmarts/magemonkey#9 forces mm/dd/yyyy). Stored and read
        back as ``YYYY-MM-DD``. ``dates_follow_display_format`` restores the
        kind behaviour for comparison."""
        display = _DATE_FORMATS.get(str(merge["options"].get("date_format", "")).upper())
        slashed = display if self.config.dates_follow_display_format else "%m/%d/%Y"
        for candidate in ("%Y-%m-%d", slashed):
            try:
                return dt.datetime.strptime(value[:10], candidate).date().isoformat()
            except ValueError:
                continue
        raise _Invalid(merge["tag"], "Please enter the date")

    # -- members ----------------------------------------------------------

    def _member(self, audience: _Audience, key: str) -> dict[str, Any]:
        member_id = member_hash(key) if "@" in key else key.lower()
        member = audience.members.get(member_id)
        if member is None:
            raise HttpError(404, "The requested resource could not be found.")
        return member

    def _new_member(
        self,
        audience: _Audience,
        email: str,
        status: str,
        merges: dict[str, Any],
        *,
        source: str,
        stamp: int | None = None,
    ) -> dict[str, Any]:
        stamp = self._stamp() if stamp is None else stamp
        merge_values = {tag: "" for tag in audience.merge_fields}
        merge_values.update(merges)
        member_id = member_hash(email)
        member = {
            "id": member_id,
            "email_address": email.strip(),
            "unique_email_id": secrets.token_hex(5),
            "contact_id": secrets.token_hex(16),
            "full_name": "",
            "web_id": self.next_web_id,
            "email_type": "html",
            "status": status,
            "consents_to_one_to_one_messaging": True,
            "merge_fields": merge_values,
            "interests": {},
            "stats": {"avg_open_rate": 0, "avg_click_rate": 0},
            "ip_signup": "",
            "timestamp_signup": _iso(stamp) if source == "Signup form" else "",
            "ip_opt": "",
            "timestamp_opt": _iso(stamp) if status == "subscribed" else "",
            "member_rating": 2,
            "last_changed": _iso(stamp),
            "language": "",
            "vip": False,
            "email_client": "",
            "location": {
                "latitude": 0,
                "longitude": 0,
                "gmtoff": 0,
                "dstoff": 0,
                "country_code": "",
                "timezone": "",
                "region": "",
            },
            "source": source,
            "tags_count": 0,
            "tags": [],
            "list_id": audience.id,
            "_links": [],
        }
        self.next_web_id += 1
        self._full_name(member)
        audience.members[member_id] = member
        self._index(audience, member, stamp)
        return member

    def _full_name(self, member: dict[str, Any]) -> None:
        merges = member["merge_fields"]
        parts = (str(merges.get("FNAME") or ""), str(merges.get("LNAME") or ""))
        member["full_name"] = " ".join(p for p in parts if p)

    def _index(self, audience: _Audience, member: dict[str, Any], stamp: int) -> None:
        if member["status"] == "archived":
            audience.active.discard(member["id"])
            audience.archived.touch(member["id"], stamp)
        else:
            audience.archived.discard(member["id"])
            audience.active.touch(member["id"], stamp)

    def _touch(self, audience: _Audience, member: dict[str, Any]) -> None:
        stamp = self._stamp()
        member["last_changed"] = _iso(stamp)
        self._full_name(member)
        self._index(audience, member, stamp)

    def _set_status(self, member: dict[str, Any], status: str) -> None:
        if member["status"] != status and status == "subscribed":
            member["timestamp_opt"] = _iso(self._stamp())
        member["status"] = status

    def _change_email(self, audience: _Audience, member: dict[str, Any], email: str) -> None:
        new_id = member_hash(email)
        if new_id == member["id"]:
            member["email_address"] = email.strip()
            return
        if new_id in audience.members:
            raise HttpError(400, f"{email} is already a list member.", title="Member Exists")
        audience.members.pop(member["id"])
        audience.active.discard(member["id"])
        audience.archived.discard(member["id"])
        member["id"], member["email_address"] = new_id, email.strip()
        audience.members[new_id] = member

    def _set_tags(self, member: dict[str, Any], add: list[str], remove: list[str]) -> bool:
        names = [t["name"] for t in member["tags"]]
        before = list(names)
        for name in remove:
            if name in names:
                names.remove(name)
        for name in add:
            if name and name not in names:
                names.append(name)
        if names == before:
            return False
        member["tags"] = [{"id": self._tag_id(n), "name": n} for n in names]
        member["tags_count"] = len(names)
        return True

    def _tag_id(self, name: str) -> int:
        if name not in self.tag_ids:
            self.tag_ids[name] = 10000 + len(self.tag_ids)
        return self.tag_ids[name]

    # -- webhooks out ------------------------------------------------------

    def _fire(self, audience: _Audience, kind: str, source: str, data: dict[str, Any]) -> None:
        hooks = [
            h
            for h in audience.webhooks.values()
            if h["events"].get(kind) and h["sources"].get(source)
        ]
        if not hooks:
            return
        form = {"type": kind, "fired_at": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime())}
        form.update({f"data[{k}]": str(v) for k, v in data.items()})
        for hook in hooks:
            self.deliver(hook["url"], form=dict(form))

    def _member_data(self, member: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": member["unique_email_id"],
            "list_id": member["list_id"],
            "email": member["email_address"],
            "email_type": member["email_type"],
            "web_id": member["web_id"],
            "ip_opt": member["ip_opt"],
            "ip_signup": member["ip_signup"],
            "merges][EMAIL": member["email_address"],
        }
        for tag, value in member["merge_fields"].items():
            if isinstance(value, dict):
                for part, part_value in value.items():
                    data[f"merges][{tag}][{part}"] = part_value
            else:
                data[f"merges][{tag}"] = value
        return data

    def _fire_change(
        self,
        audience: _Audience,
        member: dict[str, Any],
        before: dict[str, Any],
        source: str,
    ) -> None:
        if before["email_address"] != member["email_address"]:
            self._fire(
                audience,
                "upemail",
                source,
                {
                    "list_id": audience.id,
                    "new_id": member["unique_email_id"],
                    "new_email": member["email_address"],
                    "old_email": before["email_address"],
                },
            )
        if before["status"] != member["status"]:
            if member["status"] == "unsubscribed":
                data = self._member_data(member)
                data.update({"action": "unsub", "reason": "manual", "campaign_id": ""})
                self._fire(audience, "unsubscribe", source, data)
            elif member["status"] == "archived":
                data = self._member_data(member)
                data.update({"action": "delete", "reason": "manual", "campaign_id": ""})
                self._fire(audience, "unsubscribe", source, data)
            elif member["status"] == "cleaned":
                self._fire(
                    audience,
                    "cleaned",
                    source,
                    {
                        "list_id": audience.id,
                        "campaign_id": "",
                        "reason": "hard",
                        "email": member["email_address"],
                    },
                )
            elif member["status"] == "subscribed":
                self._fire(audience, "subscribe", source, self._member_data(member))
        elif before["merge_fields"] != member["merge_fields"]:
            self._fire(audience, "profile", source, self._member_data(member))

    @staticmethod
    def _snapshot(member: dict[str, Any]) -> dict[str, Any]:
        return {
            "email_address": member["email_address"],
            "status": member["status"],
            "merge_fields": dict(member["merge_fields"]),
        }

    # -- shaping ------------------------------------------------------------

    @staticmethod
    def _pick(record: dict[str, Any], fields: list[str], prefix: str = "") -> dict[str, Any]:
        if not fields:
            return record
        keep = {f[len(prefix) :].split(".")[0] for f in fields if f.startswith(prefix)}
        return {k: v for k, v in record.items() if k in keep}

    def _list_body(self, audience: _Audience) -> dict[str, Any]:
        return {
            "id": audience.id,
            "web_id": 1000 + list(self.audiences).index(audience.id),
            "name": audience.name,
            "contact": {
                "company": "Driftsync Demo",
                "address1": "675 Ponce de Leon Ave NE",
                "city": "Atlanta",
                "state": "GA",
                "zip": "30308",
                "country": "US",
            },
            "permission_reminder": "You signed up on our website.",
            "campaign_defaults": {
                "from_name": "Driftsync Demo",
                "from_email": "demo@example.com",
                "subject": "",
                "language": "en",
            },
            "date_created": audience.created,
            "list_rating": 0,
            "email_type_option": False,
            "visibility": "prv",
            "double_optin": False,
            "stats": {
                "member_count": sum(
                    1 for m in audience.members.values() if m["status"] == "subscribed"
                ),
                "total_contacts": len(audience.members),
            },
            "_links": [],
        }

    # ================================================================ routes

    @route("GET", r"/oauth2/authorize", auth=False, name="GET /oauth2/authorize")
    def _authorize(self, request: Request) -> Response:
        return self.authorize_page(request)

    @route("POST", r"/oauth2/token", auth=False, name="POST /oauth2/token")
    def _token(self, request: Request) -> Response:
        return self.token_endpoint(request)

    @route("GET", r"/oauth2/metadata", auth=False, name="GET /oauth2/metadata")
    def _metadata(self, request: Request) -> Any:
        # the real endpoint answers a bad token with 200 and an error body
        if not self.authorized(request):
            return {"error": "invalid_token"}
        return {
            "dc": DC,
            "role": "owner",
            "accountname": "Driftsync Demo",
            "user_id": 31415926,
            "login": {
                "email": "demo@example.com",
                "avatar": None,
                "login_id": 31415926,
                "login_name": "demo",
                "login_email": "demo@example.com",
            },
            "login_url": "https://login.mailchimp.com",
            "api_endpoint": request.base_url,
        }

    @route("GET", r"/3\.0/?", name="GET /3.0/")
    def _root(self, request: Request) -> Any:
        return {
            "account_id": ACCOUNT_ID,
            "login_id": "31415926",
            "account_name": "Driftsync Demo",
            "email": "demo@example.com",
            "first_name": "Demo",
            "last_name": "Owner",
            "username": "demo",
            "avatar_url": "",
            "role": "owner",
            "member_since": "2020-01-01T00:00:00+00:00",
            "pricing_plan_type": "monthly",
            "account_timezone": "UTC",
            "account_industry": "Software",
            "contact": {"company": "Driftsync Demo", "country": "US"},
            "pro_enabled": False,
            "total_subscribers": sum(len(a.members) for a in self.audiences.values()),
            "_links": [],
        }

    @route("GET", r"/3\.0/lists", name="GET /3.0/lists")
    def _lists(self, request: Request) -> Any:
        count = min(int(request.arg("count", "10") or 10), MAX_COUNT)
        offset = int(request.arg("offset", "0") or 0)
        bodies = [self._list_body(a) for a in self.audiences.values()]
        fields = request.args("fields")
        page = [self._pick(b, fields, "lists.") for b in bodies[offset : offset + count]]
        return {"lists": page, "total_items": len(bodies), "constraints": {}, "_links": []}

    @route("POST", r"/3\.0/lists", name="POST /3.0/lists")
    def _create_list(self, request: Request) -> Any:
        body = request.json() or {}
        name = str(body.get("name") or "").strip()
        if not name:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "name", "message": "This value should not be blank."}],
            )
        audience = self._new_audience(secrets.token_hex(5), name)
        for tag, label in (("FNAME", "First Name"), ("LNAME", "Last Name")):
            self._add_merge_field(audience, {"tag": tag, "name": label, "type": "text"})
        return self._list_body(audience)

    @route("GET", r"/3\.0/lists/(?P<list_id>[^/]+)", name="GET /3.0/lists/{list_id}")
    def _get_list(self, request: Request, list_id: str) -> Any:
        return self._list_body(self._audience(list_id))

    @route(
        "GET",
        r"/3\.0/lists/(?P<list_id>[^/]+)/merge-fields",
        name="GET /3.0/lists/{list_id}/merge-fields",
    )
    def _merge_fields(self, request: Request, list_id: str) -> Any:
        audience = self._audience(list_id)
        count = min(int(request.arg("count", "10") or 10), MAX_COUNT)
        offset = int(request.arg("offset", "0") or 0)
        merges = sorted(audience.merge_fields.values(), key=lambda m: m["display_order"])
        return {
            "merge_fields": merges[offset : offset + count],
            "list_id": list_id,
            "total_items": len(merges),
            "_links": [],
        }

    @route(
        "POST",
        r"/3\.0/lists/(?P<list_id>[^/]+)/merge-fields",
        name="POST /3.0/lists/{list_id}/merge-fields",
    )
    def _add_merge(self, request: Request, list_id: str) -> Any:
        return self._add_merge_field(self._audience(list_id), request.json() or {})

    # -- members --------------------------------------------------------------

    @route(
        "GET", r"/3\.0/lists/(?P<list_id>[^/]+)/members", name="GET /3.0/lists/{list_id}/members"
    )
    def _members(self, request: Request, list_id: str) -> Any:
        audience = self._audience(list_id)
        count = max(0, min(int(request.arg("count", "10") or 10), MAX_COUNT))
        offset = max(0, int(request.arg("offset", "0") or 0))
        status = request.arg("status")
        if status and status not in STATUSES:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "status", "message": f"Invalid status {status!r}"}],
            )
        since_arg = request.arg("since_last_changed")
        before_arg = request.arg("before_last_changed")
        since = _parse_time(since_arg, "since_last_changed") if since_arg else None
        before = _parse_time(before_arg, "before_last_changed") if before_arg else None
        desc = (request.arg("sort_dir") or "ASC").upper() == "DESC"
        index = audience.archived if status == "archived" else audience.active
        if status in (None, "archived"):
            ids, total = index.page(since, before, offset, count, desc)
        else:
            # a status filter other than archived: walk the window (rare)
            start, end, _ = index.window(since, before)
            matching = [
                k
                for k in index.ordered(desc)
                if audience.members[k]["status"] == status and start <= index.slot[k] < end
            ]
            ids, total = matching[offset : offset + count], len(matching)
        members = [audience.members[i] for i in ids]
        self._served(members)
        fields = request.args("fields")
        body = {
            "members": [self._pick(m, fields, "members.") for m in members],
            "list_id": list_id,
            "total_items": total,
            "_links": [],
        }
        if fields:
            keep = {f.split(".")[0] for f in fields}
            body = {k: v for k, v in body.items() if k in keep}
        return body

    @route(
        "POST", r"/3\.0/lists/(?P<list_id>[^/]+)/members", name="POST /3.0/lists/{list_id}/members"
    )
    def _add_member(self, request: Request, list_id: str) -> Any:
        audience = self._audience(list_id)
        body = request.json() or {}
        email = str(body.get("email_address") or "").strip()
        existing = audience.members.get(member_hash(email)) if email else None
        if existing is not None and existing["status"] != "archived":
            raise HttpError(
                400,
                f"{email} is already a list member. Use PUT to insert or update list members.",
                title="Member Exists",
            )
        member = self._put(audience, email, body, source="API - Generic", require_status=True)
        return member

    @route(
        "GET",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)",
        name="GET /3.0/lists/{list_id}/members/{hash}",
    )
    def _get_member(self, request: Request, list_id: str, key: str) -> Any:
        member = self._member(self._audience(list_id), key)
        return self._pick(member, request.args("fields"))

    @route(
        "PUT",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)",
        name="PUT /3.0/lists/{list_id}/members/{hash}",
    )
    def _put_member(self, request: Request, list_id: str, key: str) -> Any:
        audience = self._audience(list_id)
        body = request.json() or {}
        email = str(body.get("email_address") or "").strip()
        expected = member_hash(key) if "@" in key else key.lower()
        if email and member_hash(email) != expected:
            raise HttpError(
                400,
                "The email address in the request body does not match the subscriber hash.",
            )
        return self._put(audience, email, body, source="API - Generic")

    def _put(
        self,
        audience: _Audience,
        email: str,
        body: dict[str, Any],
        *,
        source: str,
        require_status: bool = False,
    ) -> dict[str, Any]:
        if not _EMAIL.match(email):
            raise HttpError(
                400,
                f"{email or 'The email address'} looks fake or invalid, please enter a real "
                "email address.",
            )
        status = body.get("status")
        existing = audience.members.get(member_hash(email))
        new = existing is None or existing["status"] == "archived"
        if status is None and new and not require_status:
            status = body.get("status_if_new")
        if status is None and new:
            field_name = "status" if require_status else "status_if_new"
            raise HttpError(
                400,
                "The resource submitted could not be validated. For field-specific details, "
                "see the 'errors' array.",
                errors=[
                    {"field": field_name, "message": "Schema describes enum, NULL found instead"}
                ],
            )
        if status is not None and status not in SETTABLE_STATUSES:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "status", "message": f"Invalid status {status!r}"}],
            )
        try:
            merges = self._clean_merges(
                audience, body.get("merge_fields") or {}, creating=existing is None
            )
        except _Invalid as exc:
            raise HttpError(
                400,
                "Your merge fields were invalid.",
                errors=[{"field": exc.field, "message": exc.message}],
            ) from exc
        if existing is None:
            member = self._new_member(audience, email, str(status), merges, source=source)
            if body.get("tags"):
                self._set_tags(member, [str(t) for t in body["tags"]], [])
            if status == "subscribed":
                self._fire(audience, "subscribe", "api", self._member_data(member))
            return member
        before = self._snapshot(existing)
        existing["merge_fields"].update(merges)
        existing["email_address"] = email
        if status is not None:
            self._set_status(existing, str(status))
        self._touch(audience, existing)
        self._fire_change(audience, existing, before, "api")
        return existing

    @route(
        "PATCH",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)",
        name="PATCH /3.0/lists/{list_id}/members/{hash}",
    )
    def _patch_member(self, request: Request, list_id: str, key: str) -> Any:
        audience = self._audience(list_id)
        member = self._member(audience, key)
        body = request.json() or {}
        return self._edit(audience, member, body, "api")

    def _edit(
        self, audience: _Audience, member: dict[str, Any], body: dict[str, Any], source: str
    ) -> dict[str, Any]:
        status = body.get("status")
        if status is not None and status not in SETTABLE_STATUSES:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "status", "message": f"Invalid status {status!r}"}],
            )
        try:
            merges = self._clean_merges(audience, body.get("merge_fields") or {}, creating=False)
        except _Invalid as exc:
            raise HttpError(
                400,
                "Your merge fields were invalid.",
                errors=[{"field": exc.field, "message": exc.message}],
            ) from exc
        email = body.get("email_address")
        if email is not None and not _EMAIL.match(str(email).strip()):
            raise HttpError(
                400,
                f"{email} looks fake or invalid, please enter a real email address.",
            )
        before = self._snapshot(member)
        if email is not None:
            self._change_email(audience, member, str(email))
        member["merge_fields"].update(merges)
        if status is not None:
            self._set_status(member, str(status))
        self._touch(audience, member)
        self._fire_change(audience, member, before, source)
        return member

    @route(
        "DELETE",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)",
        name="DELETE /3.0/lists/{list_id}/members/{hash}",
    )
    def _archive_member(self, request: Request, list_id: str, key: str) -> Response:
        audience = self._audience(list_id)
        self._archive(audience, self._member(audience, key), "api")
        return Response(204, None)

    def _archive(self, audience: _Audience, member: dict[str, Any], source: str) -> None:
        if member["status"] == "archived":
            return
        before = self._snapshot(member)
        member["status"] = "archived"
        self._touch(audience, member)
        self._fire_change(audience, member, before, source)

    @route(
        "POST",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)/actions/delete-permanent",
        name="POST /3.0/lists/{list_id}/members/{hash}/actions/delete-permanent",
    )
    def _delete_permanent(self, request: Request, list_id: str, key: str) -> Response:
        audience = self._audience(list_id)
        member = self._member(audience, key)
        audience.members.pop(member["id"])
        audience.active.discard(member["id"])
        audience.archived.discard(member["id"])
        return Response(204, None)

    @route(
        "GET",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)/tags",
        name="GET /3.0/lists/{list_id}/members/{hash}/tags",
    )
    def _get_tags(self, request: Request, list_id: str, key: str) -> Any:
        member = self._member(self._audience(list_id), key)
        tags = [dict(t, date_added=member["last_changed"]) for t in member["tags"]]
        return {"tags": tags, "total_items": len(tags), "_links": []}

    @route(
        "POST",
        r"/3\.0/lists/(?P<list_id>[^/]+)/members/(?P<key>[^/]+)/tags",
        name="POST /3.0/lists/{list_id}/members/{hash}/tags",
    )
    def _post_tags(self, request: Request, list_id: str, key: str) -> Response:
        audience = self._audience(list_id)
        member = self._member(audience, key)
        body = request.json() or {}
        tags = body.get("tags")
        if not isinstance(tags, list):
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "tags", "message": "This value should be an array."}],
            )
        add, remove = [], []
        for tag in tags:
            name = str((tag or {}).get("name") or "").strip()
            state = (tag or {}).get("status")
            if not name or state not in ("active", "inactive"):
                raise HttpError(
                    400,
                    "The resource submitted could not be validated.",
                    errors=[{"field": "tags", "message": "Each tag needs a name and a status"}],
                )
            (add if state == "active" else remove).append(name)
        if self._set_tags(member, add, remove) and self.config.tags_bump_last_changed:
            self._touch(audience, member)
        return Response(204, None)

    @route("POST", r"/3\.0/lists/(?P<list_id>[^/]+)", name="POST /3.0/lists/{list_id}")
    def _batch(self, request: Request, list_id: str) -> Any:
        audience = self._audience(list_id)
        body = request.json() or {}
        members = body.get("members")
        if not isinstance(members, list):
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "members", "message": "This value should be an array."}],
            )
        if len(members) > MAX_BATCH:
            raise HttpError(
                400,
                f"You can only add or update up to {MAX_BATCH} members per request.",
                errors=[{"field": "members", "message": f"At most {MAX_BATCH} items"}],
            )
        update_existing = bool(body.get("update_existing"))
        created: list[dict[str, Any]] = []
        updated: list[dict[str, Any]] = []
        errors: list[dict[str, Any]] = []

        def refuse(email: str, message: str, code: str = "ERROR_GENERIC", **extra: str) -> None:
            errors.append({"email_address": email, "error": message, "error_code": code, **extra})

        for item in members:
            item = item or {}
            email = str(item.get("email_address") or "").strip()
            status = item.get("status")
            if not _EMAIL.match(email):
                refuse(
                    email,
                    f"{email} looks fake or invalid, please enter a real email address.",
                    field="email_address",
                    field_message="Invalid email address",
                )
                continue
            if status not in SETTABLE_STATUSES:
                refuse(email, f"Invalid status {status!r}", field="status", field_message="Invalid")
                continue
            existing = audience.members.get(member_hash(email))
            live = existing is not None and existing["status"] != "archived"
            if live and not update_existing:
                refuse(
                    email,
                    f"{email} is already a list member, do you want to update? please provide "
                    "update_existing:true in the request body",
                    "ERROR_CONTACT_EXISTS",
                )
                continue
            try:
                merges = self._clean_merges(
                    audience, item.get("merge_fields") or {}, creating=existing is None
                )
            except _Invalid as exc:
                refuse(
                    email,
                    "Your merge fields were invalid.",
                    field=exc.field,
                    field_message=exc.message,
                )
                continue
            if existing is None:
                member = self._new_member(
                    audience, email, str(status), merges, source="API - Generic"
                )
                if status == "subscribed":
                    self._fire(audience, "subscribe", "api", self._member_data(member))
                created.append(member)
            else:
                before = self._snapshot(existing)
                existing["merge_fields"].update(merges)
                self._set_status(existing, str(status))
                self._touch(audience, existing)
                self._fire_change(audience, existing, before, "api")
                (updated if live else created).append(existing)
        return {
            "new_members": created,
            "updated_members": updated,
            "errors": errors,
            "total_created": len(created),
            "total_updated": len(updated),
            "error_count": len(errors),
            "_links": [],
        }

    # -- batch operations ------------------------------------------------------
    # mailchimp.com/developer/marketing/api/batch-operations/ and the guide
    # mailchimp.com/developer/marketing/guides/run-async-requests-batch-endpoint/:
    # operations [{method, path, params, body (a JSON string), operation_id}];
    # the batch runs in the background; once "finished", response_body_url is a
    # gzip'd tar of JSON files, each an array of {status_code, operation_id,
    # response (the operation's JSON answer, as a string)}; an operation that
    # fails is an error status in its own result, the others still run

    @route("POST", r"/3\.0/batches", name="POST /3.0/batches")
    def _start_batch(self, request: Request) -> Any:
        body = request.json() or {}
        operations = body.get("operations")
        if not isinstance(operations, list):
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "operations", "message": "This value should be an array."}],
            )
        for index, op in enumerate(operations):
            problem = None
            if not isinstance(op, dict):
                problem = "Schema describes object"
            elif str(op.get("method") or "") not in ("GET", "POST", "PUT", "PATCH", "DELETE"):
                problem = "method: Schema describes enum GET, POST, PUT, PATCH, DELETE"
            elif not isinstance(op.get("path"), str) or not op["path"].startswith("/"):
                problem = "path: Schema describes string (a relative path)"
            elif "body" in op and not isinstance(op["body"], str):
                problem = "body: Schema describes string, object found instead"
            if problem:
                raise HttpError(
                    400,
                    "The resource submitted could not be validated.",
                    errors=[{"field": f"operations.{index}", "message": problem}],
                )
        batch = _Batch(
            id=secrets.token_hex(5),
            operations=operations,
            base_url=request.base_url,
            submitted=time.monotonic(),
            delay=max(0.0, self.config.batch_delay),
            submitted_at=_iso(int(time.time())),
        )
        self.batches[batch.id] = batch
        answer = self._batch_body(batch)
        if batch.delay <= 0:
            self._finish_batch(batch)
        else:
            timer = threading.Timer(batch.delay, self._finish_batch_locked, (batch,))
            timer.daemon = True
            timer.start()
        return answer

    @route("GET", r"/3\.0/batches", name="GET /3.0/batches")
    def _list_batches(self, request: Request) -> Any:
        found = [self._batch_body(self._settle(b)) for b in list(self.batches.values())]
        return {"batches": found, "total_items": len(found), "_links": []}

    @route("GET", r"/3\.0/batches/(?P<batch_id>[^/]+)", name="GET /3.0/batches/{batch_id}")
    def _get_batch(self, request: Request, batch_id: str) -> Any:
        return self._batch_body(self._settle(self._find_batch(batch_id)))

    @route("DELETE", r"/3\.0/batches/(?P<batch_id>[^/]+)", name="DELETE /3.0/batches/{batch_id}")
    def _delete_batch(self, request: Request, batch_id: str) -> Response:
        batch = self._find_batch(batch_id)
        batch.cancelled = True  # stops it; the results of finished ones are gone
        del self.batches[batch_id]
        return Response(204)

    # the archive lives elsewhere at Mailchimp (a signed storage URL, no API key)
    @route(
        "GET",
        r"/batch-results/(?P<batch_id>[^/]+)\.tar\.gz",
        auth=False,
        name="GET batch results archive",
    )
    def _batch_archive(self, request: Request, batch_id: str) -> Response:
        batch = self.batches.get(batch_id)
        if batch is None or batch.results is None:
            return Response(404, b"NoSuchKey", "application/xml")
        return Response(200, batch.archive, "application/x-tar")

    def _find_batch(self, batch_id: str) -> _Batch:
        batch = self.batches.get(batch_id)
        if batch is None:
            raise HttpError(404, "The requested resource could not be found.")
        return batch

    def _settle(self, batch: _Batch) -> _Batch:
        if batch.results is None and time.monotonic() - batch.submitted >= batch.delay:
            self._finish_batch(batch)
        return batch

    def _batch_body(self, batch: _Batch) -> dict[str, Any]:
        total = len(batch.operations)
        if batch.results is not None:
            status, finished = "finished", total
            errored = sum(1 for r in batch.results if int(r["status_code"]) >= 400)
        else:
            share = (time.monotonic() - batch.submitted) / batch.delay if batch.delay else 1.0
            stages = ((0.2, "pending"), (0.4, "preprocessing"), (0.8, "started"))
            status = next((name for upto, name in stages if share < upto), "finalizing")
            finished = 0 if share < 0.4 else min(total, int(total * (share - 0.4) / 0.4))
            errored = 0
        return {
            "id": batch.id,
            "status": status,
            "total_operations": total,
            "finished_operations": finished,
            "errored_operations": errored,
            "submitted_at": batch.submitted_at,
            "completed_at": batch.completed_at,
            "response_body_url": (
                f"{batch.base_url}/batch-results/{batch.id}.tar.gz" if batch.results else ""
            ),
            "_links": [],
        }

    def _finish_batch_locked(self, batch: _Batch) -> None:
        with self.lock:
            self._finish_batch(batch)

    def _finish_batch(self, batch: _Batch) -> None:
        if batch.results is not None or batch.cancelled:
            return
        results = [self._run_operation(batch.base_url, op) for op in batch.operations]
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
            for start in range(0, max(1, len(results)), 100):
                data = json.dumps(results[start : start + 100]).encode()
                info = tarfile.TarInfo(f"{batch.id}/{start // 100}.json")
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
        batch.archive = buffer.getvalue()
        batch.completed_at = _iso(int(time.time()))
        batch.results = results

    def _run_operation(self, base_url: str, op: dict[str, Any]) -> dict[str, Any]:
        """One operation as the API would answer it (no request of its own)."""
        method, path = str(op["method"]), "/3.0" + str(op["path"])
        params = op.get("params") if isinstance(op.get("params"), dict) else {}
        query = {str(k): [str(v)] for k, v in params.items()}
        body = str(op.get("body") or "").encode()
        response: Response | None = None
        for route_method, pattern, auth, _name, func in self._routes:
            match = pattern.match(path)
            if not match or route_method != method or not auth or path.startswith("/3.0/batches"):
                continue
            request = Request(method, path, query, {}, body, base_url)
            request.params = match.groupdict()
            try:
                result = func(request, **request.params)
            except HttpError as exc:
                response = self.error(exc.status, exc.message, **exc.extra)
            else:
                response = result if isinstance(result, Response) else Response(200, result)
            break
        if response is None:
            response = self.error(404, f"No such endpoint: {method} {path}")
        return {
            "status_code": response.status,
            "operation_id": op.get("operation_id"),
            "response": response.encode().decode() if response.body is not None else "",
        }

    # -- webhooks --------------------------------------------------------------

    @route(
        "GET", r"/3\.0/lists/(?P<list_id>[^/]+)/webhooks", name="GET /3.0/lists/{list_id}/webhooks"
    )
    def _webhooks(self, request: Request, list_id: str) -> Any:
        audience = self._audience(list_id)
        hooks = list(audience.webhooks.values())
        return {"webhooks": hooks, "list_id": list_id, "total_items": len(hooks), "_links": []}

    @route(
        "POST",
        r"/3\.0/lists/(?P<list_id>[^/]+)/webhooks",
        name="POST /3.0/lists/{list_id}/webhooks",
    )
    def _add_webhook(self, request: Request, list_id: str) -> Any:
        audience = self._audience(list_id)
        body = request.json() or {}
        url = str(body.get("url") or "").strip()
        if not url:
            raise HttpError(
                400,
                "The resource submitted could not be validated.",
                errors=[{"field": "url", "message": "This value should not be blank."}],
            )
        events = {
            k: True
            for k in ("subscribe", "unsubscribe", "profile", "cleaned", "upemail", "campaign")
        }
        events.update({k: bool(v) for k, v in (body.get("events") or {}).items()})
        sources = {"user": True, "admin": True, "api": False}
        sources.update({k: bool(v) for k, v in (body.get("sources") or {}).items()})
        hook = {
            "id": secrets.token_hex(5),
            "url": url,
            "events": events,
            "sources": sources,
            "list_id": list_id,
            "_links": [],
        }
        audience.webhooks[hook["id"]] = hook
        return hook

    @route(
        "GET",
        r"/3\.0/lists/(?P<list_id>[^/]+)/webhooks/(?P<hook_id>[^/]+)",
        name="GET /3.0/lists/{list_id}/webhooks/{id}",
    )
    def _get_webhook(self, request: Request, list_id: str, hook_id: str) -> Any:
        hook = self._audience(list_id).webhooks.get(hook_id)
        if hook is None:
            raise HttpError(404, "The requested resource could not be found.")
        return hook

    @route(
        "DELETE",
        r"/3\.0/lists/(?P<list_id>[^/]+)/webhooks/(?P<hook_id>[^/]+)",
        name="DELETE /3.0/lists/{list_id}/webhooks/{id}",
    )
    def _delete_webhook(self, request: Request, list_id: str, hook_id: str) -> Response:
        if self._audience(list_id).webhooks.pop(hook_id, None) is None:
            raise HttpError(404, "The requested resource could not be found.")
        return Response(204, None)

    # =========================================================== control API

    def _control_audience(self, request: Request) -> _Audience:
        return self._audience(request.arg("list_id") or next(iter(self.audiences)))

    def _person_merges(self, audience: _Audience, person: dict[str, Any]) -> dict[str, Any]:
        named = {
            "first_name": "FNAME",
            "last_name": "LNAME",
            "phone": "PHONE",
            "company": "COMPANY",
            "title": "TITLE",
        }
        merges: dict[str, Any] = {}
        for key, tag in named.items():
            if key in person:
                merges[tag] = person[key]
        for key, value in (person.get("custom") or {}).items():
            merges[str(key).upper()[:10]] = value
        for tag in merges:
            # a person adds the field in Mailchimp's UI before filling it in
            if tag not in audience.merge_fields:
                label = {"COMPANY": "Company", "TITLE": "Title"}.get(tag, tag.title())
                kind = "phone" if tag == "PHONE" else "text"
                self._add_merge_field(audience, {"tag": tag, "name": label, "type": kind})
        return {k: ("" if v is None else v) for k, v in merges.items()}

    def _control_create(
        self, audience: _Audience, person: dict[str, Any], *, fire: bool, stamp: int | None = None
    ) -> dict[str, Any]:
        email = str(person.get("email") or "").strip()
        if not _EMAIL.match(email):
            raise HttpError(400, "Mailchimp needs a valid email address for every contact")
        existing = audience.members.get(member_hash(email))
        if existing is not None and existing["status"] != "archived":
            raise HttpError(400, f"{email} is already a list member.", title="Member Exists")
        try:
            merges = self._clean_merges(
                audience, self._person_merges(audience, person), creating=False
            )
        except _Invalid as exc:
            raise HttpError(400, f"{exc.field}: {exc.message}") from exc
        if existing is not None:
            audience.members.pop(existing["id"])
            audience.archived.discard(existing["id"])
        member = self._new_member(
            audience, email, "subscribed", merges, source="Admin Add", stamp=stamp
        )
        self._set_tags(member, [str(t) for t in person.get("tags") or []], [])
        if fire:
            self._fire(audience, "subscribe", "admin", self._member_data(member))
        return member

    @route("POST", r"/_sandbox/contacts", auth=False)
    def _c_create(self, request: Request) -> Any:
        member = self._control_create(
            self._control_audience(request), request.json() or {}, fire=True
        )
        return {"id": member["id"]}

    @route("POST", r"/_sandbox/contacts/bulk", auth=False)
    def _c_bulk(self, request: Request) -> Any:
        audience = self._control_audience(request)
        people = (request.json() or {}).get("contacts") or []
        stamp = self._stamp()
        ids: list[str] = []
        for person in people:
            key = member_hash(str(person.get("email") or ""))
            existing = audience.members.get(key)
            if existing is not None and existing["status"] != "archived":
                ids.append(existing["id"])
                continue
            ids.append(self._control_create(audience, person, fire=False, stamp=stamp)["id"])
        return {"ids": ids}

    @route("GET", r"/_sandbox/contacts", auth=False)
    def _c_list(self, request: Request) -> Any:
        return {"contacts": list(self._control_audience(request).members.values())}

    @route("GET", r"/_sandbox/contacts/(?P<key>[^/]+)", auth=False)
    def _c_get(self, request: Request, key: str) -> Any:
        return self._member(self._control_audience(request), key)

    @route("PATCH", r"/_sandbox/contacts/(?P<key>[^/]+)", auth=False)
    def _c_patch(self, request: Request, key: str) -> Any:
        audience = self._control_audience(request)
        member = self._member(audience, key)
        person = request.json() or {}
        body: dict[str, Any] = {"merge_fields": self._person_merges(audience, person)}
        if person.get("email"):
            body["email_address"] = person["email"]
        member = self._edit(audience, member, body, "admin")
        if "tags" in person:
            wanted = [str(t) for t in person.get("tags") or []]
            current = [t["name"] for t in member["tags"]]
            changed = self._set_tags(member, wanted, [t for t in current if t not in wanted])
            if changed and self.config.tags_bump_last_changed:
                self._touch(audience, member)
        return member

    @route("DELETE", r"/_sandbox/contacts/(?P<key>[^/]+)", auth=False)
    def _c_delete(self, request: Request, key: str) -> Any:
        audience = self._control_audience(request)
        member = self._member(audience, key)
        self._archive(audience, member, "admin")
        return member

    @route("POST", r"/_sandbox/contacts/(?P<key>[^/]+)/unsubscribe", auth=False)
    def _c_unsubscribe(self, request: Request, key: str) -> Any:
        audience = self._control_audience(request)
        member = self._member(audience, key)
        if member["status"] != "unsubscribed":
            before = self._snapshot(member)
            member["status"] = "unsubscribed"
            self._touch(audience, member)
            # the subscriber clicked "unsubscribe": a user-sourced event
            self._fire_change(audience, member, before, "user")
        return member

    @route("POST", r"/_sandbox/contacts/(?P<key>[^/]+)/tags", auth=False)
    def _c_tags(self, request: Request, key: str) -> Any:
        audience = self._control_audience(request)
        member = self._member(audience, key)
        body = request.json() or {}
        add = [str(t) for t in body.get("add") or []]
        remove = [str(t) for t in body.get("remove") or []]
        if self._set_tags(member, add, remove) and self.config.tags_bump_last_changed:
            self._touch(audience, member)
        return member

    @route("POST", r"/_sandbox/lists", auth=False)
    def _c_new_list(self, request: Request) -> Any:
        body = request.json() or {}
        audience = self._new_audience(
            str(body.get("id") or secrets.token_hex(5)), str(body.get("name") or "Audience")
        )
        for tag, label in (("FNAME", "First Name"), ("LNAME", "Last Name")):
            self._add_merge_field(audience, {"tag": tag, "name": label, "type": "text"})
        for merge in body.get("merge_fields") or []:
            self._add_merge_field(audience, merge)
        return {"id": audience.id}


FACTS = SandboxFacts(
    app=MailchimpSandbox,
    api_root="/3.0",
    settings={"audience": DEFAULT_LIST_ID},
    unknown_id=member_hash("nobody-at-all@example.com"),
    create_route="POST /3.0/lists/{list_id}",
    # member by member: the batch subscribe would send a status, and the sync
    # never changes a member's status (50+ updates in one call go as PATCHes
    # inside POST /batches, asynchronous: tests/connectors/test_mailchimp_batches.py)
    update_route="PATCH /3.0/lists/{list_id}/members/{hash}",
    update_batched=False,
    refused_write=ContactWrite(None, "not-an-email", {"email_address": "not-an-email"}, ref=0),
    refused_message="looks fake or invalid",
)
