"""Shared fixtures for connector tests: one sandbox server with all four apps,
its control API, and connectors wired to it with fresh tokens."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import requests

from connectors import registry
from connectors.base import Connector, Credentials
from connectors.http import HttpClient
from connectors.sandbox import SANDBOXES, SandboxServer, api_base_url, serve
from connectors.sandbox.mailchimp import DEFAULT_LIST_ID

#: what each sandbox's settings go back to before a test
DEFAULT_CONFIG: dict[str, Any] = {
    "rate_limit": 0,
    "rate_window": 10.0,
    "error_rate": 0.0,
    "error_status": 503,
    "drop_rate": 0.0,
    "latency": 0.0,
    "token_ttl": 3600.0,
    "require_auth": True,
}

#: settings a connector cannot do without in the sandbox
DEFAULT_SETTINGS: dict[str, dict[str, Any]] = {"mailchimp": {"audience": DEFAULT_LIST_ID}}


class Control:
    """One sandbox's common ``/_sandbox`` control API, as a person in the app."""

    def __init__(self, server: SandboxServer, key: str) -> None:
        self.key = key
        self.root = server.url(key)
        self.base_url = api_base_url(server, key)

    def call(self, method: str, path: str, body: Any = None, *, ok: bool = True) -> Any:
        response = requests.request(method, f"{self.root}/_sandbox{path}", json=body, timeout=30)
        if ok:
            assert response.status_code < 300, f"{method} {path}: {response.text}"
        return response.json() if response.content else None

    def reset(self) -> None:
        self.call("POST", "/reset")
        self.call("POST", "/config", DEFAULT_CONFIG)

    def configure(self, **settings: Any) -> dict[str, Any]:
        return self.call("POST", "/config", settings)

    def person(self, **person: Any) -> str:
        return str(self.call("POST", "/contacts", person)["id"])

    def bulk(self, people: list[dict[str, Any]]) -> list[str]:
        return [str(i) for i in self.call("POST", "/contacts/bulk", {"contacts": people})["ids"]]

    def native(self, contact_id: str) -> dict[str, Any]:
        return self.call("GET", f"/contacts/{contact_id}")

    def edit(self, contact_id: str, **person: Any) -> dict[str, Any]:
        return self.call("PATCH", f"/contacts/{contact_id}", person)

    def delete(self, contact_id: str) -> None:
        self.call("DELETE", f"/contacts/{contact_id}")

    def unsubscribe(self, contact_id: str) -> requests.Response:
        """The raw answer: apps without the notion say 400 with a message."""
        return requests.post(f"{self.root}/_sandbox/contacts/{contact_id}/unsubscribe", timeout=10)

    def tag(
        self, contact_id: str, add: list[str] | None = None, remove: list[str] | None = None
    ) -> None:
        self.call(
            "POST", f"/contacts/{contact_id}/tags", {"add": add or [], "remove": remove or []}
        )

    def stats(self) -> dict[str, int]:
        return self.call("GET", "/stats")

    def reset_stats(self) -> None:
        self.call("POST", "/stats/reset")

    def outbox(self) -> list[dict[str, Any]]:
        return self.call("GET", "/outbox")

    def expire_tokens(self) -> None:
        self.call("POST", "/tokens/expire")

    def revoke_tokens(self) -> None:
        self.call("POST", "/tokens/revoke")

    def new_token(self) -> dict[str, Any]:
        return self.call("POST", "/tokens", {})


def http_client(connector: Connector) -> HttpClient:
    """The connector's HttpClient, wherever it keeps it."""
    http = getattr(connector, "http", None)
    if isinstance(http, HttpClient):
        return http
    client = getattr(connector, "client", None)
    http = getattr(client, "http", None)
    if isinstance(http, HttpClient):
        return http
    raise AssertionError(f"{type(connector).__name__} exposes no HttpClient")


@pytest.fixture(scope="session")
def sandbox_server() -> Iterator[SandboxServer]:
    server = serve(keys=tuple(SANDBOXES))
    yield server
    server.stop()


@pytest.fixture
def control(sandbox_server: SandboxServer) -> Callable[[str], Control]:
    return lambda key: Control(sandbox_server, key)


MakeConnector = Callable[..., Connector]


@pytest.fixture
def make_connector(sandbox_server: SandboxServer) -> Iterator[MakeConnector]:
    """``make_connector(key, **settings)``: a connector on a freshly reset
    sandbox with a fresh token; ``fresh_sandbox=False`` keeps the sandbox as
    it is (a second instance, as after a restart)."""
    counter = itertools.count(1)
    touched: set[str] = set()

    def make(key: str, *, fresh_sandbox: bool = True, **settings: Any) -> Connector:
        sandbox = Control(sandbox_server, key)
        if fresh_sandbox:
            sandbox.reset()
        touched.add(key)
        token = sandbox.new_token()
        expires_in = float(token.get("expires_in") or 0)
        credentials = Credentials(
            access_token=token["access_token"],
            refresh_token=token.get("refresh_token") or "",
            expires_at=time.time() + expires_in if expires_in else None,
        )
        cls = registry.get(key)
        connector = cls(
            credentials,
            {**DEFAULT_SETTINGS.get(key, {}), **settings},
            base_url=sandbox.base_url,
            account_key=f"test-{key}-{next(counter)}-{id(sandbox)}",
        )
        http_client(connector).backoff_base = 0.01
        return connector

    yield make
    for key in touched:  # leave no rate limit or fault behind for the next test
        Control(sandbox_server, key).call("POST", "/config", DEFAULT_CONFIG)
