"""Mailchimp audiences as a driftsync side.

A member's id is its subscriber hash (MD5 of the lower-cased email), so a
create is an idempotent upsert by construction. The sync never changes a
member's subscription status: new members get the side's
``new_member_status``; existing ones are updated with ``PATCH`` (no status)
or ``PUT`` with ``status_if_new`` only. Archived members are reported as
deleted, ``unsubscribed`` ones as unsubscribed.

Change detection reads ``GET /lists/{id}/members`` sorted by
``last_changed`` descending, with ``since_last_changed``. A read pages with
``offset`` under one fixed filter; members changed while it runs move to the
front (already passed), so offsets shift forward and only repeat rows, never
skip one; those members are newer than the read's mark and come back in the
next read. Then the same for ``status=archived`` (Mailchimp's default member
list is not documented to include archived contacts, so we ask for them).
The mark is the newest ``last_changed`` seen (second precision); the next
read re-reads that second (``since`` one second earlier) and drops the
members already seen at exactly that time, so a quiet audience costs one
request per phase and returns nothing.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any, ClassVar

from ..base import (
    FULL_NAME_KEY,
    NO_TAGS,
    AccountInfo,
    AuthError,
    Capabilities,
    ConfigError,
    Connector,
    ConnectorError,
    Contact,
    ContactRejected,
    ContactWrite,
    Credentials,
    Field,
    FieldType,
    InboxEvent,
    NotFound,
    Page,
    PermanentError,
    Semantic,
    SideSetting,
    TransientError,
    WriteResult,
    canonical_number,
    chunked,
    clean_text,
    format_datetime,
    full_name_field,
    normalize_email,
    parse_iso_datetime,
)
from ..hosts import is_vendor_url, override_allowed
from ..webhooks import Delivery, WebhookRejected
from . import webhooks as mailchimp_webhooks
from .client import (
    AUTHORIZE_URL,
    MAX_BATCH,
    MAX_COUNT,
    MAX_OPERATIONS,
    METADATA_URL,
    TOKEN_URL,
    VENDOR_HOSTS,
    MailchimpClient,
    api_root_for,
    fetch_metadata,
    subscriber_hash,
)

EMAIL_KEY = "email_address"
STATUS_KEY = "status"
#: the member status a webhook event type implies
WEBHOOK_STATUS = {"subscribe": "subscribed", "unsubscribe": "unsubscribed", "cleaned": "cleaned"}
STATUSES = ("subscribed", "unsubscribed", "cleaned", "pending", "transactional", "archived")
NEW_MEMBER_STATUSES = ("subscribed", "pending", "transactional")

#: merge tags that mean the same thing in every app (not "custom" fields)
STANDARD_TAGS: dict[str, Semantic] = {
    "FNAME": Semantic.FIRST_NAME,
    "LNAME": Semantic.LAST_NAME,
    "PHONE": Semantic.PHONE,
    "COMPANY": Semantic.COMPANY,
    "TITLE": Semantic.TITLE,
}

MERGE_TYPES: dict[str, FieldType] = {
    "text": FieldType.TEXT,
    "number": FieldType.NUMBER,
    "phone": FieldType.PHONE,
    "date": FieldType.DATE,
    # a birthday is "MM/DD" without a year: not a canonical date
    "birthday": FieldType.TEXT,
    "url": FieldType.URL,
    "imageurl": FieldType.URL,
    "radio": FieldType.CHOICE,
    "dropdown": FieldType.CHOICE,
    "address": FieldType.TEXT,
    "zip": FieldType.TEXT,
}

#: how many member ids at the mark second a cursor remembers; past that the
#: next read starts strictly after the mark instead of re-reading its second
SEEN_CAP = 1000
CURSOR_VERSION = 1
EPOCH = "1970-01-01T00:00:00Z"

#: webhook events and sources driftsync registers (api: false, so our own
#: writes never come back as webhooks)
WEBHOOK_EVENTS = {
    "subscribe": True,
    "unsubscribe": True,
    "profile": True,
    "cleaned": True,
    "upemail": True,
    "campaign": False,
}
WEBHOOK_SOURCES = {"user": True, "admin": True, "api": False}


def _seconds(value: str | None) -> int | None:
    parsed = parse_iso_datetime(value) if value else None
    return int(parsed.timestamp()) if parsed else None


def _iso(seconds: int) -> str:
    return format_datetime(dt.datetime.fromtimestamp(seconds, tz=dt.UTC))


def _query_time(seconds: int) -> str:
    return dt.datetime.fromtimestamp(seconds, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%S+00:00")


def _flatten_address(value: Any) -> str | None:
    if isinstance(value, dict):
        city_line = " ".join(
            p for p in (clean_text(value.get("state")), clean_text(value.get("zip"))) if p
        )
        parts = [
            clean_text(value.get("addr1")),
            clean_text(value.get("addr2")),
            clean_text(value.get("city")),
            city_line or None,
            clean_text(value.get("country")),
        ]
        return ", ".join(p for p in parts if p) or None
    return clean_text(value)


_DATE_FORMATS = {"MM/DD/YYYY": "%m/%d/%Y", "DD/MM/YYYY": "%d/%m/%Y"}


def _read_date(value: Any, date_format: str) -> str | None:
    text = clean_text(value)
    if text is None:
        return None
    for fmt in ("%Y-%m-%d", _DATE_FORMATS.get(date_format.upper(), "%Y-%m-%d")):
        try:
            return dt.datetime.strptime(text[:10], fmt).date().isoformat()
        except ValueError:
            continue
    return text


def _write_date(value: Any, date_format: str) -> str:
    """Always ISO ``YYYY-MM-DD``, whatever the audience displays: slashed
    dates are read month first by the API whatever the display format
    (mailchimp/mc-woocommerce#313, ebizmarts/magemonkey#9), so a DD/MM/YYYY
    audience would get days and months swapped. ``date_format`` is kept for
    reading values written by others."""
    if not value:
        return ""
    try:
        day = dt.date.fromisoformat(str(value)[:10])
    except ValueError:
        return str(value)
    return day.isoformat()


class MailchimpConnector(Connector):
    #: how often the incremental read re-reads everything to catch tag edits
    tag_rescan_seconds: ClassVar[float] = 6 * 3600.0
    key = "mailchimp"
    name = "Mailchimp"
    capabilities = Capabilities(
        list_changes=True,
        detect_deletions=True,
        detect_unsubscribes=True,
        tags=True,
        webhooks=True,
        batch_writes=True,
        custom_fields=True,
        # the member list is read from the audience itself (no index lag) and
        # archiving moves ``last_changed``; a tag edit does not, which the
        # periodic tag rescan covers here as for every read
        current_changes=True,
    )
    webhooks = mailchimp_webhooks.WEBHOOKS
    default_base_url = "https://{dc}.api.mailchimp.com/3.0"
    vendor_hosts = VENDOR_HOSTS
    page_size = MAX_COUNT
    write_batch_size = MAX_BATCH
    upsert_batches = True  # POST /lists/{id} with update_existing
    list_endpoints = frozenset({"GET /lists/{list_id}/members"})
    batch_write_endpoints = frozenset({"POST /lists/{list_id}", "POST /batches"})
    #: updates of existing members in one call from which they go through
    #: batch operations (``POST /batches``) instead of one PATCH each: a batch
    #: costs a request, a few status polls and the results archive, and
    #: finishes after seconds, so few updates are quicker as PATCHes in flight
    batch_update_threshold = 50
    #: longest wait for a batch to finish; past it, its contacts fail (retried)
    batch_max_wait = 300.0
    #: first pause between status polls, growing by ``batch_poll_growth`` up to
    #: ``batch_poll_max``: a batch is seen finished at most half its time late
    #: (doubling: up to its whole time), for about two polls more on a minute's batch
    batch_poll_first = 0.25
    batch_poll_growth = 1.5
    batch_poll_max = 5.0
    side_settings = (
        SideSetting(
            "audience",
            "Audience",
            required=True,
            help_text="The Mailchimp audience (list) this side syncs; another audience "
            "needs another connection.",
        ),
        SideSetting(
            "new_member_status",
            "Status of members added by the sync",
            help_text="subscribed (default; only with consent you can prove), pending "
            "(Mailchimp sends a double opt-in email) or transactional (no marketing). "
            "The sync never changes the status of an existing member.",
        ),
    )
    oauth_provider = "mailchimp"
    paste_label = "API key"

    authorize_url: ClassVar[str] = AUTHORIZE_URL
    token_url: ClassVar[str] = TOKEN_URL
    metadata_url: ClassVar[str] = METADATA_URL
    #: where the OAuth endpoints sit relative to a base-URL override (the
    #: sandbox serves them next to ``/3.0`` under its prefix)
    override_token_path: ClassVar[str] = "/oauth2/token"
    override_metadata_path: ClassVar[str] = "/oauth2/metadata"
    override_authorize_path: ClassVar[str] = "/oauth2/authorize"

    def __init__(
        self,
        credentials: Credentials,
        settings: dict[str, Any] | None = None,
        *,
        base_url: str | None = None,
        account_key: str = "",
        refresh_hook: Any = None,
    ) -> None:
        resolved = base_url or api_root_for(credentials) or ""
        super().__init__(
            credentials,
            settings,
            base_url=resolved or self.default_base_url,
            account_key=account_key,
            refresh_hook=refresh_hook,
        )
        self._resolved = bool(resolved)
        self._client: MailchimpClient | None = None
        self._fields: list[Field] | None = None
        self._merge_fields: dict[str, dict[str, Any]] = {}

    # -- URLs and OAuth ----------------------------------------------------

    @classmethod
    def oauth_urls(cls, base_url: str | None = None) -> dict[str, str]:
        """Authorize, token and metadata URLs: the real ones, or the sandbox's
        when ``base_url`` overrides the API root (``<prefix>/3.0``) where
        overrides are allowed."""
        if not base_url or is_vendor_url(base_url, cls.vendor_hosts) or not override_allowed():
            return {
                "authorize": cls.authorize_url,
                "token": cls.token_url,
                "metadata": cls.metadata_url,
            }
        root = base_url.rstrip("/").removesuffix("/3.0")
        return {
            "authorize": root + cls.override_authorize_path,
            "token": root + cls.override_token_path,
            "metadata": root + cls.override_metadata_path,
        }

    @classmethod
    def metadata(cls, token: str, metadata_url: str | None = None) -> dict[str, Any]:
        """After the OAuth dance: the token's ``dc``, ``api_endpoint``,
        ``user_id`` and ``accountname`` (store ``dc``/``api_endpoint`` in
        ``Credentials.extra``)."""
        return fetch_metadata(token, metadata_url or cls.metadata_url)

    # -- plumbing ----------------------------------------------------------

    @property
    def client(self) -> MailchimpClient:
        if self._client is None:
            if not self._resolved:
                raise ConfigError(
                    "Mailchimp data center unknown: an API key ends with it (e.g. -us6), "
                    "an OAuth account needs its dc from the metadata call"
                )
            self._client = MailchimpClient(
                self.base_url, self.credentials, account_key=self.account_key
            )
        return self._client

    @property
    def list_id(self) -> str:
        audience = str(self.settings.get("audience") or "").strip()
        if not audience:
            raise ConfigError("Choose a Mailchimp audience for this side of the connection")
        return audience

    @property
    def new_member_status(self) -> str:
        status = str(self.settings.get("new_member_status") or "subscribed")
        if status not in NEW_MEMBER_STATUSES:
            raise ConfigError(
                f"new_member_status must be one of {', '.join(NEW_MEMBER_STATUSES)}, not {status!r}"
            )
        return status

    def _audience_missing(self, exc: NotFound) -> ConfigError:
        return ConfigError(
            f"Mailchimp audience {self.list_id!r} does not exist or this account cannot "
            f"see it ({exc.message})",
            status=exc.status,
        )

    # -- account -----------------------------------------------------------

    def check(self) -> AccountInfo:
        root = self.client.root()
        label = root.get("account_name") or root.get("email") or str(root.get("account_id"))
        extra = {k: root[k] for k in ("login_id", "email", "username") if root.get(k)}
        return AccountInfo(remote_id=str(root.get("account_id") or ""), label=label, extra=extra)

    def side_options(self) -> dict[str, list[tuple[str, str]]]:
        audiences = [
            (str(a["id"]), f"{a.get('name') or a['id']}")
            for a in self.client.lists()
            if a.get("id")
        ]
        return {
            "audience": audiences,
            "new_member_status": [
                ("subscribed", "Subscribed"),
                ("pending", "Pending (double opt-in email)"),
                ("transactional", "Transactional (no marketing email)"),
            ],
        }

    # -- webhooks (registration) -------------------------------------------

    def register_webhook(self, url: str) -> dict[str, Any]:
        """Register ``url`` (with its secret in it: Mailchimp signs nothing) for
        user and admin changes, never API ones; idempotent per URL."""
        try:
            for hook in self.client.list_webhooks(self.list_id):
                if hook.get("url") == url:
                    return hook
            return self.client.create_webhook(
                self.list_id, url, events=dict(WEBHOOK_EVENTS), sources=dict(WEBHOOK_SOURCES)
            )
        except NotFound as exc:
            raise self._audience_missing(exc) from exc

    def unregister_webhook(self, url: str) -> int:
        removed = 0
        for hook in self.client.list_webhooks(self.list_id):
            if hook.get("url") == url:
                self.client.delete_webhook(self.list_id, str(hook["id"]))
                removed += 1
        return removed

    # -- schema ------------------------------------------------------------

    def fields(self) -> list[Field]:
        if self._fields is None:
            list_id = self.list_id if self.settings.get("audience") else self._first_audience()
            try:
                merge_fields = self.client.merge_fields(list_id)
            except NotFound as exc:
                raise self._audience_missing(exc) from exc
            self._fields = self._build_fields(merge_fields)
        return list(self._fields)

    def use_schema(self, fields: list[Field]) -> None:
        """The schema cached on the account (read within the hour) stands in
        for the merge-fields read, when it kept each merge field's own type
        and date format (a schema cached before it did is read again)."""
        super().use_schema(fields)
        merges: dict[str, dict[str, Any]] = {}
        for f in fields:
            if f.key in (EMAIL_KEY, STATUS_KEY) or f.parts:
                continue
            if not f.native_type:
                return
            options = {"date_format": f.native_format} if f.native_format else {}
            merges[f.key] = {
                "tag": f.key,
                "name": f.label,
                "type": f.native_type,
                "options": options,
            }
        self._merge_fields = merges
        self._fields = list(fields)

    def _first_audience(self) -> str:
        """Before a connection picks its audience, the account's schema (what
        the admin offers) comes from its first audience."""
        for value, _label in self.side_options().get("audience", []):
            return value
        raise ConfigError("This Mailchimp account has no audience yet: create one in Mailchimp")

    def _build_fields(self, merge_fields: list[dict[str, Any]]) -> list[Field]:
        out = [Field(EMAIL_KEY, "Email address", FieldType.EMAIL, semantic=Semantic.EMAIL)]
        self._merge_fields = {}
        ordered = sorted(merge_fields, key=lambda m: (m.get("display_order") or 0, m.get("tag")))
        for merge in ordered:
            tag = str(merge.get("tag") or "")
            if not tag or tag == "EMAIL":
                continue
            self._merge_fields[tag] = merge
            mtype = str(merge.get("type") or "text")
            choices = tuple(str(c) for c in (merge.get("options") or {}).get("choices") or ())
            out.append(
                Field(
                    tag,
                    str(merge.get("name") or tag),
                    MERGE_TYPES.get(mtype, FieldType.TEXT),
                    # an address is a structured object: flattened text cannot go back
                    read_only=mtype == "address",
                    choices=choices if mtype in ("radio", "dropdown") else (),
                    custom=tag not in STANDARD_TAGS,
                    semantic=STANDARD_TAGS.get(tag),
                    native_type=mtype,
                    native_format=str((merge.get("options") or {}).get("date_format") or ""),
                )
            )
        if "FNAME" in self._merge_fields and "LNAME" in self._merge_fields:
            out.append(full_name_field("FNAME", "LNAME"))
        out.append(
            Field(
                STATUS_KEY,
                "Subscription status",
                FieldType.CHOICE,
                read_only=True,
                choices=STATUSES,
            )
        )
        return out

    def _ensure_schema(self) -> None:
        if self._fields is None:
            self.fields()

    # -- mapping -----------------------------------------------------------

    def _read_value(self, tag: str, value: Any) -> Any:
        merge = self._merge_fields.get(tag) or {}
        mtype = merge.get("type") or "text"
        if mtype == "address":
            return _flatten_address(value)
        if mtype == "number":
            try:
                return canonical_number(value)
            except (TypeError, ValueError):
                return clean_text(value)
        if mtype == "date":
            return _read_date(value, str((merge.get("options") or {}).get("date_format") or ""))
        return clean_text(value)

    def _write_value(self, tag: str, value: Any) -> Any:
        merge = self._merge_fields.get(tag) or {}
        mtype = merge.get("type") or "text"
        if value is None:
            return ""
        if mtype == "date":
            return _write_date(value, str((merge.get("options") or {}).get("date_format") or ""))
        if mtype == "number":
            return value
        return str(value)

    def to_contact(self, member: dict[str, Any]) -> Contact:
        email = clean_text(member.get("email_address"))
        status = str(member.get("status") or "")
        fields: dict[str, Any] = {EMAIL_KEY: email, STATUS_KEY: status or None}
        merges = member.get("merge_fields") or {}
        for tag in self._merge_fields:
            fields[tag] = self._read_value(tag, merges.get(tag))
        tags = (
            frozenset(str(t.get("name")) for t in member.get("tags") or [] if isinstance(t, dict))
            or NO_TAGS
        )
        signed_up = member.get("timestamp_signup") or member.get("timestamp_opt") or None
        last_changed = member.get("last_changed") or None
        created_at = parse_iso_datetime(signed_up)
        return Contact(
            id=str(member.get("id") or subscriber_hash(email or "")),
            email=email,
            fields=fields,
            tags=tags,
            created_at=created_at,
            # one object when both times are the same (a member never changed)
            updated_at=created_at
            if last_changed == signed_up
            else parse_iso_datetime(last_changed),
            version=last_changed,
            deleted=status == "archived",
            unsubscribed=status == "unsubscribed",
        )

    # -- reading -----------------------------------------------------------

    def changes(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        self._ensure_schema()
        state = _load_cursor(cursor)
        # A tag change does not move last_changed and no webhook announces it
        # (docs/api-fidelity.md): every ``tag_rescan_seconds`` the
        # incremental read is a full one, which brings tag edits in.
        tags_due = (
            state is not None
            and "phase" not in state
            and time.time() - float(state.get("tags_at") or 0) >= self.tag_rescan_seconds
        )
        # a cursor inside a full read (a phase, no since yet) resumes that read
        if full or tags_due or state is None or not (state.get("since") or "phase" in state):
            state = {"since": None, "seen": None, "tags_at": time.time()}
        if "phase" not in state:
            state = _start_read(state)
        is_full = state["since"] is None
        since = _seconds(state["since"])
        seen = set(state["seen"] or ())
        if since is not None:
            # with the ids at the mark we can safely re-read its second
            query_since = _query_time(since - 1 if state["seen"] is not None else since)
        else:
            query_since = None
        while True:
            phase = state["phase"]
            try:
                body = self.client.list_members(
                    self.list_id,
                    count=self.page_size,
                    offset=state["offset"],
                    since_last_changed=query_since,
                    status="archived" if phase == "archived" else None,
                )
            except NotFound as exc:
                raise self._audience_missing(exc) from exc
            rows = body.get("members") or []
            contacts: list[Contact] = []
            older_seen = False
            for row in rows:
                changed = _seconds(row.get("last_changed"))
                _advance_mark(state, str(row.get("id")), changed)
                if (
                    since is not None
                    and changed is not None
                    and (changed < since or (changed == since and str(row.get("id")) in seen))
                ):
                    older_seen = older_seen or changed < since
                    continue
                contacts.append(self.to_contact(row))
            state["offset"] += len(rows)
            total = int(body.get("total_items") or 0)
            # rows come newest first: once one is older than the mark, the rest are too
            phase_done = len(rows) < self.page_size or state["offset"] >= total or older_seen
            done = False
            if phase_done and phase == "members":
                state["phase"], state["offset"] = "archived", 0
            elif phase_done:
                done = True
            if done:
                yield Page(contacts, _final_cursor(state), done=True, full_scan=is_full)
                return
            if contacts:
                yield Page(contacts, json.dumps(state), done=False, full_scan=is_full)

    def get_contacts(self, ids: Iterable[str]) -> dict[str, Contact]:
        self._ensure_schema()
        wanted = list(dict.fromkeys(i for i in ids if i))
        found = self._lookup(wanted)
        return {i: self.to_contact(m) for i, m in zip(wanted, found) if m is not None}

    def find_by_emails(self, emails: Iterable[str]) -> dict[str, list[Contact]]:
        self._ensure_schema()
        keys = list(dict.fromkeys(normalize_email(e) for e in emails if normalize_email(e)))
        found = self._lookup([subscriber_hash(k) for k in keys])
        out: dict[str, list[Contact]] = {}
        for member in found:
            if member is not None:
                contact = self.to_contact(member)
                out.setdefault(normalize_email(contact.email), []).append(contact)
        return out

    def _lookup(self, hashes: list[str]) -> list[dict[str, Any] | None]:
        client, list_id = self.client, self.list_id
        return client.http.in_flight(lambda h: client.get_member(list_id, h), hashes)

    # -- writing -----------------------------------------------------------

    def write_contacts(self, writes: list[ContactWrite]) -> list[WriteResult]:
        self._ensure_schema()
        results: list[WriteResult | None] = [None] * len(writes)
        creates: list[tuple[int, ContactWrite, dict[str, Any]]] = []
        updates: list[tuple[int, ContactWrite, dict[str, Any]]] = []
        for index, write in enumerate(writes):
            try:
                merge_fields = self._merge_payload(write)
            except ContactRejected as exc:
                results[index] = WriteResult(write.ref, error=exc)
                continue
            if write.id is None:
                creates.append((index, write, merge_fields))
            else:
                updates.append((index, write, merge_fields))
        # independent members: in flight together, up to the account's 10
        # connections (held across every client of the account by its pacing)
        http = self.client.http
        Item = tuple[int, ContactWrite, dict[str, Any]]
        tasks: list[tuple[Callable[[list[Item]], list[tuple[int, WriteResult]]], list[Item]]] = []
        batched = [u for u in updates if self._update_body(u[1], u[2])]
        if len(batched) >= self.batch_update_threshold:
            # one batch per 500 updates; it runs at Mailchimp while the other
            # requests below go (its polls hold no connection in between)
            tasks += [(self._update_batch, chunk) for chunk in chunked(batched, MAX_OPERATIONS)]
            updates = [u for u in updates if not self._update_body(u[1], u[2])]
        tasks += [(self._update_one, [u]) for u in updates]
        tasks += [(self._create_batch, chunk) for chunk in chunked(creates, self.write_batch_size)]
        for task_results in http.in_flight(lambda t: t[0](t[1]), tasks):
            for index, result in task_results:
                results[index] = result
        # tags after the member exists (created or updated above)
        tagged = [
            (index, write)
            for index, write in enumerate(writes)
            if (r := results[index]) is not None
            and r.ok
            and r.contact
            and (write.add_tags or write.remove_tags)
        ]
        for (index, _w), result in zip(
            tagged, http.in_flight(lambda t: self._apply_tags(t[1], results[t[0]]), tagged)
        ):
            results[index] = result
        return [r for r in results if r is not None]

    def _merge_payload(self, write: ContactWrite) -> dict[str, Any]:
        payload: dict[str, Any] = {}
        known = {f.key: f for f in self._fields or ()}
        for key, value in write.fields.items():
            if key in (EMAIL_KEY, STATUS_KEY):
                continue  # the email travels on its own; status is never synced
            field = known.get(key)
            if field is None or key == FULL_NAME_KEY:
                raise ContactRejected(f"Mailchimp audience has no field {key!r}")
            if field.read_only:
                raise ContactRejected(f"Mailchimp field {key!r} is read-only")
            payload[key] = self._write_value(key, value)
        return payload

    def _write_email(self, write: ContactWrite) -> str | None:
        return clean_text(write.fields.get(EMAIL_KEY) or write.email)

    def _create_batch(
        self, chunk: list[tuple[int, ContactWrite, dict[str, Any]]]
    ) -> list[tuple[int, WriteResult]]:
        out: list[tuple[int, WriteResult]] = []
        members: list[dict[str, Any]] = []
        pending: dict[str, tuple[int, ContactWrite, dict[str, Any]]] = {}
        again: list[tuple[int, ContactWrite, dict[str, Any]]] = []
        status = self.new_member_status
        for item in chunk:
            index, write, merge_fields = item
            email = self._write_email(write)
            if not email:
                out.append(
                    (
                        index,
                        WriteResult(
                            write.ref,
                            error=ContactRejected(
                                "Mailchimp needs an email address for every member"
                            ),
                        ),
                    )
                )
                continue
            key = normalize_email(email)
            if key in pending:
                again.append(item)  # same email twice: the second one updates the first
                continue
            pending[key] = item
            member: dict[str, Any] = {"email_address": email, "status": status}
            if merge_fields:
                member["merge_fields"] = merge_fields
            members.append(member)
        if members:
            try:
                # update_existing=false: an existing member's status is never touched
                body = self.client.batch_subscribe(self.list_id, members, update_existing=False)
            except NotFound as exc:
                raise self._audience_missing(exc) from exc
            except (AuthError, ConfigError):
                raise
            except ConnectorError as exc:
                return out + [(i, WriteResult(w.ref, error=_per_contact(exc))) for i, w, _ in chunk]
            for member in body.get("new_members") or []:
                item = pending.pop(normalize_email(member.get("email_address")), None)
                if item:
                    out.append((item[0], WriteResult(item[1].ref, contact=self.to_contact(member))))
            for member in body.get("updated_members") or []:
                item = pending.pop(normalize_email(member.get("email_address")), None)
                if item:
                    out.append((item[0], WriteResult(item[1].ref, contact=self.to_contact(member))))
            for error in body.get("errors") or []:
                key = normalize_email(error.get("email_address"))
                item = pending.get(key)
                if item is None:
                    continue
                if error.get("error_code") == "ERROR_CONTACT_EXISTS":
                    again.append(pending.pop(key))
                else:
                    pending.pop(key)
                    message = str(error.get("error") or "Mailchimp rejected the member")
                    if error.get("field"):
                        message += f" ({error['field']}: {error.get('field_message') or ''})"
                    out.append(
                        (
                            item[0],
                            WriteResult(
                                item[1].ref,
                                error=ContactRejected(
                                    message, status=400, code=str(error.get("error_code") or "")
                                ),
                            ),
                        )
                    )
            # neither created nor refused (should not happen): upsert makes sure
            again.extend(pending.values())
        for index, write, merge_fields in again:
            out.append((index, self._upsert(write, merge_fields)))
        return out

    def _upsert(self, write: ContactWrite, merge_fields: dict[str, Any]) -> WriteResult:
        """PUT by hash with ``status_if_new``: creates, or updates an existing
        member's fields without touching its status."""
        email = self._write_email(write) or ""
        body: dict[str, Any] = {"email_address": email, "status_if_new": self.new_member_status}
        if merge_fields:
            body["merge_fields"] = merge_fields
        try:
            member = self.client.upsert_member(self.list_id, subscriber_hash(email), body)
        except NotFound as exc:
            raise self._audience_missing(exc) from exc
        except (AuthError, ConfigError):
            raise
        except ConnectorError as exc:
            return WriteResult(write.ref, error=_per_contact(exc))
        return WriteResult(write.ref, contact=self.to_contact(member))

    def _update_body(self, write: ContactWrite, merge_fields: dict[str, Any]) -> dict[str, Any]:
        """The PATCH body of an update: merge fields and a new email, never a status."""
        body: dict[str, Any] = {}
        if merge_fields:
            body["merge_fields"] = merge_fields
        new_email = clean_text(write.fields.get(EMAIL_KEY))
        current_email = write.current.email if write.current else write.email
        if new_email and normalize_email(new_email) != normalize_email(current_email):
            body["email_address"] = new_email
        return body

    def _update_batch(
        self, chunk: list[tuple[int, ContactWrite, dict[str, Any]]]
    ) -> list[tuple[int, WriteResult]]:
        """Updates of existing members as one batch operations request: the
        same PATCH each (no status), run by Mailchimp in the background; each
        operation's answer comes back in the results archive with its own
        status, so a member Mailchimp refuses fails alone."""
        client = self.client
        operations = []
        for index, write, merge_fields in chunk:
            assert write.id is not None
            operations.append(
                {
                    "method": "PATCH",
                    "path": f"/lists/{self.list_id}/members/{write.id}",
                    "body": json.dumps(self._update_body(write, merge_fields)),
                    "operation_id": str(index),
                }
            )

        def everyone(error: ConnectorError) -> list[tuple[int, WriteResult]]:
            return [(i, WriteResult(w.ref, error=error)) for i, w, _ in chunk]

        try:
            batch = client.start_batch(operations)
            batch_id = str(batch.get("id") or "")
            waited, pause = 0.0, self.batch_poll_first
            while batch.get("status") != "finished":
                if waited >= self.batch_max_wait:
                    with contextlib.suppress(ConnectorError):
                        client.delete_batch(batch_id)  # stop what has not run yet
                    return everyone(
                        TransientError(
                            f"Mailchimp batch {batch_id} did not finish within "
                            f"{self.batch_max_wait:.0f} s (status {batch.get('status')!r}); "
                            "the update is sent again next run"
                        )
                    )
                pause = min(pause, self.batch_max_wait - waited)
                client.http.sleep(pause)
                waited += pause
                pause = min(pause * self.batch_poll_growth, self.batch_poll_max)
                batch = client.batch_status(batch_id)
            rows = client.batch_results(str(batch.get("response_body_url") or ""))
        except (AuthError, ConfigError):
            raise
        except NotFound as exc:  # the batch itself, not a member, is gone
            return everyone(TransientError(f"Mailchimp batch failed: {exc}", status=404))
        except ConnectorError as exc:
            return everyone(_per_contact(exc))
        by_op = {str(r.get("operation_id")): r for r in rows}
        out: list[tuple[int, WriteResult]] = []
        for index, write, _m in chunk:
            row = by_op.get(str(index))
            if row is None:
                error: ConnectorError = TransientError(
                    f"Mailchimp batch {batch_id} returned no result for this member"
                )
                out.append((index, WriteResult(write.ref, error=error)))
                continue
            out.append((index, self._batch_result(write, row)))
        return out

    def _batch_result(self, write: ContactWrite, row: dict[str, Any]) -> WriteResult:
        status = int(row.get("status_code") or 0)
        try:
            answer = json.loads(row.get("response") or "null")
        except ValueError:
            answer = None
        if 200 <= status < 300 and isinstance(answer, dict) and answer.get("id"):
            return WriteResult(write.ref, contact=self.to_contact(answer))
        message = f"HTTP {status}"
        if isinstance(answer, dict):
            message = str(answer.get("detail") or answer.get("title") or message)
            field_errors = [
                f"{e.get('field') or 'value'}: {e.get('message')}"
                for e in answer.get("errors") or []
                if isinstance(e, dict) and e.get("message")
            ]
            if field_errors:
                message = f"{message} ({'; '.join(field_errors)})"
        if status == 404:
            return WriteResult(write.ref, error=NotFound(message, status=404))
        if status in (429,) or status >= 500 or status < 200:
            return WriteResult(write.ref, error=TransientError(message, status=status))
        return WriteResult(write.ref, error=ContactRejected(message, status=status))

    def _update_one(
        self, items: list[tuple[int, ContactWrite, dict[str, Any]]]
    ) -> list[tuple[int, WriteResult]]:
        return [(index, self._update(write, merge_fields)) for index, write, merge_fields in items]

    def _update(self, write: ContactWrite, merge_fields: dict[str, Any]) -> WriteResult:
        assert write.id is not None
        body = self._update_body(write, merge_fields)
        if not body and write.current is not None:
            return WriteResult(write.ref, contact=write.current)
        try:
            if body:
                member = self.client.update_member(self.list_id, write.id, body)
            else:
                member = self.client.get_member(self.list_id, write.id)
                if member is None:
                    raise NotFound(f"Mailchimp member {write.id} not found", status=404)
        except (AuthError, ConfigError):
            raise
        except ConnectorError as exc:
            return WriteResult(write.ref, error=_per_contact(exc))
        return WriteResult(write.ref, contact=self.to_contact(member))

    def _apply_tags(self, write: ContactWrite, result: WriteResult) -> WriteResult:
        contact = result.contact
        assert contact is not None
        remove = write.remove_tags - write.add_tags
        tags = [{"name": t, "status": "active"} for t in sorted(write.add_tags)]
        tags += [{"name": t, "status": "inactive"} for t in sorted(remove)]
        try:
            self.client.update_member_tags(self.list_id, contact.id, tags)
        except (AuthError, ConfigError):
            raise
        except ConnectorError as exc:
            return WriteResult(write.ref, contact=contact, error=_per_contact(exc))
        contact.tags = frozenset((contact.tags | write.add_tags) - remove)
        return WriteResult(write.ref, contact=contact)

    # -- webhooks (receiving) ----------------------------------------------

    def parse_webhook(
        self, body: bytes, content_type: str, headers: dict[str, str]
    ) -> list[InboxEvent]:
        """The deliveries ``mailchimp.webhooks`` parses, as contacts."""
        try:
            parsed = mailchimp_webhooks.parse(Delivery(body, content_type, headers), self.settings)
        except WebhookRejected as exc:
            raise PermanentError(exc.reason) from exc
        events = []
        for event in parsed.events:
            email = event.email or ""
            if event.kind == "email_changed":
                contact_id = event.new_contact_id or event.contact_id
                contact = Contact(id=contact_id, email=email, fields={EMAIL_KEY: email})
            else:
                fields: dict[str, Any] = {EMAIL_KEY: email}
                for tag, value in (event.record or {}).items():
                    fields[tag] = self._read_value(tag, value)
                status = WEBHOOK_STATUS.get(parsed.event_type)
                if event.deleted:
                    status = "archived"
                if status:
                    fields[STATUS_KEY] = status
                contact = Contact(
                    id=event.contact_id,
                    email=email,
                    fields=fields,
                    deleted=event.deleted,
                    unsubscribed=event.unsubscribed,
                )
            events.append(
                InboxEvent(event.kind, event.contact_id, email, contact, event.occurred_at)
            )
        return events


