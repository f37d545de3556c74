"""The one HTTP layer every connector uses.

Timeouts, retries with exponential backoff and jitter on 429/5xx and on
dropped connections (honouring ``Retry-After``) within a bounded total wait,
connection pooling, a User-Agent, and OAuth token refresh on 401: once,
single-flight per account. Errors come out classified and carry the app's
own message (an HTML page is never passed on: it is a proxy's or a
stranger's, not the app's words).

Credentials only leave through here, and only to the hosts the connector
declares (``vendor_hosts``; the rule is in ``connectors.hosts``): every
request and every token refresh checks its URL before anything is sent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import email.utils
import logging
import math
import random
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from .base import AuthError, ConnectorError, Credentials, NotFound, PermanentError, TransientError
from .hosts import check_destination
from .pacing import AccountPacing, RateLimits, app_for_url, limits_for

log = logging.getLogger(__name__)

USER_AGENT = "driftsync/1.0 (+self-hosted contact sync)"
CONNECT_TIMEOUT = 5.0
READ_TIMEOUT = 60.0
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
#: 429s one call waits out at most (besides the time budget of the app's limits)
MAX_RATE_LIMITED = 30

#: requests one account keeps in flight where the app documents no connection
#: limit (Google, HubSpot, Drift: their windows are paced separately)
DEFAULT_IN_FLIGHT = 10

_refresh_locks: dict[str, threading.Lock] = {}
_refresh_locks_guard = threading.Lock()


def _refresh_lock(account_key: str) -> threading.Lock:
    with _refresh_locks_guard:
        return _refresh_locks.setdefault(account_key, threading.Lock())


def make_session(pool_size: int = 10) -> requests.Session:
    session = requests.Session()
    # retries are ours (they need to see the body and honour Retry-After)
    adapter = HTTPAdapter(pool_connections=pool_size, pool_maxsize=pool_size, max_retries=0)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    session.headers["User-Agent"] = USER_AGENT
    return session


def retry_after_seconds(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds, from either form RFC 9110 allows (delay
    seconds or an HTTP-date); anything else (``soon``, ``nan``) counts as absent."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            parsed = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if parsed is None:
            return None
        if parsed.tzinfo is None:  # "-0000" dates come back naive: they are UTC
            parsed = parsed.replace(tzinfo=dt.UTC)
        seconds = parsed.timestamp() - time.time()
    if not math.isfinite(seconds):
        return None
    return max(0.0, seconds)


#: longest error text taken from a body that is not the app's JSON
MAX_TEXT_ERROR = 300
_SPACE = re.compile(r"\s+")


def shorten(text: str, limit: int = MAX_TEXT_ERROR) -> str:
    """One line, no control characters, at most ``limit`` characters."""
    text = _SPACE.sub(" ", "".join(c if c.isprintable() else " " for c in text)).strip()
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def text_error_message(response: requests.Response) -> str:
    """What to say about an answer that is not JSON: its text, short; an HTML
    page (a proxy's error page, or whatever a stranger's server sent) only
    as "HTTP 502 from <host>"."""
    host = urlsplit(response.url or "").hostname or "the app"
    fallback = f"HTTP {response.status_code} from {host}"
    content_type = response.headers.get("Content-Type", "").lower()
    text = response.text.strip()
    if "html" in content_type or "xml" in content_type or text.startswith("<"):
        return fallback
    return shorten(text) or fallback


def default_error_message(response: requests.Response) -> str:
    """The app's own message, for the common JSON error shapes."""
    try:
        body = response.json()
    except ValueError:
        return text_error_message(response)
    if isinstance(body, dict):
        err = body.get("error")
        if isinstance(err, dict) and err.get("message"):
            return str(err["message"])  # Drift, Google
        if isinstance(err, str) and body.get("error_description"):
            return f"{err}: {body['error_description']}"  # OAuth token endpoints
        if body.get("detail"):
            return str(body["detail"])  # Mailchimp problem+json
        if body.get("message"):
            return str(body["message"])  # HubSpot
        if isinstance(err, str):
            return err
    return shorten(response.text) or f"HTTP {response.status_code}"


Refresher = Callable[[Credentials], Credentials]
RefreshHook = Callable[[str, Refresher], Credentials]


