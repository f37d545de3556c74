"""Stateful fakes of the apps' APIs, served over real HTTP on loopback.

``serve()`` starts them all on one port, each under its prefix followed by
the real API's own path: ``/drift/contacts/1``,
``/google/v1/people/me/connections``, ``/mailchimp/3.0/lists``,
``/hubspot/crm/v3/objects/contacts``.

Every registered connector has a sandbox module, ``connectors/sandbox/<key>.py``,
that declares ``FACTS`` (see :mod:`.facts`); this is the only registry of them.
"""

from __future__ import annotations

from functools import cache
from importlib import import_module

from connectors.registry import CONNECTORS

from .base import SandboxApp, SandboxServer
from .facts import SandboxFacts

#: the apps with a sandbox: every registered connector
SANDBOXES: tuple[str, ...] = tuple(CONNECTORS)


@cache
def facts(key: str) -> SandboxFacts:
    """The facts ``connectors/sandbox/<key>.py`` declares."""
    if key not in CONNECTORS:
        raise KeyError(f"Unknown sandbox {key!r}; known: {', '.join(SANDBOXES)}")
    declared = getattr(import_module(f"{__name__}.{key}"), "FACTS", None)
    if not isinstance(declared, SandboxFacts):
        raise TypeError(f"connectors/sandbox/{key}.py declares no FACTS = SandboxFacts(...)")
    return declared


def sandbox_class(key: str) -> type[SandboxApp]:
    return facts(key).app


def serve(
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    tokens: tuple[str, ...] = (),
    keys: tuple[str, ...] | None = None,
) -> SandboxServer:
    apps = {key: sandbox_class(key)(static_tokens=tokens) for key in (keys or SANDBOXES)}
    return SandboxServer(apps, host, port).start()


def api_base_url(server: SandboxServer, key: str) -> str:
    """What an Account's base URL override should be to use this sandbox."""
    return server.url(key) + facts(key).api_root


__all__ = ["SANDBOXES", "SandboxFacts", "SandboxServer", "api_base_url", "facts", "serve"]
