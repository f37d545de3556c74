"""What every sandbox shares: a tiny router, bearer tokens with an OAuth token
endpoint, rate limiting, fault injection, request statistics, outgoing
webhooks and the ``/_sandbox/`` control API, served over real HTTP.

A sandbox is a stateful fake of one app's API. Subclasses declare routes
with ``@route`` and their own error body shape in ``error``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import re
import secrets
import socket
import threading
import time
import urllib.parse
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import requests

log = logging.getLogger(__name__)


class Request:
    def __init__(
        self,
        method: str,
        path: str,
        query: dict[str, list[str]],
        headers: dict[str, str],
        body: bytes,
        base_url: str = "",
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = {k.lower(): v for k, v in headers.items()}
        self.body = body
        #: the URL of this sandbox (with its prefix), for links in payloads
        self.base_url = base_url
        self.params: dict[str, str] = {}

    def arg(self, name: str, default: str | None = None) -> str | None:
        values = self.query.get(name)
        return values[-1] if values else default

    def args(self, name: str) -> list[str]:
        """All values of a repeated or comma-separated query parameter."""
        out: list[str] = []
        for value in self.query.get(name, []):
            out.extend(v for v in value.split(",") if v)
        return out

    def json(self) -> Any:
        if not self.body:
            return None
        try:
            return json.loads(self.body)
        except ValueError as exc:
            raise HttpError(400, f"Request body is not valid JSON: {exc}") from exc

    def form(self) -> dict[str, str]:
        return dict(urllib.parse.parse_qsl(self.body.decode(), keep_blank_values=True))

    def header(self, name: str, default: str = "") -> str:
        return self.headers.get(name.lower(), default)


@dataclass
class Response:
    status: int = 200
    body: Any = None
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)

    def encode(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return self.body.encode()
        return json.dumps(self.body).encode()


class HttpError(Exception):
    """Raised by a handler; turned into the app's own error body."""

    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.extra = extra


Handler = Callable[..., Response | Any]


def route(
    method: str,
    pattern: str,
    *,
    auth: bool = True,
    name: str | None = None,
    scopes: tuple[str, ...] = (),
):
    """Declare a handler for ``method`` and a path regex (named groups → kwargs).
    ``scopes``: the token needs at least one of them (apps that enforce scopes)."""

    def decorate(func: Handler) -> Handler:
        func._sandbox_route = (method, pattern, auth, name or f"{method} {pattern}")  # type: ignore[attr-defined]
        func._sandbox_scopes = tuple(scopes)  # type: ignore[attr-defined]
        return func

    return decorate


@dataclass
class SandboxConfig:
    #: requests allowed in any rolling ``rate_window`` seconds (0 = unlimited) → 429;
    #: each sandbox sets its app's real window by default (``config_defaults``)
    rate_limit: int = 0
    rate_window: float = 10.0
    #: send ``Retry-After`` with a 429: the real apps do not (Google, HubSpot,
    #: Mailchimp; docs/api-fidelity-ratelimits.md), so off by default
    retry_after: bool = False
    #: requests in flight at once (0 = unlimited) → 429 past it (Mailchimp: 10)
    concurrency_limit: int = 0
    #: share of API requests answered with a 5xx (0..1)
    error_rate: float = 0.0
    error_status: int = 503
    #: share of API requests whose connection is dropped without an answer
    drop_rate: float = 0.0
    #: seconds added to every API request
    latency: float = 0.0
    #: lifetime of issued access tokens, seconds
    token_ttl: float = 3600.0
    #: require a bearer token on API calls
    require_auth: bool = True


