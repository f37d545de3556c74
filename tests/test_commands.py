"""The management commands: output, exit status, and what they change."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from django.core.management import call_command
from django.core.management.base import CommandError
from django_q.models import Schedule

from connections import locking
from connections.accounts import refresh_account
from connections.config import apply_defaults
from connections.management.commands import sync as sync_command
from connections.models import Account, Connection, SyncRun
from connectors.sandbox import api_base_url, serve
from connectors.sandbox.base import SandboxServer
from connectors.sandbox.control import SandboxControl

ROOT = Path(__file__).resolve().parent.parent


class Sandbox:
    def __init__(self, server: SandboxServer, key: str) -> None:
        self.server, self.key = server, key
        self.root = server.url(key)
        self.token = ""

    def ctl(self, method: str, path: str, body: Any = None) -> Any:
        return SandboxControl.of(self.server, self.key, timeout=10).call(method, path, body)

    def api(self, method: str, path: str, body: Any = None) -> Any:
        response = requests.request(
            method,
            api_base_url(self.server, self.key) + path,
            json=body,
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        assert response.status_code < 400, response.text
        return response.json() if response.content else None

    def account(self) -> Account:
        self.token = self.ctl("POST", "/tokens", {"ttl": 3600})["access_token"]
        account = Account.objects.create(
            connector=self.key,
            label=f"{self.key} sandbox",
            base_url=api_base_url(self.server, self.key),
        )
        account.credentials = {"access_token": self.token, "api_key": "", "extra": {}}
        account.save()
        refresh_account(account)
        account.refresh_from_db()
        return account


@pytest.fixture(scope="module")
def server() -> Iterator[SandboxServer]:
    srv = serve(keys=("google", "hubspot", "mailchimp"))
    yield srv
    srv.stop()


@pytest.fixture
def apps(server: SandboxServer, db: None) -> dict[str, Sandbox]:
    out = {key: Sandbox(server, key) for key in ("google", "hubspot", "mailchimp")}
    for app in out.values():
        app.ctl("POST", "/reset")
    return out


@pytest.fixture
def conn(apps: dict[str, Sandbox]) -> Connection:
    connection = Connection.objects.create(
        name="google ↔ hubspot",
        account_a=apps["google"].account(),
        account_b=apps["hubspot"].account(),
        state=Connection.State.ACTIVE,
    )
    apply_defaults(connection)
    apps["google"].ctl(
        "POST", "/contacts", {"email": "ann@example.com", "first_name": "Ann", "last_name": "Lee"}
    )
    return connection


def sync(*args: str, stdout: io.StringIO | None = None) -> str:
    out = stdout or io.StringIO()
    call_command("sync", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


# -------------------------------------------------------------------- sync


@pytest.mark.integration
def test_sync_runs_a_connection_by_name_and_prints_a_summary(
    conn: Connection, apps: dict[str, Sandbox]
) -> None:
    output = sync(conn.name)
    run = SyncRun.objects.get()
    assert run.trigger == "command"
    assert run.status == SyncRun.Status.SUCCEEDED
    assert f'Syncing "google ↔ hubspot" (#{conn.pk})' in output
    assert (
        "progress: A Google Contacts: 1 read · B HubSpot: 0 read" in output
    )  # plain lines when not on a terminal
    assert f"Run #{run.pk}: succeeded" in output
    assert "A Google Contacts: scanned 1" in output
    assert "B HubSpot: created 1" in output
    assert apps["hubspot"].ctl("GET", "/contacts")["contacts"]
    assert Connection.objects.get(pk=conn.pk).running_since is None


@pytest.mark.integration
def test_sync_by_id_with_dry_run_writes_nothing(conn: Connection, apps: dict[str, Sandbox]) -> None:
    output = sync(str(conn.pk), "--dry-run", "--full")
    assert "[dry run] [full]" in output
    run = SyncRun.objects.get()
    assert run.dry_run
    assert run.full
    assert apps["hubspot"].ctl("GET", "/contacts")["contacts"] == []


@pytest.mark.integration
def test_sync_on_a_terminal_rewrites_one_progress_line(conn: Connection) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    output = sync(conn.name, stdout=Terminal())
    assert "\r  A Google Contacts: 1 read · B HubSpot: 0 read" in output
    assert "progress:" not in output


@pytest.mark.integration
def test_sync_records_the_user_given_or_the_os_user(
    conn: Connection, django_user_model: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ops = django_user_model.objects.create_user("ops")
    alice = django_user_model.objects.create_user("alice")
    sync(conn.name, "--user", "ops")
    monkeypatch.setattr(sync_command.getpass, "getuser", lambda: "alice")
    sync(conn.name)
    monkeypatch.setattr(sync_command.getpass, "getuser", lambda: "root")
    sync(conn.name)
    users = [r.started_by for r in SyncRun.objects.order_by("started_at")]
    assert users == [ops, alice, None]
    with pytest.raises(CommandError, match="No Django user 'nobody'"):
        sync(conn.name, "--user", "nobody")


@pytest.mark.integration
def test_sync_all_runs_active_connections_and_skips_paused_ones(
    conn: Connection, make_connection: Callable[..., Connection]
) -> None:
    paused = make_connection(state=Connection.State.PAUSED, name="resting")
    output = sync("--all")
    assert f'Skipped "resting" (#{paused.pk}) is paused: not run.' in output
    assert list(SyncRun.objects.values_list("connection", flat=True)) == [conn.pk]


@pytest.mark.integration
def test_sync_of_a_paused_connection_fails(make_connection: Callable[..., Connection]) -> None:
    conn = make_connection(state=Connection.State.PAUSED, name="resting")
    with pytest.raises(CommandError, match="is paused: not run"):
        sync("resting")
    assert not SyncRun.objects.filter(connection=conn).exists()


@pytest.mark.integration
def test_sync_of_a_busy_connection_fails_or_waits(
    conn: Connection, monkeypatch: pytest.MonkeyPatch
) -> None:
    held = locking.claim(conn.pk)
    assert held is not None
    with pytest.raises(CommandError, match=r"already running .*use --wait"):
        sync(conn.name)
    assert not SyncRun.objects.exists()
    # the run in progress finishes while we wait
    clock = types.SimpleNamespace(monotonic=lambda: 0.0, sleep=lambda s: held.release())
    monkeypatch.setattr(sync_command, "time", clock)
    output = sync(conn.name, "--wait")
    assert "already running; waiting" in output
    assert SyncRun.objects.get().status == SyncRun.Status.SUCCEEDED


@pytest.mark.integration
def test_sync_exits_with_an_error_when_a_run_fails(
    conn: Connection, apps: dict[str, Sandbox]
) -> None:
    apps["hubspot"].ctl("POST", "/tokens/revoke")
    out = io.StringIO()
    with pytest.raises(CommandError, match=r"run #\d+ of \"google ↔ hubspot\" failed"):
        sync(conn.name, stdout=out)
    assert "failed in" in out.getvalue()
    assert "error: Account needs re-authorization" in out.getvalue()


def test_sync_needs_a_connection(db: None) -> None:
    with pytest.raises(CommandError, match="Give a CONNECTION"):
        sync()
    with pytest.raises(CommandError, match="No connection with id or name 'nope'"):
        sync("nope")


def test_an_unknown_connection_name_lists_the_valid_ones(
    make_connection: Callable[..., Connection],
) -> None:
    first = make_connection(name="Drift to HubSpot")
    second = make_connection(name="Google to Mailchimp")
    with pytest.raises(CommandError) as caught:
        sync("Drift to Hubspot")
    message = str(caught.value)
    assert f"{first.pk} 'Drift to HubSpot'" in message
    assert f"{second.pk} 'Google to Mailchimp'" in message


@pytest.mark.integration
def test_sync_all_fails_when_a_connection_is_in_error_and_says_so_once(
    conn: Connection, make_connection: Callable[..., Connection]
) -> None:
    broken = make_connection(
        state=Connection.State.ERROR, state_reason="Mailchimp: no audience", name="broken"
    )
    out, err = io.StringIO(), io.StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("sync", "--all", stdout=out, stderr=err)
    assert str(caught.value) == '1 of 2 connections did not sync: "broken" (the reasons are above).'
    said = out.getvalue() + err.getvalue() + str(caught.value)
    assert said.count("Mailchimp: no audience") == 1
    assert f'"broken" (#{broken.pk}) is in error: not run.' in err.getvalue()
    # the healthy connection still ran
    assert list(SyncRun.objects.values_list("connection", flat=True)) == [conn.pk]


def test_manage_py_sync_exits_non_zero_on_failure(tmp_path: Path) -> None:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}",
    }

    def manage(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert manage("migrate", "-v", "0").returncode == 0
    failed = manage("sync", "42")
    assert failed.returncode == 1
    assert "No connection with id or name '42'" in failed.stderr
    ok = manage("sync", "--all")
    assert ok.returncode == 0, ok.stderr


# -------------------------------------------------------- ensure_schedules


def test_ensure_schedules_reports_and_is_idempotent(
    make_connection: Callable[..., Connection],
) -> None:
    conn = make_connection()
    Schedule.objects.all().delete()
    out = io.StringIO()
    call_command("ensure_schedules", stdout=out)
    assert out.getvalue().strip() == "Schedules: 1 created, 0 updated, 0 removed, 0 already right."
    assert Schedule.objects.filter(name=f"driftsync-connection-{conn.pk}").exists()
    out = io.StringIO()
    call_command("ensure_schedules", stdout=out)
    assert out.getvalue().strip() == "Schedules: 0 created, 0 updated, 0 removed, 1 already right."


# ------------------------------------------------------- register_webhooks


@pytest.mark.integration
def test_register_webhooks_registers_mailchimp_once_and_prints_the_drift_url(
    apps: dict[str, Sandbox], make_account: Callable[..., Account], settings: Any
) -> None:
    settings.PUBLIC_URL = "https://sync.example.com"
    mailchimp = apps["mailchimp"]
    account = mailchimp.account()
    audience = mailchimp.api("GET", "/lists")["lists"][0]["id"]
    conn = Connection.objects.create(
        name="drift ↔ mailchimp",
        account_a=make_account("drift"),
        account_b=account,
        settings_b={"audience": audience},
    )
    url = f"https://sync.example.com/webhooks/mailchimp/{conn.webhook_secret}/"

    def hooks() -> list[dict[str, Any]]:
        return mailchimp.api("GET", f"/lists/{audience}/webhooks")["webhooks"]

    out = io.StringIO()
    call_command("register_webhooks", conn.name, stdout=out)
    assert f"registered Mailchimp webhook on audience {audience}" in out.getvalue()
    assert conn.webhook_secret not in out.getvalue()
    assert "Drift: paste https://sync.example.com/webhooks/drift/" in out.getvalue()
    (hook,) = hooks()
    assert hook["url"] == url
    assert {k for k, on in hook["events"].items() if on} == {
        "unsubscribe",
        "profile",
        "upemail",
        "cleaned",
    }
    assert hook["sources"] == {"user": True, "admin": True, "api": False}

    out = io.StringIO()
    call_command("register_webhooks", "--all", stdout=out)
    assert "already registered" in out.getvalue()
    assert len(hooks()) == 1

    # a new secret: the old URL is removed, the new one registered
    Connection.objects.filter(pk=conn.pk).update(webhook_secret="rotated-secret")
    out = io.StringIO()
    call_command("register_webhooks", str(conn.pk), stdout=out)
    assert "removed a stale Mailchimp webhook" in out.getvalue()
    url = url.replace(conn.webhook_secret, "rotated-secret")
    assert [h["url"] for h in hooks()] == [url]

    # a webhook registered with the old /<id>/<secret>/ URL is replaced; another
    # connection's webhook on the same audience is left alone
    other = Connection.objects.create(
        name="other", account_a=make_account("drift"), account_b=account
    )
    mailchimp.api(
        "POST",
        f"/lists/{audience}/webhooks",
        {"url": f"https://sync.example.com/webhooks/mailchimp/{conn.pk}/rotated-secret/"},
    )
    theirs = f"https://sync.example.com/webhooks/mailchimp/{other.webhook_secret}/"
    mailchimp.api("POST", f"/lists/{audience}/webhooks", {"url": theirs})
    out = io.StringIO()
    call_command("register_webhooks", str(conn.pk), stdout=out)
    assert "removed a stale Mailchimp webhook" in out.getvalue()
    assert sorted(h["url"] for h in hooks()) == sorted([url, theirs])


@pytest.mark.integration
def test_register_webhooks_fails_when_mailchimp_refuses(
    apps: dict[str, Sandbox], make_account: Callable[..., Account]
) -> None:
    account = apps["mailchimp"].account()
    conn = Connection.objects.create(
        name="no audience",
        account_a=make_account("google"),
        account_b=account,
        settings_b={"audience": "does-not-exist"},
    )
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 webhook registration"):
        call_command("register_webhooks", conn.name, stdout=io.StringIO(), stderr=err)
    assert "audience 'does-not-exist' not found" in err.getvalue()
