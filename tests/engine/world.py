"""A small world for end-to-end runs: sandbox apps driven as a person would,
accounts pointing at them, and connections configured with the defaults."""

from __future__ import annotations

from typing import Any

from connections.accounts import refresh_account
from connections.config import apply_defaults
from connections.engine.run import run_connection
from connections.models import Account, Connection, SyncRun, WebhookEvent
from connectors.base import Contact, normalize_email
from connectors.sandbox import api_base_url, facts
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl
from tests.sandbox_limits import realistic


class App:
    """One sandbox app, seen through its control API and its connector."""

    def __init__(self, server: SandboxServer, key: str) -> None:
        self.server = server
        self.key = key
        self.url = server.url(key)
        self.account: Account | None = None
        self.settings: dict[str, Any] = {}

    def ctl(self, method: str, path: str, body: Any = None) -> Any:
        return SandboxControl.of(self.server, self.key, timeout=10).call(method, path, body)

    def reset(self) -> None:
        self.ctl("POST", "/reset")
        realistic(SandboxControl.of(self.server, self.key, timeout=10))

    def create(self, email: str | None, first: str = "", last: str = "", **extra: Any) -> str:
        person = {"email": email, "first_name": first, "last_name": last, **extra}
        return self.ctl("POST", "/contacts", person)["id"]

    def edit(self, cid: str, **person: Any) -> None:
        self.ctl("PATCH", f"/contacts/{cid}", person)

    def delete(self, cid: str) -> None:
        self.ctl("DELETE", f"/contacts/{cid}")

    def unsubscribe(self, cid: str) -> None:
        self.ctl("POST", f"/contacts/{cid}/unsubscribe")

    def tag(self, cid: str, *tags: str) -> None:
        self.ctl("POST", f"/contacts/{cid}/tags", {"add": list(tags), "remove": []})

    def stats(self) -> dict[str, int]:
        return self.ctl("GET", "/stats")

    def make_account(self) -> Account:
        token = self.ctl("POST", "/tokens", {"ttl": 3600})
        account = Account.objects.create(
            connector=self.key,
            label=f"{self.key} sandbox",
            base_url=api_base_url(self.server, self.key),
            credential_kind=Account.CredentialKind.PASTED,
        )
        account.credentials = {
            "access_token": token["access_token"],
            "refresh_token": token.get("refresh_token", ""),
            "api_key": "",
            "extra": {},
        }
        account.save()
        refresh_account(account)
        account.refresh_from_db()
        self.account = account
        self.settings = dict(facts(self.key).settings)
        return account

    def connector(self):
        assert self.account is not None
        self.account.refresh_from_db()
        return self.account.build_connector(self.settings)

    def contacts(self) -> list[Contact]:
        """Every contact, read through the connector (Drift: by the sandbox's ids)."""
        conn = self.connector()
        if conn.capabilities.list_changes:
            out: list[Contact] = []
            for page in conn.changes(None, full=True):
                out.extend(c for c in page.contacts if not c.deleted)
            return out
        ids = [str(c["id"]) for c in self.ctl("GET", "/contacts")["contacts"]]
        return list(conn.get_contacts(ids).values())

    def by_email(self, email: str) -> list[Contact]:
        key = normalize_email(email)
        return [c for c in self.contacts() if normalize_email(c.email) == key]

    def one(self, email: str) -> Contact:
        found = self.by_email(email)
        assert len(found) == 1, f"{self.key}: {len(found)} contacts with {email}"
        return found[0]


def identify_in_drift(drift: App, email: str, name: str = "", **extra: Any) -> str:
    """A visitor gives an email in Drift chat; the webhook lands in the inbox."""
    person = {"email": email, "name": name, **extra}
    cid = drift.ctl("POST", "/identify", person)["id"]
    inbox(drift, "contact_identified", "identified", cid, email)
    return cid


def inbox(drift: App, event_type: str, kind: str, cid: str, email: str = "") -> WebhookEvent:
    return WebhookEvent.objects.create(
        source="drift",
        account=drift.account,
        event_type=event_type,
        kind=kind,
        contact_id=str(cid),
        email=email,
        body="{}",
    )


def connect(a: App, b: App, **options: Any) -> Connection:
    options.setdefault("state", Connection.State.ACTIVE)  # started (a new one is a draft)
    conn = Connection.objects.create(
        name=f"{a.key} ↔ {b.key}",
        account_a=a.account,
        account_b=b.account,
        settings_a=a.settings,
        settings_b=b.settings,
        **options,
    )
    apply_defaults(conn)
    return conn


def sync(conn: Connection, **kwargs: Any) -> SyncRun:
    conn.refresh_from_db()
    run = run_connection(conn, **kwargs)
    assert run.status in (SyncRun.Status.SUCCEEDED, SyncRun.Status.PARTIAL), run.error
    return run


NAME_KEYS = {
    "drift": ("name", None),
    "google": ("given_name", "family_name"),
    "mailchimp": ("FNAME", "LNAME"),
    "hubspot": ("firstname", "lastname"),
}
PHONE_KEYS = {"drift": "phone", "google": "phone", "mailchimp": "PHONE", "hubspot": "phone"}


def full_name(app: App, contact: Contact) -> str | None:
    first, last = NAME_KEYS[app.key]
    if last is None:
        return contact.fields.get(first)
    parts = [contact.fields.get(first), contact.fields.get(last)]
    return " ".join(p for p in parts if p) or None
