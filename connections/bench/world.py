"""A bench world: the sandboxes in a child process, seeded through their
control API, with two accounts and a connection over them."""

from __future__ import annotations

import datetime as dt
import json
import math
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests
from django.utils import timezone

from connections.accounts import refresh_account
from connections.config import apply_defaults
from connections.engine.read import INBOX_SETTLE
from connections.models import Account, Connection, WebhookEvent
from connections.webhooks import webhook_apps
from connectors import registry, sandbox
from connectors.base import Connector
from connectors.sandbox.control import SandboxControl
from connectors.webhooks import Delivery

#: a token every bench sandbox accepts (both sets of sandboxes: the replay
#: sends the very same Authorization headers)
STATIC_TOKEN = "driftsync-bench-static-token"
SIDES = ("a", "b")


def person(kind: str, i: int, *, phone: bool = True) -> dict[str, Any]:
    """One seeded person (the control API's neutral shape)."""
    out: dict[str, Any] = {
        "email": f"{kind}{i:06d}@bench.example.com",
        "first_name": f"First{kind.title()}{i}",
        "last_name": f"Last{i}",
    }
    if phone:
        out["phone"] = f"+1 555 {i % 10_000_000:07d}"
    return out


def seed_people(side: str, n: int, shared: int, differ: int) -> list[dict[str, Any]]:
    """Side ``a`` or ``b``: ``shared`` people on both sides first, then its own.

    Of the shared ones, the first ``differ`` carry a phone on one side only
    (even: on A, odd: on B), so the first sync updates both sides."""
    people = []
    for i in range(shared):
        has_phone = True
        if i < differ:
            has_phone = (i % 2 == 0) == (side == "a")
        people.append(person("both", i, phone=has_phone))
    own = "aonly" if side == "a" else "bonly"
    people.extend(person(own, i) for i in range(n - shared))
    return people


def _org_id(app: App) -> int | str:
    """The Drift org of the bench account (Drift sends it as a number)."""
    assert app.account is not None
    ref = str(app.account.remote_id)
    return int(ref) if ref.isdigit() else ref


def _drift_envelope(app: App, kind: str, data: dict[str, Any]) -> dict[str, Any]:
    """A Drift webhook body (``{"type", "token", "orgId", "createdAt", "data"}``),
    its verification token masked as the inbox stores it."""
    return {
        "type": kind,
        "token": "***",
        "orgId": _org_id(app),
        "createdAt": int(time.time() * 1000),
        "data": data,
    }


def identified(app: App, record: dict[str, Any]) -> dict[str, Any]:
    """Drift's ``contact_identified``: the whole contact, as its API answers it."""
    return _drift_envelope(app, "contact_identified", record)