def max_in_flight(limits: RateLimits | None) -> int:
    """Independent requests one account may have in flight: the app's
    connection limit (Mailchimp 10), else ``DEFAULT_IN_FLIGHT``. The account's
    ``AccountPacing`` holds the limit across every client of the account."""
    return limits.concurrency if limits is not None and limits.concurrency else DEFAULT_IN_FLIGHT


#: called when work a connector ran in a thread of its own is done (requests
#: in flight, a page read ahead): ``connections`` registers the closing of the
#: thread's database connections, which a token refresh or the shared pacing
#: store opened there, so none is left open until the thread is collected
THREAD_DONE: list[Callable[[], None]] = []


def in_thread(func: Callable[..., Any]) -> Callable[..., Any]:
    """``func`` for a helper thread: the ``THREAD_DONE`` hooks run after it."""

    def run(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        finally:
            for done in THREAD_DONE:
                done()

    return run


def in_flight_map(
    func: Callable[[Any], Any], items: Iterable[Any], limits: RateLimits | None
) -> list[Any]:
    """``[func(item) for item in items]`` with up to ``max_in_flight`` calls at
    once (in order; the first exception is raised once all have finished)."""
    todo = list(items)
    if len(todo) <= 1:
        return [func(item) for item in todo]
    with ThreadPoolExecutor(max_workers=min(max_in_flight(limits), len(todo))) as pool:
        return list(pool.map(in_thread(func), todo))


class HttpClient:
    """A requests session bound to one account of one app."""

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Credentials | None = None,
        authorize: Callable[[Credentials], dict[str, str]] | None = None,
        refresher: Refresher | None = None,
        refresh_hook: RefreshHook | None = None,
        account_key: str = "",
        vendor_hosts: Iterable[str] = (),
        error_message: Callable[[requests.Response], str] = default_error_message,
        max_attempts: int = 6,
        max_wait: float = 60.0,
        backoff_base: float = 0.25,
        session: requests.Session | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limits: RateLimits | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.credentials = credentials or Credentials()
        self.authorize = authorize or bearer_auth
        self.refresher = refresher
        self.refresh_hook = refresh_hook
        self.account_key = account_key or f"anon-{id(self)}"
        #: where this account's credentials may go; other hosts only as a
        #: sandbox override (``connectors.hosts``)
        self.vendor_hosts = tuple(vendor_hosts)
        self.error_message = error_message
        self.max_attempts = max_attempts
        self.max_wait = max_wait
        self.backoff_base = backoff_base
        self.session = session or make_session()
        self.sleep = sleep
        #: requests sent, by "METHOD path" (ids folded), for benchmarks and tests
        self.stats: Counter[str] = Counter()
        self._stats_lock = threading.Lock()
        #: the app's documented limits (by vendor host or sandbox prefix)
        self.limits = limits or limits_for(app_for_url(self.base_url))
        self.pacing = AccountPacing(self.limits, self.account_key) if self.limits else None

    # ------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Any = None,
        json: Any = None,
        data: Any = None,
        headers: dict[str, str] | None = None,
        ok: tuple[int, ...] = (),
        stat_key: str | None = None,
        url: str | None = None,
        retry_ambiguous: bool = True,
    ) -> requests.Response:
        """Send one request, retrying what is worth retrying.

        Returns the response for 2xx (and for statuses listed in ``ok``);
        raises a classified ``ConnectorError`` otherwise. With
        ``retry_ambiguous=False`` (a write the app does not deduplicate), a
        failure after which the app may have done the work — a lost answer,
        500, 502, 504 — is raised at once instead of sent again; 429, 503
        and failures to connect are still retried.
        """
        target = url or f"{self.base_url}{path}"
        # before a refresh too: a refresh sends the refresh token and client secret
        check_destination(target, self.vendor_hosts)
        waited = 0.0
        refreshed = False
        attempt = 0
        limited = 0  # 429s so far: their waits grow apart from other retries
        if self.refresher and self._expired():
            self._refresh(self.credentials.access_token)
            refreshed = True
        while True:
            attempt += 1
            sent_token = self.credentials.access_token
            req_headers = dict(self.authorize(self.credentials))
            if headers:
                req_headers.update(headers)
            with self._stats_lock:  # requests of one client may run in threads
                self.stats[stat_key or f"{method} {path}"] += 1
            try:
                with self._paced(path, method):
                    response = self.session.request(
                        method,
                        target,
                        params=params,
                        json=json,
                        data=data,
                        headers=req_headers,
                        timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
                    )
            except (requests.ConnectionError, requests.Timeout) as exc:
                error: ConnectorError = TransientError(f"{type(exc).__name__}: {exc}")
                if not retry_ambiguous and not isinstance(exc, requests.ConnectTimeout):
                    refused = isinstance(exc, requests.ConnectionError) and "refused" in str(exc)
                    if not refused:
                        raise error from exc
                delay = self._backoff(attempt)
            else:
                status = response.status_code
                if 200 <= status < 300 or status in ok:
                    return response
                message = self.error_message(response)
                if status == 401 and self.refresher and not refreshed:
                    refreshed = True
                    self._refresh(sent_token)
                    continue
                if status == 401:
                    raise AuthError(message, status=status)
                if status not in RETRY_STATUSES:
                    raise classify(status, message)
                error = TransientError(message, status=status)
                if not retry_ambiguous and status not in (429, 503):
                    raise error
                hinted = retry_after_seconds(response)
                if status == 429:
                    limited += 1
                    delay, budget = self._rate_limit_wait(path, response, limited, hinted)
                    if waited + delay > budget or limited > MAX_RATE_LIMITED:
                        raise self._gave_up(error, waited, budget)
                    log.info("%s %s: rate limited; waiting %.1fs", method, path, delay)
                    self.sleep(delay)
                    waited += delay
                    attempt -= 1  # waiting out a limit is not a failed attempt
                    continue
                delay = hinted if hinted is not None else self._backoff(attempt)
            if attempt >= self.max_attempts or waited + delay > self.max_wait:
                raise error
            log.info("%s %s: %s; retry %d in %.2fs", method, path, error, attempt, delay)
            self.sleep(delay)
            waited += delay

    def in_flight(self, func: Callable[[Any], Any], items: Iterable[Any]) -> list[Any]:
        """Independent requests of this account, up to its app's concurrency."""
        return in_flight_map(func, items, self.limits)

    def get_json(self, path: str, **kwargs: Any) -> Any:
        return self.request("GET", path, **kwargs).json()

    def post_json(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        response = self.request("POST", path, json=body, **kwargs)
        return response.json() if response.content else None

    # ------------------------------------------------------------------

    def _paced(self, path: str, method: str = "GET") -> Any:
        if self.pacing is None:
            return contextlib.nullcontext()
        return self.pacing.request(path, self.sleep, method)

    def _rate_limit_wait(
        self, path: str, response: requests.Response, attempt: int, hinted: float | None
    ) -> tuple[float, float]:
        """How long to wait after a 429, and the most one call may wait in all.

        The apps send no ``Retry-After`` (docs/api-fidelity.md):
        wait out the app's own window (HubSpot 10 s, Google up to a minute
        with backoff, Mailchimp a short backoff), drain the account's shared
        bucket so its other workers pause too. HubSpot's daily limit cannot
        be waited out inside a run.
        """
        limits = self.limits
        budget = max(self.max_wait, limits.max_wait) if limits else self.max_wait
        if _policy_name(response) == "DAILY":
            return float("inf"), budget
        if hinted is not None:
            delay = hinted
        elif limits is not None:
            delay = limits.retry_delay(attempt) * random.uniform(0.8, 1.0)
        else:
            delay = self._backoff(attempt)
        if self.pacing is not None:
            self.pacing.rate_limited(path, delay)
        return delay, budget

    def _gave_up(self, error: ConnectorError, waited: float, budget: float) -> ConnectorError:
        app = self.limits.app if self.limits else "the app"
        return TransientError(
            f"Rate limited by {app}: still refused after waiting {waited:.0f}s "
            f"(at most {budget:.0f}s per call); the run stops here and resumes later. "
            f"{app}'s answer: {error.message}",
            status=429,
            code="rate_limited",
        )

    def _backoff(self, attempt: int) -> float:
        # full jitter: uniform in [0, base * 2^attempt], at least a little
        ceiling = self.backoff_base * (2 ** (attempt - 1))
        return min(self.max_wait, random.uniform(ceiling / 2, ceiling))

    def _expired(self) -> bool:
        expires = self.credentials.expires_at
        return bool(expires) and expires - 30 < time.time()

    def _refresh(self, stale_token: str) -> None:
        """Refresh once per stale token, single-flight per account."""
        assert self.refresher is not None
        with _refresh_lock(self.account_key):
            if self.credentials.access_token != stale_token:
                return  # another thread already refreshed
            refresher = self.refresher
            if self.refresh_hook is not None:
                # the hook reloads the stored tokens under a row lock and
                # only calls the refresher when they are still the stale ones
                self.credentials = self.refresh_hook(stale_token, refresher)
            else:
                self.credentials = refresher(self.credentials)


def _policy_name(response: requests.Response) -> str:
    """HubSpot names the limit it applied (``TEN_SECONDLY_ROLLING``, ``DAILY``)."""
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("policyName") or "") if isinstance(body, dict) else ""


