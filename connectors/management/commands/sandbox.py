"""``manage.py sandbox``: the four stateful fake APIs on one local port."""

from __future__ import annotations

import signal
import threading
from types import FrameType
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

from connectors.registry import CONNECTORS
from connectors.sandbox import SANDBOXES, api_base_url, serve
from connectors.sandbox.demo import seed_demo
from connectors.sandbox.mailchimp import DEFAULT_LIST_ID

HELP = """Serve local sandboxes of Drift, Google Contacts, Mailchimp and HubSpot.

All four run on one port, each under its own prefix (/drift, /google,
/mailchimp, /hubspot) followed by the real API's paths. They keep contacts in
memory, answer with the real payload shapes and errors, issue OAuth tokens,
and can rate-limit or fail on request.

To sync against them, give an Account the printed "API base URL" as its base
URL override and a token: the one passed with --token works in every sandbox,
or ask a sandbox for an expiring OAuth pair with
`curl -X POST <control URL>/tokens` (its refresh_token works with the
sandbox's own token endpoint). Mailchimp accounts also need the audience
printed below.

Each sandbox has a control API under <prefix>/_sandbox/ that needs no token:
  POST contacts, POST contacts/bulk, GET contacts, GET|PATCH|DELETE contacts/<id>,
  POST contacts/<id>/unsubscribe, POST contacts/<id>/tags,
  POST|GET config (rate_limit, rate_window, error_rate, latency, token_ttl ...),
  GET stats, POST reset, POST tokens, POST tokens/expire, POST tokens/revoke,
  GET outbox (webhooks sent).

Runs until Ctrl-C. Everything is lost when it stops."""


class _Stop(Exception):
    pass


def _raise_stop(signum: int, frame: FrameType | None) -> None:
    raise _Stop


class Command(BaseCommand):
    help = HELP
    # serving fakes needs neither the database nor the project's checks
    requires_system_checks: list[str] = []

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        from argparse import RawDescriptionHelpFormatter

        parser = super().create_parser(prog_name, subcommand, **kwargs)
        parser.formatter_class = RawDescriptionHelpFormatter
        return parser

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)"
        )
        parser.add_argument(
            "--port", type=int, default=8700, help="port to listen on (default 8700; 0 = any)"
        )
        parser.add_argument(
            "--token",
            action="append",
            default=[],
            metavar="TOKEN",
            help="a static access token every sandbox accepts, never expiring "
            "(repeat for several; for Mailchimp also as an API key TOKEN-us1)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="seed about 20 demo contacts in each app (overlapping emails, a few "
            "tags, one contact without email where the app allows it)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        host: str = options["host"]
        port: int = options["port"]
        tokens = tuple(t for t in options["token"] if t)
        try:
            server = serve(host, port, tokens=tokens)
        except OSError as exc:
            raise CommandError(f"Cannot listen on {host}:{port}: {exc}") from exc
        try:
            seeded = seed_demo(server) if options["demo"] else {}
            self._announce(server, tokens, seeded)
            self._wait()
        finally:
            server.stop()
        self.stdout.write("Sandbox stopped.")

    def _announce(self, server: Any, tokens: tuple[str, ...], seeded: dict[str, list[str]]) -> None:
        out = self.stdout
        out.write(f"Sandbox listening on {server.base_url}")
        for key in SANDBOXES:
            name = CONNECTORS[key][0] if key in CONNECTORS else key
            out.write(f"  {name}")
            out.write(f"    API base URL: {api_base_url(server, key)}")
            out.write(f"    control URL:  {server.url(key)}/_sandbox/")
            if key == "mailchimp":
                out.write(f"    audience:     {DEFAULT_LIST_ID}")
            if key in seeded:
                out.write(f"    demo contacts: {len(seeded[key])}")
        if tokens:
            out.write(f"Static token(s) accepted everywhere: {', '.join(tokens)}")
        else:
            out.write(
                "No static token: get one with "
                f"`curl -X POST {server.url('hubspot')}/_sandbox/tokens` (per sandbox)."
            )
        out.write("Press Ctrl-C to stop.")
        out.flush()

    def _wait(self) -> None:
        # SIGTERM stops as cleanly as Ctrl-C (SIGINT)
        previous = signal.signal(signal.SIGTERM, _raise_stop)
        try:
            threading.Event().wait()
        except (KeyboardInterrupt, _Stop):
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