def updated(app: App, before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Drift's ``contact_updated``: the contact's id and a diff of its attributes."""
    old, new = before.get("attributes") or {}, after.get("attributes") or {}
    diff = [
        {"name": f"attributes.{key}", "previous": old.get(key), "updated": new.get(key)}
        for key in sorted(set(old) | set(new))
        if old.get(key) != new.get(key) and not key.startswith("_")
    ]
    data = {
        "endUserId": after["id"],
        "timestamp": int(time.time() * 1000),
        "orgId": _org_id(app),
        "diff": diff,
    }
    return _drift_envelope(app, "contact_updated", data)


class SandboxProcess:
    """The sandboxes in a child process (``manage.py sandbox``), so this
    process's memory is driftsync's alone."""

    def __init__(self) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            port = probe.getsockname()[1]
        self.base_url = f"http://127.0.0.1:{port}"
        self.proc = subprocess.Popen(
            [sys.executable, "manage.py", "sandbox", "--port", str(port), "--token", STATIC_TOKEN],
            cwd=Path(__file__).resolve().parent.parent.parent,
            # the sandboxes need no database: keep the child off the bench's file
            env={**os.environ, "DATABASE_URL": "sqlite://:memory:", "DEBUG": "true"},
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        probe_control = SandboxControl(self.url(sandbox.SANDBOXES[0]), timeout=2)
        deadline = time.monotonic() + 60
        while True:
            try:
                probe_control.config()
                break
            except requests.ConnectionError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("the sandbox process did not start") from None
                time.sleep(0.1)

    def url(self, key: str) -> str:
        return f"{self.base_url}/{key}"

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()


class App:
    """One sandbox app of a bench world, driven through its control API."""

    def __init__(self, server: SandboxProcess, key: str) -> None:
        self.server = server
        self.key = key
        self.connector_class: type[Connector] = registry.get(key)
        self.control = SandboxControl(
            server.url(key), key=key, timeout=600, session=requests.Session()
        )
        self.account: Account | None = None
        self.settings: dict[str, Any] = {}
        self.ids: list[str] = []

    @property
    def inbox_fed(self) -> bool:
        """An app that cannot list: its contacts reach the engine through the
        webhook inbox (Drift's ``contact_identified`` / ``contact_updated``)."""
        return not self.connector_class.capabilities.list_changes

    def seed(self, people: list[dict[str, Any]], chunk: int = 2000) -> None:
        for start in range(0, len(people), chunk):
            self.ids.extend(self.control.bulk(people[start : start + chunk]))

    def make_account(self, tag: str) -> Account:
        account = Account.objects.create(
            connector=self.key,
            label=f"bench {self.key} {tag}",
            base_url=self.server.url(self.key) + sandbox.facts(self.key).api_root,
            credential_kind=Account.CredentialKind.PASTED,
        )
        account.credentials = {
            "access_token": STATIC_TOKEN,
            "refresh_token": "",
            "api_key": "",
            "extra": {},
        }
        account.save()
        refresh_account(account)
        account.refresh_from_db()
        self.account = account
        self.settings = dict(sandbox.facts(self.key).settings)
        return account


#: the sandboxes' rate limits are off in the benchmark, and its report says so
LIMITS_NOTE = (
    "off (the sandboxes' and the clients' pacing) — measures driftsync, not the apps' limits"
)
#: with --latency the apps' real limits are on: the run waits as it would for real
LIMITS_ON_NOTE = "on — each app's real concurrency and rate windows, as with the real apps"


@dataclass
class World:
    """Sandboxes, seeded, with two accounts and a connection."""

    server: SandboxProcess
    apps: dict[str, App]  # side -> app
    n: int
    shared: int
    differ: int
    conn: Connection | None = None
    latency: float = 0.0
    #: per inbox-fed side: contacts whose delivery carries the whole contact
    #: (a fresh ``contact_identified``): the engine reads none of them
    carried: dict[str, int] = field(default_factory=dict)
    tag: str = field(default_factory=lambda: uuid.uuid4().hex[:10])

    @classmethod
    def build(
        cls,
        key_a: str,
        key_b: str,
        n: int,
        overlap: float,
        differ_share: float,
        *,
        latency: float = 0.0,
    ) -> World:
        """``latency`` (seconds) > 0: every API request takes that long and the
        apps' real limits are on (their sandbox defaults: Mailchimp's 10
        connections, HubSpot's 10-second and search windows, Google's minute
        quota, Drift's conservative window). At 0 the window limits are off."""
        server = SandboxProcess()
        apps = {"a": App(server, key_a), "b": App(server, key_b)}
        for app in apps.values():
            if latency > 0:
                # the app's real limits (set explicitly: not every sandbox
                # applies its ``config_defaults`` at start) and the latency
                limits = dict(sandbox.sandbox_class(app.key).config_defaults)
                app.control.configure(**limits, latency=latency, error_rate=0.0, drop_rate=0.0)
            else:
                # limits off (the report says so: LIMITS_NOTE): the benchmark
                # measures driftsync, not the apps' rate limits
                off = {"search_rate_limit": 0} if app.key == "hubspot" else {}
                app.control.configure(
                    rate_limit=0, concurrency_limit=0, error_rate=0.0, drop_rate=0.0, **off
                )
        shared = min(n, round(n * overlap))
        differ = min(shared, round(shared * differ_share))
        world = cls(server, apps, n, shared, differ, latency=latency)
        for side, app in apps.items():
            app.seed(seed_people(side, n, shared, differ))
        return world

    def connect(self, pair: str) -> Connection:
        for app in self.apps.values():
            app.make_account(self.tag)
        a, b = self.apps["a"], self.apps["b"]
        conn = Connection.objects.create(
            name=f"bench {pair} {self.tag}",
            account_a=a.account,
            account_b=b.account,
            settings_a=a.settings,
            settings_b=b.settings,
            state=Connection.State.ACTIVE,  # measured as started, not as a draft
        )
        apply_defaults(conn)
        self.conn = conn
        for side, app in self.apps.items():
            if app.inbox_fed:
                # the contact_identified webhook of every seeded contact, as
                # Drift sends it (the whole contact) and the inbox stores it,
                # received just before the run: settled, and fresh enough
                # that the engine takes the delivery's contact instead of a read
                received = timezone.now() - INBOX_SETTLE - dt.timedelta(seconds=1)
                bodies = [identified(app, record) for record in app.control.contacts()]
                self.deliver(side, bodies, received)
                self.carried[side] = len(bodies)
        return conn

    def deliver(self, side: str, bodies: list[dict[str, Any]], received: dt.datetime) -> None:
        """Store webhook deliveries as the webhook view does: the body (its
        verification token masked), and what the app's own parser found in
        it on the row."""
        app = self.apps[side]
        hooks = webhook_apps()[app.key]
        rows = []
        for body in bodies:
            raw = json.dumps(body).encode()
            parsed = hooks.parse(Delivery(raw, "application/json", {}), {})
            first = parsed.events[0]
            rows.append(
                WebhookEvent(
                    source=app.key,
                    account=app.account,
                    received_at=received,
                    event_type=parsed.event_type[:60],
                    kind=first.kind,
                    contact_id=first.contact_id,
                    email=first.email or "",
                    occurred_at=first.occurred_at,
                    body=raw.decode(),
                )
            )
        WebhookEvent.objects.bulk_create(rows, batch_size=1000)

    def served(self) -> dict[str, Counter[str]]:
        """What each sandbox served so far, API routes only (by side)."""
        return {side: Counter(app.control.stats()) for side, app in self.apps.items()}

    def edit_spread(self, changes: int, round_no: int) -> dict[str, int]:
        """``changes`` edits spread over both sides and over the contacts."""
        per_side = {"a": math.ceil(changes / 2), "b": changes // 2}
        for side, count in per_side.items():
            app = self.apps[side]
            if not count:
                continue
            stride = max(1, len(app.ids) // count)
            offset = 0 if side == "a" else stride // 2
            picked = [app.ids[(offset + j * stride) % len(app.ids)] for j in range(count)]
            updates = []
            for j, cid in enumerate(picked):
                before = app.control.native(cid) if app.inbox_fed else None
                after = app.control.edit(cid, last_name=f"Edited{round_no}x{side}{j}")
                if before is not None:
                    updates.append(updated(app, before, after))
            if app.inbox_fed:
                # contact_updated carries an id and a diff: the engine reads those
                self.deliver(side, updates, timezone.now())
        return per_side

    def cleanup(self) -> None:
        if self.conn is not None:
            accounts = [app.account for app in self.apps.values() if app.account]
            WebhookEvent.objects.filter(account__in=accounts).delete()
            Connection.objects.filter(pk=self.conn.pk).delete()
            Account.objects.filter(pk__in=[a.pk for a in accounts]).delete()
            self.conn = None

    def stop(self) -> None:
        self.server.stop()
        for app in self.apps.values():
            app.control.close()
