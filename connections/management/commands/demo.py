"""``python manage.py demo``: the whole tool with demo data, for ``make run``.

Starts the four sandbox APIs on loopback with demo contacts, creates (once)
demo accounts pointing at them and three demo connections (Drift ↔ Google
Contacts, Drift ↔ Mailchimp, Drift ↔ HubSpot), an admin user with a random
password printed once, then the web server and a django-q2 cluster. A
background "life" thread keeps the demo moving: visitors identified in Drift
chat, edits in Google Contacts, unsubscribes in Mailchimp. Ctrl-C stops
everything it started.
"""

from __future__ import annotations

import os
import random
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import requests
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError, CommandParser

from connections.accounts import refresh_account
from connections.config import apply_defaults, option_support
from connections.models import Account, Connection, ContactLink, SyncEvent, SyncRun
from connections.schedules import reconcile
from connections.tasks import enqueue_sync
from connectors import sandbox
from connectors.base import ConnectorError
from connectors.sandbox.control import SandboxControl, SandboxControlError
from connectors.sandbox.demo import POOL, seed_demo

DEMO_TOKEN = "driftsync-demo-token"
DEMO_VERIFICATION = "driftsync-demo-verification"
PAIRS = (("google", "Google Contacts"), ("mailchimp", "Mailchimp"), ("hubspot", "HubSpot"))


