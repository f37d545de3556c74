"""Stateful fakes of the four APIs, served over real HTTP on loopback.

``serve()`` starts them all on one port, each under its prefix followed by
the real API's own path: ``/drift/contacts/1``,
``/google/v1/people/me/connections``, ``/mailchimp/3.0/lists``,
``/hubspot/crm/v3/objects/contacts``.
"""

from __future__ import annotations

from importlib import import_module

from .base import SandboxApp, SandboxServer

SANDBOXES: dict[str, str] = {
    "drift": "connectors.sandbox.drift.DriftSandbox",
    "google": "connectors.sandbox.google.GoogleSandbox",
    "mailchimp": "connectors.sandbox.mailchimp.MailchimpSandbox",
    "hubspot": "connectors.sandbox.hubspot.HubSpotSandbox",
}

#: the path under each prefix that plays the app's API base URL
API_ROOTS: dict[str, str] = {
    "drift": "",
    "google": "/v1",
    "mailchimp": "/3.0",
    "hubspot": "",
}


def sandbox_class(key: str) -> type[SandboxApp]:
    module, _, cls = SANDBOXES[key].rpartition(".")
    return getattr(import_module(module), cls)


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tokens: tuple[str, ...] = (),
    keys: tuple[str, ...] | None = None,
) -> SandboxServer:
    apps = {key: sandbox_class(key)(static_tokens=tokens) for key in (keys or tuple(SANDBOXES))}
    return SandboxServer(apps, host, port).start()


def api_base_url(server: SandboxServer, key: str) -> str:
    """What an Account's base URL override should be to use this sandbox."""
    return server.url(key) + API_ROOTS[key]