# ---------------------------------------------------------------- cursors


def _load_cursor(cursor: str | None) -> dict[str, Any] | None:
    if not cursor:
        return None
    try:
        state = json.loads(cursor)
    except ValueError:
        return None  # a cursor we cannot read means: read everything again
    if not isinstance(state, dict) or state.get("v") != CURSOR_VERSION:
        return None
    return state


def _start_read(state: dict[str, Any]) -> dict[str, Any]:
    since = state.get("since")
    seen = state.get("seen")
    return {
        "v": CURSOR_VERSION,
        "since": since,
        "seen": seen,
        "phase": "members",
        "offset": 0,
        "mark": since,
        # None = too many ids at the mark to remember
        "mark_ids": list(seen or ()) if seen is not None or since is None else None,
        "tags_at": state.get("tags_at") or 0,
    }


def _advance_mark(state: dict[str, Any], member_id: str, changed: int | None) -> None:
    if changed is None:
        return
    mark = _seconds(state.get("mark"))
    if mark is None or changed > mark:
        state["mark"], state["mark_ids"] = _iso(changed), [member_id]
    elif changed == mark and state["mark_ids"] is not None:
        if member_id not in state["mark_ids"]:
            state["mark_ids"].append(member_id)
        if len(state["mark_ids"]) > SEEN_CAP:
            state["mark_ids"] = None


def _final_cursor(state: dict[str, Any]) -> str:
    mark = state.get("mark")
    tags_at = state.get("tags_at") or 0
    if not mark:
        return json.dumps({"v": CURSOR_VERSION, "since": EPOCH, "seen": [], "tags_at": tags_at})
    return json.dumps(
        {"v": CURSOR_VERSION, "since": mark, "seen": state.get("mark_ids"), "tags_at": tags_at}
    )


def _per_contact(exc: ConnectorError) -> ConnectorError:
    """A per-member failure as the result's error: a refusal is ContactRejected."""
    if isinstance(exc, PermanentError) and not isinstance(exc, ContactRejected | NotFound):
        return ContactRejected(exc.message, status=exc.status, code=exc.code)
    return exc