def bearer_auth(credentials: Credentials) -> dict[str, str]:
    token = credentials.access_token or credentials.api_key
    return {"Authorization": f"Bearer {token}"} if token else {}


def classify(status: int, message: str) -> ConnectorError:
    if status in RETRY_STATUSES:
        return TransientError(message, status=status)
    if status == 401:
        return AuthError(message, status=status)
    if status == 404:
        return NotFound(message, status=status)
    return PermanentError(message, status=status)


def oauth_refresh(
    session_factory: Callable[[], requests.Session],
    token_url: str,
    client_id: str,
    client_secret: str,
    vendor_hosts: Iterable[str] = (),
) -> Refresher:
    """A refresher for the standard refresh_token grant (Drift, Google, HubSpot).

    Accepts snake_case and camelCase keys in the answer. A refused refresh
    (``invalid_grant``, revoked) raises ``AuthError``: the account needs a
    person to authorize it again; it is never retried. The refresh token and
    the client secret go to ``token_url`` only when it is on ``vendor_hosts``
    (or a sandbox override is allowed).
    """
    hosts = tuple(vendor_hosts)

    def refresh(current: Credentials) -> Credentials:
        if not current.refresh_token:
            raise AuthError("The access token expired and there is no refresh token")
        check_destination(token_url, hosts)
        try:
            response = session_factory().post(
                token_url,
                data={
                    "grant_type": "refresh_token",
                    "refresh_token": current.refresh_token,
                    "client_id": client_id,
                    "client_secret": client_secret,
                },
                timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            )
        except (requests.ConnectionError, requests.Timeout) as exc:
            raise TransientError(f"token refresh failed: {exc}") from exc
        if response.status_code in RETRY_STATUSES:
            raise TransientError(default_error_message(response), status=response.status_code)
        if response.status_code >= 400:
            raise AuthError(
                f"Token refresh refused: {default_error_message(response)}",
                status=response.status_code,
                code="invalid_grant",
            )
        return credentials_from_token_response(response.json(), previous=current)

    return refresh