class Command(BaseCommand):
    help = (
        "Run driftsync with demo data: sandbox APIs on loopback, demo accounts and "
        "connections, an admin user, the web server and a task cluster. Ctrl-C stops all."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1", help="web server address")
        parser.add_argument("--port", type=int, default=8000, help="web server port")
        parser.add_argument(
            "--sandbox-port", type=int, default=8700, help="port of the sandbox APIs"
        )
        parser.add_argument(
            "--life-interval",
            type=float,
            default=20.0,
            help="seconds between simulated actions of people in the apps (0: none)",
        )
        parser.add_argument(
            "--no-servers",
            action="store_true",
            help="set up sandboxes, accounts and connections, then exit (for tests)",
        )

    def handle(self, *args: Any, **opts: Any) -> None:
        host, port = opts["host"], opts["port"]
        public = f"http://{host}:{port}"
        # before anything starts: a busy port is said plainly, with the way out
        if not opts["no_servers"]:
            check_port(host, port, "web server", "PORT")
        check_port("127.0.0.1", opts["sandbox_port"], "sandbox APIs", "SANDBOX_PORT")
        os.environ.setdefault("DRIFT_VERIFICATION_TOKEN", DEMO_VERIFICATION)
        server = sandbox.serve("127.0.0.1", opts["sandbox_port"], tokens=(DEMO_TOKEN,))
        seed_demo(server)
        SandboxControl.of(server, "drift", timeout=10).register_webhook(
            f"{public}/webhooks/drift/", DEMO_VERIFICATION
        )
        self.stdout.write(f"Sandbox APIs on {server.base_url} (/drift /google /mailchimp /hubspot)")

        connections = self.setup_world(server)
        password = self.ensure_admin()
        reconcile()
        if opts["no_servers"]:
            server.stop()
            return

        env = {
            **os.environ,
            "DRIFT_VERIFICATION_TOKEN": DEMO_VERIFICATION,
            "DEBUG": "true",
            "PUBLIC_URL": public,
            # alerts print on the console: the demo has no mail server
            "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
            "EMAIL_URL": "",
            # the task cluster's chatter would scroll the banner away
            "Q_LOG_LEVEL": os.environ.get("Q_LOG_LEVEL", "WARNING"),
        }
        manage = [sys.executable, "manage.py"]
        children = [
            subprocess.Popen([*manage, "runserver", "--noreload", f"{host}:{port}"], env=env),
            subprocess.Popen([*manage, "qcluster"], env=env),
        ]
        for conn in connections:
            enqueue_sync(conn, trigger=SyncRun.Trigger.MANUAL)

        stop = threading.Event()
        try:
            wait_until_answering(f"{public}/admin/login/", children)
        except CommandError:
            stop_children(children)
            server.stop()
            raise
        if opts["life_interval"] > 0:
            threading.Thread(
                target=self.life, args=(server, public, opts["life_interval"], stop), daemon=True
            ).start()

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"driftsync is running: {public}/admin/"))
        if password:
            self.stdout.write(f"  log in as: admin / {password}   (shown once; keep it)")
        else:
            self.stdout.write(
                "  log in with your existing admin user "
                "(forgot it? `.venv/bin/python manage.py changepassword admin`)"
            )
        self.stdout.write("  the demo connections sync within a minute; Ctrl-C stops everything")
        self.stdout.flush()

        def shutdown(*_: Any) -> None:
            stop.set()

        signal.signal(signal.SIGTERM, shutdown)
        crashed = False
        try:
            while not stop.is_set():
                if any(child.poll() is not None for child in children):
                    self.stderr.write("a server process stopped; shutting down")
                    crashed = True
                    break
                stop.wait(0.5)
        except KeyboardInterrupt:
            pass
        finally:
            stop.set()
            stop_children(children)
            server.stop()
            self.stdout.write("stopped")
            self.stdout.flush()
        if crashed:
            raise CommandError("driftsync stopped because a server process failed (see above).")

    # ------------------------------------------------------------------ setup

    def setup_world(self, server: sandbox.SandboxServer) -> list[Connection]:
        accounts: dict[str, Account] = {}
        for key in ("drift", "google", "mailchimp", "hubspot"):
            base_url = sandbox.api_base_url(server, key)
            account = Account.objects.filter(connector=key, label__startswith="Demo ").first()
            if account is None:
                account = Account(connector=key, label=f"Demo {sandbox_name(key)}")
            account.base_url = base_url
            account.credential_kind = Account.CredentialKind.PASTED
            account.credentials = {"api_key": DEMO_TOKEN, "access_token": "", "extra": {}}
            account.remote_id = ""
            account.save()
            try:
                refresh_account(account)
            except ConnectorError as exc:
                self.stderr.write(f"demo account {account}: {exc}")
            account.refresh_from_db()
            accounts[key] = account
        out = []
        for key, name in PAIRS:
            conn, created = Connection.objects.get_or_create(
                name=f"Demo: Drift ↔ {name}",
                defaults={
                    "account_a": accounts["drift"],
                    "account_b": accounts[key],
                    "interval_minutes": 1,
                },
            )
            settings_b = dict(conn.settings_b)
            if key == "mailchimp":
                audiences = accounts[key].options.get("audience") or []
                if audiences:
                    settings_b["audience"] = audiences[0][0]
            conn.settings_b = settings_b
            support = option_support(conn)
            conn.sync_deletions = support["sync_deletions"].possible
            conn.sync_unsubscribes = support["sync_unsubscribes"].possible
            conn.state = Connection.State.ACTIVE
            conn.state_reason = ""
            conn.save()
            if created:
                apply_defaults(conn)
            # the sandboxes start afresh on every start: so does the demo's sync state
            SyncEvent.objects.filter(run__connection=conn).delete()
            ContactLink.objects.filter(connection=conn).delete()
            Connection.objects.filter(pk=conn.pk).update(
                cursor_a="",
                cursor_b="",
                needs_full_sync=True,
                full_sync_started=False,
                running_since=None,
                run_requested_at=None,
            )
            conn.refresh_from_db()
            out.append(conn)
        return out

    def ensure_admin(self) -> str | None:
        users = get_user_model()
        if users.objects.filter(is_superuser=True).exists():
            return None
        password = secrets.token_urlsafe(12)
        users.objects.create_superuser("admin", "admin@example.com", password)
        return password

    # ------------------------------------------------------------------- life

    def life(
        self, server: sandbox.SandboxServer, public: str, interval: float, stop: threading.Event
    ) -> None:
        """People at work in the apps, now and then."""
        rng = random.Random()
        visitor = 0
        drift, google, mailchimp = (
            SandboxControl.of(server, key, timeout=10) for key in ("drift", "google", "mailchimp")
        )
        while not stop.wait(interval * rng.uniform(0.5, 1.5)):
            try:
                action = rng.choice(("identify", "identify", "edit", "unsubscribe"))
                if action == "identify":
                    visitor += 1
                    first, last, company, _ = rng.choice(POOL)
                    drift.identify(
                        email=f"visitor{visitor}.{int(time.time())}@example.com",
                        name=f"{first} {last}",
                        company=company,
                    )
                elif action == "edit":
                    people = google.contacts()
                    if people:
                        person = rng.choice(people)
                        google.edit(
                            person["resourceName"], phone=f"+1 555 {rng.randint(1000, 9999)}"
                        )
                else:
                    members = mailchimp.contacts()
                    subscribed = [m for m in members if m.get("status") == "subscribed"]
                    if subscribed:
                        mailchimp.unsubscribe(rng.choice(subscribed)["id"])
            except (
                requests.RequestException,
                SandboxControlError,
                KeyError,
                ValueError,
            ) as exc:
                self.stderr.write(f"demo life: {exc}")


def sandbox_name(key: str) -> str:
    return {
        "drift": "Drift",
        "google": "Google Contacts",
        "mailchimp": "Mailchimp",
        "hubspot": "HubSpot",
    }[key]


def check_port(host: str, port: int, what: str, variable: str) -> None:
    """Refuse to start when something already listens on ``port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise CommandError(
                f"Port {port} on {host} (for the {what}) is in use: {exc.strerror}. "
                f"Stop what uses it, or choose another port: make run {variable}={port + 1}"
            ) from None


def wait_until_answering(url: str, children: list[subprocess.Popen], seconds: float = 60) -> None:
    """The banner is printed only once the web server answers."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if any(child.poll() is not None for child in children):
            raise CommandError("a server process stopped while starting (see above).")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.3)
    raise CommandError(f"the web server did not answer at {url} within {seconds:.0f} s.")


def stop_children(children: list[subprocess.Popen]) -> None:
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout=15)
        except subprocess.TimeoutExpired:
            child.kill()