class SandboxApp:
    """Base of the four fakes. Thread-safe: handlers run under ``self.lock``."""

    name: str = "sandbox"
    #: scopes an issued token carries unless the issuer names others
    default_scopes: tuple[str, ...] = ()
    config_class: type[SandboxConfig] = SandboxConfig
    #: the real app's limits, applied to a new sandbox and by ``/_sandbox/config/defaults``
    config_defaults: dict[str, Any] = {}

    def __init__(self, *, static_tokens: tuple[str, ...] = ()) -> None:
        self.lock = threading.RLock()
        self.config = self.config_class(**self.config_defaults)
        self.static_tokens = set(static_tokens)
        self.tokens: dict[str, float] = {}  # access token -> expires at
        self.token_scopes: dict[str, frozenset[str]] = {}  # access token -> granted scopes
        self.refresh_tokens: dict[str, str] = {}  # refresh token -> access token
        self.codes: dict[str, str] = {}  # authorization code -> redirect uri
        self.stats: Counter[str] = Counter()
        self.outbox: list[dict[str, Any]] = []  # webhook deliveries, for inspection
        #: accepted request times per rate bucket, for rolling windows
        self._windows: dict[str, deque[float]] = {}
        self._limit_lock = threading.Lock()
        self._in_flight = 0
        #: most API requests in flight at once since the last reset (tests)
        self.peak_in_flight = 0
        self._routes: list[tuple[str, re.Pattern[str], bool, str, Handler]] = []
        for attr in dir(type(self)):
            func = getattr(self, attr)
            spec = getattr(func, "_sandbox_route", None)
            if spec:
                method, pattern, auth, rname = spec
                self._routes.append((method, re.compile(f"^{pattern}$"), auth, rname, func))
        # longest patterns first, so literal paths win over parameterised ones
        self._routes.sort(key=lambda r: -len(r[1].pattern))
        self.reset()

    # -- to override ---------------------------------------------------

    def reset(self) -> None:
        """Forget all contacts (tokens and config stay)."""

    def error(self, status: int, message: str, **extra: Any) -> Response:
        return Response(status, {"error": {"message": message}})

    def rate_limited(self, retry_after: float, policy: str = "") -> Response:
        """A 429 in the app's own shape; ``Retry-After`` only when configured."""
        response = self.error(429, "Rate limit exceeded")
        self.hint(response, retry_after)
        return response

    def hint(self, response: Response, retry_after: float) -> Response:
        if self.config.retry_after:
            response.headers["Retry-After"] = str(max(1, int(retry_after + 0.999)))
        return response

    def rate_buckets(self, request: Request) -> list[tuple[str, int, float]]:
        """(policy, limit, window) a request counts against; apps add their own."""
        return [("DEFAULT", self.config.rate_limit, self.config.rate_window)]

    def too_many_connections(self) -> Response:
        return self.rate_limited(0.0, "CONCURRENCY")

    # -- tokens ----------------------------------------------------------

    def issue_token(
        self, ttl: float | None = None, scopes: tuple[str, ...] | list[str] | None = None
    ) -> dict[str, Any]:
        access = "sbx-at-" + secrets.token_urlsafe(16)
        refresh = "sbx-rt-" + secrets.token_urlsafe(16)
        ttl = self.config.token_ttl if ttl is None else ttl
        granted = frozenset(self.default_scopes if scopes is None else scopes)
        with self.lock:
            self.tokens[access] = time.time() + ttl
            self.token_scopes[access] = granted
            self.refresh_tokens[refresh] = access
        return {
            "access_token": access,
            "refresh_token": refresh,
            "expires_in": int(ttl),
            "token_type": "bearer",
        }

    def refresh(self, refresh_token: str) -> dict[str, Any] | None:
        with self.lock:
            old = self.refresh_tokens.pop(refresh_token, None)
            if old is None:
                return None
            self.tokens.pop(old, None)
            granted = self.token_scopes.pop(old, None)
        if granted is None or granted == frozenset(self.default_scopes):
            return self.issue_token()  # subclasses may override issue_token(ttl)
        # a refreshed token keeps the scopes that were granted
        return self.issue_token(scopes=sorted(granted))

    def scopes_of(self, token: str) -> frozenset[str] | None:
        """The scopes a token carries; ``None`` for static tokens (all of them)."""
        if token in self.static_tokens:
            return None
        with self.lock:
            return self.token_scopes.get(token)

    def missing_scopes(self, needed: tuple[str, ...]) -> Response:
        return self.error(403, f"Missing scope: one of {', '.join(needed)} is required")

    def revoke_all(self) -> None:
        with self.lock:
            self.tokens.clear()
            self.refresh_tokens.clear()

    def expire_all(self) -> None:
        with self.lock:
            for token in self.tokens:
                self.tokens[token] = 0.0

    def token_from(self, request: Request) -> str:
        auth = request.header("Authorization")
        for scheme in ("Bearer ", "OAuth ", "bearer "):
            if auth.startswith(scheme):
                return auth[len(scheme) :].strip()
        if auth.startswith("Basic "):
            import base64

            try:
                decoded = base64.b64decode(auth[6:]).decode()
            except ValueError:
                return ""
            return decoded.partition(":")[2]
        return ""

    def authorized(self, request: Request) -> bool:
        if not self.config.require_auth:
            return True
        token = self.token_from(request)
        if not token:
            return False
        if token in self.static_tokens:
            return True
        with self.lock:
            expires = self.tokens.get(token)
        return expires is not None and expires > time.time()

    def token_endpoint(self, request: Request) -> Response:
        """The standard OAuth token endpoint (form body), shared by apps."""
        if request.header("Content-Type").startswith("application/json"):
            form = request.json() or {}
        else:
            form = request.form() if request.body else {}
        grant = form.get("grant_type")
        if grant == "authorization_code":
            code = form.get("code", "")
            with self.lock:
                known = self.codes.pop(code, None)
            if known is None:
                return Response(400, {"error": "invalid_grant", "error_description": "bad code"})
            return Response(200, self.issue_token())
        if grant == "refresh_token":
            issued = self.refresh(form.get("refresh_token", ""))
            if issued is None:
                return Response(
                    400,
                    {"error": "invalid_grant", "error_description": "refresh token revoked"},
                )
            return Response(200, issued)
        return Response(400, {"error": "unsupported_grant_type"})

    def authorize_page(self, request: Request) -> Response:
        """Stand-in for the app's consent screen: approves at once and
        redirects back with a code, as the real one does after a click."""
        redirect = request.arg("redirect_uri") or ""
        state = request.arg("state") or ""
        code = "sbx-code-" + secrets.token_urlsafe(8)
        with self.lock:
            self.codes[code] = redirect
        sep = "&" if "?" in redirect else "?"
        location = f"{redirect}{sep}{urllib.parse.urlencode({'code': code, 'state': state})}"
        return Response(302, b"", "text/plain", {"Location": location})

    # -- webhooks out ----------------------------------------------------

    def deliver(
        self, url: str, *, json_body: Any = None, form: Any = None, headers: Any = None
    ) -> None:
        """POST a webhook in the background, as the app would."""
        record = {"url": url, "json": json_body, "form": form, "headers": headers or {}}
        with self.lock:
            self.outbox.append(record)

        def send() -> None:
            try:
                requests.post(url, json=json_body, data=form, headers=headers, timeout=10)
            except requests.RequestException as exc:  # the app would retry; we log
                log.warning("%s sandbox: webhook to %s failed: %s", self.name, url, exc)

        threading.Thread(target=send, daemon=True).start()

    # -- control API -----------------------------------------------------

    @route("GET", r"/_sandbox/config", auth=False)
    def _get_config(self, request: Request) -> Any:
        return asdict(self.config)

    @route("POST", r"/_sandbox/config", auth=False)
    def _set_config(self, request: Request) -> Any:
        body = request.json() or {}
        for key, value in body.items():
            if not hasattr(self.config, key):
                raise HttpError(400, f"unknown sandbox setting {key!r}")
            setattr(self.config, key, type(getattr(self.config, key))(value))
        return asdict(self.config)

    @route("POST", r"/_sandbox/config/defaults", auth=False)
    def _default_config(self, request: Request) -> Any:
        """Back to the real app's limits, then apply the body (e.g. a small window)."""
        self.config = self.config_class(**self.config_defaults)
        with self._limit_lock:
            self._windows.clear()
        return self._set_config(request)

    @route("GET", r"/_sandbox/stats", auth=False)
    def _get_stats(self, request: Request) -> Any:
        return dict(self.stats)

    @route("POST", r"/_sandbox/stats/reset", auth=False)
    def _reset_stats(self, request: Request) -> Any:
        self.stats.clear()
        return {}

    @route("GET", r"/_sandbox/in-flight", auth=False)
    def _get_in_flight(self, request: Request) -> Any:
        return {"now": self._in_flight, "peak": self.peak_in_flight}

    @route("POST", r"/_sandbox/in-flight/reset", auth=False)
    def _reset_in_flight(self, request: Request) -> Any:
        with self._limit_lock:
            self.peak_in_flight = self._in_flight
        return {}

    @route("POST", r"/_sandbox/reset", auth=False)
    def _reset(self, request: Request) -> Any:
        with self.lock:
            self.reset()
            self.stats.clear()
            self.outbox.clear()
        return {}

    @route("POST", r"/_sandbox/tokens", auth=False)
    def _new_token(self, request: Request) -> Any:
        body = request.json() or {}
        scopes = body.get("scopes")
        if scopes is None:
            return self.issue_token(body.get("ttl"))  # subclasses may override issue_token(ttl)
        return self.issue_token(body.get("ttl"), list(scopes))

    @route("POST", r"/_sandbox/tokens/revoke", auth=False)
    def _revoke(self, request: Request) -> Any:
        self.revoke_all()
        return {}

    @route("POST", r"/_sandbox/tokens/expire", auth=False)
    def _expire(self, request: Request) -> Any:
        self.expire_all()
        return {}

    @route("GET", r"/_sandbox/outbox", auth=False)
    def _outbox(self, request: Request) -> Any:
        return list(self.outbox)

    # -- dispatch ----------------------------------------------------------

    def handle(self, request: Request) -> Response | None:
        """Answer one request; ``None`` means: drop the connection."""
        for method, pattern, auth, rname, func in self._routes:
            match = pattern.match(request.path)
            if not match or method != request.method:
                continue
            control = request.path.startswith("/_sandbox/")
            # OAuth endpoints live on other hosts with other limits: only the API counts
            if control or not auth:
                return self._dispatch(request, match, auth, rname, func, control)
            limit = self.config.concurrency_limit
            with self._limit_lock:
                self._in_flight += 1
                self.peak_in_flight = max(self.peak_in_flight, self._in_flight)
                over = bool(limit) and self._in_flight > limit
            try:
                if over:
                    self.stats["429"] += 1
                    return self.too_many_connections()
                injected = self._inject(request)
                if injected is not False:
                    return injected
                return self._dispatch(request, match, auth, rname, func, control)
            finally:
                with self._limit_lock:
                    self._in_flight -= 1
        if any(p.match(request.path) for _, p, *_ in self._routes):
            return self.error(405, f"Method {request.method} not allowed on {request.path}")
        return self.error(404, f"No such endpoint: {request.method} {request.path}")

    def _dispatch(
        self,
        request: Request,
        match: re.Match[str],
        auth: bool,
        rname: str,
        func: Handler,
        control: bool,
    ) -> Response:
        if auth and not self.authorized(request):
            self.stats["401"] += 1
            return self.error(401, "Unauthorized: missing, invalid or expired access token")
        needed = getattr(func, "_sandbox_scopes", ())
        if needed and self.config.require_auth:
            granted = self.scopes_of(self.token_from(request))
            if granted is not None and not granted & set(needed):
                self.stats["403"] += 1
                return self.missing_scopes(needed)
        if not control:
            self.stats[rname] += 1
        request.params = match.groupdict()
        try:
            with self.lock:
                result = func(request, **request.params)
        except HttpError as exc:
            return self.error(exc.status, exc.message, **exc.extra)
        return result if isinstance(result, Response) else Response(200, result)

    def _inject(self, request: Request) -> Response | bool | None:
        cfg = self.config
        if cfg.latency:
            time.sleep(cfg.latency)
        limited = self._over_limit(request)
        if limited is not None:
            self.stats["429"] += 1
            return limited
        if cfg.drop_rate and random.random() < cfg.drop_rate:
            self.stats["dropped"] += 1
            return None
        if cfg.error_rate and random.random() < cfg.error_rate:
            self.stats[str(cfg.error_status)] += 1
            return self.error(cfg.error_status, "Injected failure: the service is unavailable")
        return False

    def _over_limit(self, request: Request) -> Response | None:
        """Rolling windows: a request is refused while ``limit`` requests were
        accepted in the last ``window`` seconds; refused ones do not count."""
        buckets = [(p, n, w) for p, n, w in self.rate_buckets(request) if n and w > 0]
        if not buckets:
            return None
        with self._limit_lock:
            now = time.monotonic()
            for policy, limit, window in buckets:
                times = self._windows.setdefault(policy, deque())
                while times and times[0] <= now - window:
                    times.popleft()
                if len(times) >= limit:
                    return self.rate_limited(times[0] + window - now, policy)
            for policy, _limit, _window in buckets:
                self._windows[policy].append(now)
        return None