def credentials_from_token_response(
    body: dict[str, Any], previous: Credentials | None = None
) -> Credentials:
    def pick(*names: str) -> Any:
        for name in names:
            if body.get(name) not in (None, ""):
                return body[name]
        return None

    access = pick("access_token", "accessToken")
    if not access:
        raise PermanentError(f"Token response without an access token: {sorted(body)}")
    refresh = pick("refresh_token", "refreshToken") or (previous.refresh_token if previous else "")
    expires_in = pick("expires_in", "expiresIn")
    extra = dict(previous.extra) if previous else {}
    for key in ("orgId", "org_id", "scope", "token_type"):
        if body.get(key) not in (None, ""):
            extra[key] = body[key]
    return Credentials(
        access_token=str(access),
        refresh_token=str(refresh or ""),
        expires_at=time.time() + float(expires_in) if expires_in else None,
        api_key=previous.api_key if previous else "",
        extra=extra,
    )


__all__ = [
    "HttpClient",
    "PermanentError",
    "bearer_auth",
    "classify",
    "credentials_from_token_response",
    "in_flight_map",
    "in_thread",
    "make_session",
    "max_in_flight",
    "oauth_refresh",
]


def oauth_app_credentials(provider_id: str) -> tuple[str, str]:
    """The OAuth app's client id and secret, from settings (allauth's APP)."""
    try:
        from django.conf import settings

        app = settings.SOCIALACCOUNT_PROVIDERS.get(provider_id, {}).get("APP", {})
    except Exception:  # settings not configured: a bare connector in a script
        return "", ""
    return app.get("client_id", ""), app.get("secret", "")
