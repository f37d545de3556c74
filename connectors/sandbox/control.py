"""One client for the sandboxes' ``/_sandbox/`` control API.

The control API is how a test, the benchmark or the demo plays "a person in
the app": seeding and editing contacts in the neutral person shape
(``email``, ``first_name``, ``last_name``, ``phone``, ``company``,
``title``, ``tags``, custom keys), and how it sets faults, reads the
request counts and hands out tokens. It needs no token. Every method is one
endpoint; an answer of 400 or more raises :class:`SandboxControlError`.
"""

from __future__ import annotations

from typing import Any

import requests

from .base import SandboxServer

#: the faults a sandbox starts without (``SandboxConfig``'s defaults); its
#: limits are the real app's, which :meth:`SandboxControl.defaults` restores
DEFAULT_CONFIG: dict[str, Any] = {
    "error_rate": 0.0,
    "error_status": 503,
    "drop_rate": 0.0,
    "latency": 0.0,
    "token_ttl": 3600.0,
    "require_auth": True,
}


class SandboxControlError(Exception):
    """The sandbox refused a control call; ``status`` and ``message`` are its own."""

    def __init__(self, key: str, method: str, path: str, status: int, message: str) -> None:
        super().__init__(f"{key} sandbox {method} {path}: HTTP {status}: {message}")
        self.key = key
        self.method = method
        self.path = path
        self.status = status
        self.message = message


class SandboxControl:
    """The control API of one sandbox app, at ``root`` (``server.url(key)``)."""

    def __init__(
        self,
        root: str,
        *,
        key: str = "",
        timeout: float = 30,
        session: requests.Session | None = None,
    ) -> None:
        self.root = root.rstrip("/")
        self.key = key or self.root.rsplit("/", 1)[-1]
        self.timeout = timeout
        #: None: one connection per call (nothing to close); the benchmark
        #: passes a session to keep its connection alive
        self.session = session

    @property
    def base_url(self) -> str:
        """The app's API base URL in this sandbox (what an Account points at)."""
        from . import facts

        return getattr(self, "_base_url", "") or self.root + facts(self.key).api_root

    @base_url.setter
    def base_url(self, value: str) -> None:
        self._base_url = value

    @classmethod
    def of(cls, server: SandboxServer, key: str, **kwargs: Any) -> SandboxControl:
        return cls(server.url(key), key=key, **kwargs)

    def call(
        self, method: str, path: str, body: Any = None, *, params: dict[str, str] | None = None
    ) -> Any:
        """One control call; the decoded JSON answer (None when empty)."""
        send = self.session.request if self.session is not None else requests.request
        response = send(
            method,
            f"{self.root}/_sandbox{path}",
            json=body,
            params=params,
            timeout=self.timeout,
        )
        if response.status_code >= 400:
            raise SandboxControlError(
                self.key, method, path, response.status_code, response.text[:500]
            )
        return response.json() if response.content else None

    def close(self) -> None:
        if self.session is not None:
            self.session.close()

    # -- the sandbox itself -------------------------------------------------

    def reset(self, *, config: bool = False) -> None:
        """Forget every contact, the request counts and the outbox (tokens
        stay); with ``config`` also put limits and faults back to the app's
        defaults (:meth:`defaults`)."""
        self.call("POST", "/reset")
        if config:
            self.defaults()

    def config(self) -> dict[str, Any]:
        return self.call("GET", "/config")

    def defaults(self, **settings: Any) -> dict[str, Any]:
        """Back to the real app's limits (its rolling window, 429 without
        ``Retry-After``) and no faults, then ``settings`` (e.g. a shorter
        window of the same shape); the whole config back."""
        return self.call("POST", "/config/defaults", settings)

    def configure(self, **settings: Any) -> dict[str, Any]:
        """Set limits and faults (``SandboxConfig`` fields); the whole config back."""
        return self.call("POST", "/config", settings)

    def stats(self) -> dict[str, int]:
        """Requests served so far, by API route name (and 401/429/5xx/dropped)."""
        return self.call("GET", "/stats")

    def reset_stats(self) -> None:
        self.call("POST", "/stats/reset")

    def outbox(self) -> list[dict[str, Any]]:
        """The webhook deliveries the sandbox has sent."""
        return self.call("GET", "/outbox")

    # -- tokens --------------------------------------------------------------

    def new_token(self, ttl: float | None = None) -> dict[str, Any]:
        """An OAuth token answer: ``access_token``, ``refresh_token``, ``expires_in``."""
        return self.call("POST", "/tokens", {} if ttl is None else {"ttl": ttl})

    def expire_tokens(self) -> None:
        self.call("POST", "/tokens/expire")

    def revoke_tokens(self) -> None:
        self.call("POST", "/tokens/revoke")

    # -- contacts, as a person in the app ------------------------------------

    def create(self, **person: Any) -> str:
        """One contact from the neutral person shape; its id."""
        return str(self.call("POST", "/contacts", person)["id"])

    def bulk(self, people: list[dict[str, Any]]) -> list[str]:
        """Many contacts at once, without webhooks; their ids, in order."""
        return [str(i) for i in self.call("POST", "/contacts/bulk", {"contacts": people})["ids"]]

    def contacts(self) -> list[dict[str, Any]]:
        """Every live contact, in the app's own shape."""
        return self.call("GET", "/contacts")["contacts"]

    def native(self, contact_id: str) -> dict[str, Any]:
        """One contact in the app's own shape."""
        return self.call("GET", f"/contacts/{contact_id}")

    def edit(self, contact_id: str, **person: Any) -> dict[str, Any]:
        return self.call("PATCH", f"/contacts/{contact_id}", person)

    def delete(self, contact_id: str) -> None:
        self.call("DELETE", f"/contacts/{contact_id}")

    def unsubscribe(self, contact_id: str) -> dict[str, Any]:
        """Apps without the notion (Google, HubSpot) refuse with a 400."""
        return self.call("POST", f"/contacts/{contact_id}/unsubscribe")

    def tag(
        self, contact_id: str, add: list[str] | None = None, remove: list[str] | None = None
    ) -> dict[str, Any]:
        return self.call(
            "POST", f"/contacts/{contact_id}/tags", {"add": add or [], "remove": remove or []}
        )

    # -- app specifics ---------------------------------------------------------

    def identify(self, **person: Any) -> str:
        """Drift: a visitor gives an email in chat (``contact_identified``)."""
        return str(self.call("POST", "/identify", person)["id"])

    def set_org(self, **org: Any) -> dict[str, Any]:
        """Drift: ``org_id``, ``token_keys`` ("snake"/"camel"), ``org_in_token``."""
        return self.call("POST", "/org", org)

    def register_webhook(self, url: str, token: str = "") -> list[dict[str, str]]:
        """Drift: where its webhooks go (the app's settings page)."""
        return self.call("POST", "/webhooks", {"url": url, "token": token})["webhooks"]

    def expire_sync_tokens(self, *, ttl: float | None = None, status: int | None = None) -> None:
        """Google: expire the sync tokens handed out (all, or those older than
        ``ttl`` seconds); ``status`` is what an expired one answers (400/410)."""
        body: dict[str, Any] = {}
        if ttl is not None:
            body["ttl"] = ttl
        if status is not None:
            body["status"] = status
        self.call("POST", "/synctokens/expire", body)

    def new_list(self, **audience: Any) -> str:
        """Mailchimp: a new audience (``id``, ``name``, ``merge_fields``); its id."""
        return str(self.call("POST", "/lists", audience)["id"])