class _Handler(BaseHTTPRequestHandler):
    server: SandboxServer
    protocol_version = "HTTP/1.1"
    # headers and body go out in two writes; without this each keep-alive
    # request waits ~40 ms for the delayed ACK
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("sandbox: " + format, *args)

    def _serve(self) -> None:
        parsed = urllib.parse.urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        app, prefix, rest = self.server.find(parsed.path)
        if app is None:
            self._send(Response(404, {"error": f"no sandbox at {parsed.path}"}))
            return
        request = Request(
            self.command,
            rest or "/",
            urllib.parse.parse_qs(parsed.query, keep_blank_values=True),
            dict(self.headers.items()),
            body,
            base_url=f"{self.server.base_url}{prefix}",
        )
        try:
            response = app.handle(request)
        except Exception as exc:  # a bug in a fake: answer like a crashed server
            log.exception("sandbox %s crashed", app.name)
            response = app.error(500, f"sandbox error: {exc}")
        if response is None:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return
        self._send(response)

    def _send(self, response: Response) -> None:
        payload = response.encode()
        self.send_response(response.status)
        if payload or response.status not in (204, 304):
            self.send_header("Content-Type", response.content_type)
        for key, value in response.headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if payload and self.command != "HEAD":
            self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve


class SandboxServer(ThreadingHTTPServer):
    """Serves several sandboxes on one port, each under its own prefix."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(self, apps: dict[str, SandboxApp], host: str = "127.0.0.1", port: int = 0):
        self.apps = {("/" + p.strip("/")): app for p, app in apps.items()}
        super().__init__((host, port), _Handler)
        self.base_url = f"http://{host}:{self.server_address[1]}"
        self._thread: threading.Thread | None = None

    def find(self, path: str) -> tuple[SandboxApp | None, str, str]:
        for prefix, app in self.apps.items():
            if path == prefix or path.startswith(prefix + "/"):
                return app, prefix, path[len(prefix) :]
        return None, "", path

    def url(self, prefix: str) -> str:
        return f"{self.base_url}/{prefix.strip('/')}"

    def start(self) -> SandboxServer:
        self._thread = threading.Thread(target=self.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.shutdown()
        self.server_close()
