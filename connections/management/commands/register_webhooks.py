"""``manage.py register_webhooks CONNECTION|--all``."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse

from connections.management import resolve_connections
from connections.models import Connection
from connectors.base import ConnectorError, NotFound

#: what driftsync listens to; ``api: false`` so its own writes never come back
MAILCHIMP_EVENTS = {
    "subscribe": False,
    "unsubscribe": True,
    "profile": True,
    "upemail": True,
    "cleaned": True,
    "campaign": False,
}
MAILCHIMP_SOURCES = {"user": True, "admin": True, "api": False}


def public_url() -> str:
    return str(getattr(settings, "PUBLIC_URL", "http://127.0.0.1:8000")).rstrip("/")


def mailchimp_url(conn: Connection) -> str:
    path = reverse("webhooks:mailchimp", args=[conn.webhook_secret])
    return public_url() + path


def is_stale(hook_url: str, conn: Connection) -> bool:
    """A webhook of ours on the audience that no longer works: the old
    ``<prefix><connection id>/<secret>/`` shape of this connection, or a
    ``<prefix><token>/`` whose token no connection has (an old secret)."""
    prefix = public_url() + reverse("webhooks:mailchimp", args=["x"])[:-2]
    if not hook_url.startswith(prefix):
        return False
    segments = [s for s in hook_url[len(prefix) :].split("/") if s]
    if len(segments) == 2:
        return segments[0] == str(conn.pk)
    if len(segments) == 1:
        return not Connection.objects.filter(webhook_secret=segments[0]).exists()
    return False


def drift_url() -> str:
    return public_url() + reverse("webhooks:drift")


class Command(BaseCommand):
    help = (
        "Set up the webhooks of a connection (id or name), or of every connection with --all. "
        "Mailchimp sides: registers <PUBLIC_URL>/webhooks/mailchimp/<secret>/ on the "
        "side's audience for unsubscribe, profile, email-change and cleaned events made by "
        "users and admins (never by the API, so driftsync's own writes do not come back). "
        "Idempotent: it lists the audience's webhooks first, keeps ours, and removes ones "
        "left behind with an old secret or in the old /<id>/<secret>/ shape. Drift sides: "
        "Drift has one webhook URL per app, set by hand in the app's settings on Drift; "
        "this prints it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("connection", nargs="?", help="Connection id or name.")
        parser.add_argument("--all", action="store_true", help="Every connection.")

    def handle(self, *args: Any, **options: Any) -> None:
        connections = resolve_connections(options["connection"], all_=options["all"])
        host = urlsplit(public_url()).hostname or ""
        if host in ("127.0.0.1", "localhost", "::1"):
            self.stderr.write(
                f"Warning: PUBLIC_URL is {public_url()}; the real Mailchimp and Drift cannot "
                "reach a loopback address. Set PUBLIC_URL to this install's public address."
            )
        failures: list[str] = []
        drift = False
        for conn in connections:
            for side in ("a", "b"):
                account = conn.account(side)
                if account.connector == "drift":
                    drift = True
                elif account.connector == "mailchimp":
                    try:
                        self._mailchimp(conn, side)
                    except ConnectorError as exc:
                        failures.append(f'"{conn}" side {side.upper()}: {exc}')
                        self.stderr.write(f'"{conn}" side {side.upper()} (Mailchimp): {exc}')
        if drift:
            self.stdout.write(
                f"Drift: paste {drift_url()} as the webhook URL in your Drift app's settings "
                "(events contact_identified, contact_updated, user_unsubscribed), and set "
                "DRIFT_VERIFICATION_TOKEN to the app's verification token."
            )
        if failures:
            raise CommandError(f"{len(failures)} webhook registration(s) failed.")

    def _mailchimp(self, conn: Connection, side: str) -> None:
        account = conn.account(side)
        connector = account.build_connector(conn.side_settings(side))
        list_id = connector.list_id
        url = mailchimp_url(conn)
        shown = url.replace(conn.webhook_secret, "<secret>")
        found = False
        try:
            existing = connector.client.list_webhooks(list_id)
        except NotFound as exc:
            raise NotFound(
                f"audience {list_id!r} not found in this Mailchimp account ({exc})",
                status=exc.status,
            ) from exc
        for hook in existing:
            hook_url = str(hook.get("url") or "")
            if hook_url == url:
                found = True
            elif is_stale(hook_url, conn):
                # an earlier registration of this connection (old secret or shape)
                connector.client.delete_webhook(list_id, str(hook["id"]))
                self.stdout.write(f'"{conn}": removed a stale Mailchimp webhook ({hook["id"]}).')
        if found:
            self.stdout.write(
                f'"{conn}": Mailchimp webhook already registered on {list_id}: {shown}'
            )
            return
        connector.client.create_webhook(
            list_id, url, events=dict(MAILCHIMP_EVENTS), sources=dict(MAILCHIMP_SOURCES)
        )
        self.stdout.write(f'"{conn}": registered Mailchimp webhook on audience {list_id}: {shown}')
