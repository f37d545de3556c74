"""Shared fixtures for connector tests: one sandbox server with every app,
its control API, and connectors wired to it with fresh tokens."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from connectors import registry
from connectors.base import Connector, Credentials
from connectors.http import HttpClient
from connectors.sandbox import SANDBOXES, SandboxServer, api_base_url, facts, serve
from connectors.sandbox.control import SandboxControl
from tests.sandbox_limits import realistic


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
def control(sandbox_server: SandboxServer) -> Callable[[str], SandboxControl]:
    return lambda key: SandboxControl.of(sandbox_server, key)


MakeConnector = Callable[..., Connector]


@pytest.fixture
def make_connector(sandbox_server: SandboxServer) -> Iterator[MakeConnector]:
    """``make_connector(key, **settings)``: a connector on a freshly reset
    sandbox with a fresh token; ``fresh_sandbox=False`` keeps the sandbox as
    it is (a second instance, as after a restart)."""
    counter = itertools.count(1)
    touched: set[str] = set()

    def make(key: str, *, fresh_sandbox: bool = True, **settings: Any) -> Connector:
        sandbox = SandboxControl.of(sandbox_server, key)
        if fresh_sandbox:
            sandbox.reset()
            realistic(sandbox)
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
            {**facts(key).settings, **settings},
            base_url=api_base_url(sandbox_server, key),
            account_key=f"test-{key}-{next(counter)}-{id(sandbox)}",
        )
        http_client(connector).backoff_base = 0.01
        return connector

    yield make
    for key in touched:  # the real limits (test windows) and no fault for the next test
        realistic(SandboxControl.of(sandbox_server, key))
