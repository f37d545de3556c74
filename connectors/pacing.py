"""Client-side pacing: stay under each app's rate limits, per account.

The apps answer 429 *without* ``Retry-After`` (Google, HubSpot, Mailchimp;
sources in docs/api-fidelity.md), so a client that only reacts
to 429s burns its retries. Instead every request of an account takes a token
from a bucket sized to the app's documented window, and Mailchimp's
connection limit is held with a counting semaphore.

- Window limits (Google, HubSpot, Drift): a token bucket with burst ``b``
  (a quarter of the limit) and refill ``r`` chosen so that
  ``b + lease + r * (window + lease_ttl)`` stays under the limit: at most
  ``limit`` requests in any rolling window, however many workers hold leases
  (a lease not spent within ``lease_ttl`` is lost).
  Tokens are leased from a shared store in chunks, so the hot path touches
  the store once per chunk (a twentieth of the limit), not once per request;
  the smaller the chunk, the closer the pace to the limit (HubSpot: 6.4 a
  second of its 10, 5.5 with chunks of a tenth). The default store
  is per process; ``connections`` registers a shared one at start-up
  (``connections/pacing_store.py``: the database, or Redis when ``REDIS_URL``
  is set) so every worker of an account, on any machine, shares one bucket.
- Concurrency (Mailchimp: 10 simultaneous connections per user): a
  per-process semaphore plus one ``flock`` per slot file, so threads and
  processes of one machine together hold at most ``concurrency`` requests.
- After a 429 the bucket is drained for the wait, so the account's other
  workers pause too instead of piling on.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any, Protocol
from urllib.parse import urlsplit

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RateLimits:
    """What one app allows one account, and how to wait after a bare 429."""

    app: str
    #: requests per ``window`` seconds (0 = no window limit)
    limit: int = 0
    window: float = 0.0
    #: requests per ``search_window`` on search endpoints (HubSpot)
    search_limit: int = 0
    search_window: float = 1.0
    #: simultaneous requests (0 = unlimited)
    concurrency: int = 0
    #: simultaneous writes (anything but GET; 0 = as ``concurrency``)
    write_concurrency: int = 0
    #: first wait after a 429 without Retry-After, doubled up to ``retry_cap``
    retry_first: float = 0.25
    retry_cap: float = 4.0
    #: total seconds one call may spend waiting out 429s before giving up
    max_wait: float = 60.0

    def retry_delay(self, attempt: int) -> float:
        return min(self.retry_cap, self.retry_first * (2 ** (attempt - 1)))


#: documented limits (see docs/api-fidelity.md for each source)
APP_LIMITS: dict[str, RateLimits] = {
    # "Read requests per minute per user" (90 reported by public clients,
    # e.g. MrCaspan/GAS-Gmail-Signature-Templator#1; 180 in onmyway133/notes#517):
    # the lower one. A minute quota: back off up to a minute.
    # In flight: "Mutate requests for the same user should be sent sequentially
    # to avoid increased latency and failures" (developers.google.com/people/
    # api/rest/v1/people/batchCreateContacts, batchUpdateContacts,
    # updateContact): one write at a time per account, reads (batchGet of 200
    # people) up to 4 at once.
    "google": RateLimits(
        "google",
        limit=90,
        window=60.0,
        concurrency=4,
        write_concurrency=1,
        retry_first=5.0,
        retry_cap=60.0,
        max_wait=180.0,
    ),
    # 100 requests / 10 s per app per account (developers.hubspot.com/apisbytier),
    # search 4 / s per token (changelog crm-search-api-rate-limit-increase).
    # A rolling 10 s window: waiting one window always clears it. In flight:
    # HubSpot documents no connection limit, only the window, i.e. 10 a second
    # (same page): 5 at once, so a window's budget is not spent in one burst.
    "hubspot": RateLimits(
        "hubspot",
        limit=100,
        window=10.0,
        search_limit=4,
        search_window=1.0,
        concurrency=5,
        retry_first=10.0,
        retry_cap=10.0,
        max_wait=40.0,
    ),
    # "10 simultaneous connections" per user (mailchimp.com/developer/marketing/
    # docs/fundamentals/): no window, so a short backoff is enough.
    "mailchimp": RateLimits(
        "mailchimp", concurrency=10, retry_first=0.5, retry_cap=4.0, max_wait=30.0
    ),
    # Drift documents a 429 but no number we could confirm: a conservative
    # 50 / 10 s (5 per second), overridable in settings.
    "drift": RateLimits(
        "drift", limit=50, window=10.0, retry_first=2.0, retry_cap=10.0, max_wait=60.0
    ),
}

#: vendor API hosts -> app (the sandboxes are recognised by their path prefix)
VENDOR_HOSTS = {
    "people.googleapis.com": "google",
    "api.hubapi.com": "hubspot",
    "driftapi.com": "drift",
}


def app_for_url(base_url: str) -> str:
    parts = urlsplit(base_url)
    host = (parts.hostname or "").lower()
    if host in VENDOR_HOSTS:
        return VENDOR_HOSTS[host]
    if host.endswith(".api.mailchimp.com"):
        return "mailchimp"
    first = parts.path.strip("/").split("/", 1)[0]
    return first if first in APP_LIMITS else ""


def limits_for(app: str) -> RateLimits | None:
    """The app's limits, with overrides from ``settings.DRIFTSYNC_RATE_LIMITS``
    (a higher HubSpot tier: ``{"hubspot": {"limit": 190}}``; tests scale windows)."""
    base = APP_LIMITS.get(app)
    if base is None:
        return None
    try:
        from django.conf import settings

        override = dict(getattr(settings, "DRIFTSYNC_RATE_LIMITS", {}).get(app) or {})
    except Exception:  # no Django settings: a bare connector in a script
        override = {}
    return replace(base, **override) if override else base


# ---------------------------------------------------------------- token buckets


class PaceStore(Protocol):
    """Where buckets live; implemented here (per process) and by ``connections``
    (database, Redis), which ``use_shared_store`` installs."""

    def take(self, key: str, want: int, capacity: float, rate: float) -> tuple[int, float]:
        """Take up to ``want`` tokens: (granted, seconds until one is free)."""

    def drain(self, key: str, seconds: float, rate: float) -> None:
        """Empty the bucket for ``seconds`` (after a 429)."""


class MemoryStore:
    """Buckets in this process only."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, tuple[float, float]] = {}

    def take(self, key: str, want: int, capacity: float, rate: float) -> tuple[int, float]:
        with self._lock:
            now = time.monotonic()
            tokens, at = self._buckets.get(key, (capacity, now))
            tokens = min(capacity, tokens + (now - at) * rate)
            granted = min(want, int(tokens))
            tokens -= granted
            self._buckets[key] = (tokens, now)
            return granted, 0.0 if granted else (1 - tokens) / rate

    def drain(self, key: str, seconds: float, rate: float) -> None:
        with self._lock:
            now = time.monotonic()
            tokens, _ = self._buckets.get(key, (0.0, now))
            self._buckets[key] = (min(tokens, 0.0) - seconds * rate, now)


_memory = MemoryStore()
_shared: PaceStore | None = None


def use_shared_store(store: PaceStore | None) -> None:
    """Share buckets across processes (the database store from ``connections``)."""
    global _shared
    _shared = store


class Pacer:
    """Paces one bucket (an account, or its search endpoints)."""

    def __init__(self, key: str, limit: int, window: float, shared: bool) -> None:
        self.key = key
        # a quarter of the window at once (a run's few calls never wait), the
        # rest spread. Tokens are leased ``lease`` at a time and spent within
        # ``lease_ttl`` (or lost), so what a window sees was taken from the
        # bucket at most ``lease_ttl`` before it began, however many workers
        # hold leases: burst + lease + rate * (window + lease_ttl) <= limit.
        # A twentieth of the limit to a lease: a store round trip per 5
        # HubSpot requests, and a pace of 64 % of the limit (a tenth: 55 %)
        self.burst = max(1, limit // 4)
        self.lease = max(1, min(self.burst, limit // 20))
        self.lease_ttl = window / 10
        if self.lease == 1:
            # a small limit (HubSpot search: 4 / s): a token is spent as soon as
            # it is taken, so nothing is held on lease and any window sees at
            # most burst + rate * window; a tenth kept for the requests' jitter
            self.rate = (limit - self.burst) / (window * 1.1)
        else:
            self.rate = max(limit - self.burst - self.lease, 1) / (window + self.lease_ttl)
        self.shared = shared
        self._lock = threading.Lock()
        self._leased = 0
        self._lease_until = 0.0

    def _store(self) -> PaceStore:
        return _shared if (self.shared and _shared is not None) else _memory

    def acquire(self, sleep: Any = time.sleep) -> float:
        """Wait for a token; returns the seconds waited."""
        waited = 0.0
        while True:
            with self._lock:
                now = time.monotonic()
                if self._leased and now < self._lease_until:
                    self._leased -= 1
                    return waited
                try:
                    granted, wait = self._store().take(
                        self.key, self.lease, float(self.burst), self.rate
                    )
                except Exception as exc:  # a store that fails must not stop the sync
                    log.warning("pacing store failed (%s); pacing in this process only", exc)
                    granted, wait = _memory.take(self.key, self.lease, float(self.burst), self.rate)
                if granted:
                    self._leased, self._lease_until = granted - 1, now + self.lease_ttl
                    return waited
            wait = max(wait, 0.01)
            sleep(wait)
            waited += wait

    def drain(self, seconds: float) -> None:
        with self._lock:
            self._leased = 0
            try:
                self._store().drain(self.key, seconds, self.rate)
            except Exception as exc:
                log.warning("pacing store failed (%s)", exc)
                _memory.drain(self.key, seconds, self.rate)


_pacers: dict[tuple[str, int, float], Pacer] = {}
_pacers_lock = threading.Lock()


def pacer(key: str, limit: int, window: float, *, shared: bool) -> Pacer:
    with _pacers_lock:
        found = _pacers.get((key, limit, window))
        if found is None:
            found = _pacers[(key, limit, window)] = Pacer(key, limit, window, shared)
        return found


# ---------------------------------------------------------------- concurrency


class ConcurrencyLimit:
    """At most ``slots`` requests at once per account on this machine: a
    semaphore for the threads of this process and one ``flock`` per slot
    file for the processes."""

    def __init__(self, key: str, slots: int, directory: str | None = None) -> None:
        self.slots = slots
        self._sem = threading.BoundedSemaphore(slots)
        self._lock = threading.Lock()
        self._free = list(range(slots))
        digest = hashlib.sha1(key.encode()).hexdigest()[:16]
        folder = directory or os.path.join(tempfile.gettempdir(), "driftsync-slots")
        os.makedirs(folder, exist_ok=True)
        self._files = [os.path.join(folder, f"{digest}-{i}.lock") for i in range(slots)]
        self._fds: dict[int, int] = {}

    @contextlib.contextmanager
    def slot(self, sleep: Any = time.sleep) -> Iterator[None]:
        self._sem.acquire()
        try:
            index = self._lock_file(sleep)
            try:
                yield
            finally:
                self._unlock_file(index)
        finally:
            self._sem.release()

    def _lock_file(self, sleep: Any) -> int | None:
        try:
            import fcntl
        except ImportError:  # not POSIX: threads only
            return None
        delay = 0.005
        while True:
            with self._lock:
                for index in list(self._free):
                    fd = self._fds.get(index)
                    if fd is None:
                        fd = self._fds[index] = os.open(self._files[index], os.O_CREAT | os.O_RDWR)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    except OSError:
                        continue  # another process holds this slot
                    self._free.remove(index)
                    return index
            sleep(delay)
            delay = min(delay * 2, 0.1)

    def _unlock_file(self, index: int | None) -> None:
        if index is None:
            return
        import fcntl

        with self._lock:
            fcntl.flock(self._fds[index], fcntl.LOCK_UN)
            self._free.append(index)


_limits: dict[tuple[str, int], ConcurrencyLimit] = {}


def concurrency_limit(key: str, slots: int) -> ConcurrencyLimit:
    with _pacers_lock:
        found = _limits.get((key, slots))
        if found is None:
            found = _limits[(key, slots)] = ConcurrencyLimit(key, slots)
        return found


# ---------------------------------------------------------------- per client


class AccountPacing:
    """What an ``HttpClient`` of one account uses before and after requests."""

    def __init__(self, limits: RateLimits, account_key: str) -> None:
        self.limits = limits
        key = f"{limits.app}:{account_key}"
        # an Account's key ("account-<pk>") is shared by its workers; an
        # anonymous client paces in its process only
        shared = account_key.startswith("account-")
        self.general = (
            pacer(key, limits.limit, limits.window, shared=shared)
            if limits.limit and limits.window
            else None
        )
        self.search = (
            pacer(f"{key}:search", limits.search_limit, limits.search_window, shared=shared)
            if limits.search_limit and limits.search_window
            else None
        )
        self.concurrency = (
            concurrency_limit(key, limits.concurrency) if limits.concurrency else None
        )
        self.writes = (
            concurrency_limit(f"{key}:writes", limits.write_concurrency)
            if limits.write_concurrency
            else None
        )

    def bucket(self, path: str) -> Pacer | None:
        if self.search is not None and path.rstrip("/").endswith("/search"):
            return self.search
        return self.general

    @contextlib.contextmanager
    def request(self, path: str, sleep: Any = time.sleep, method: str = "GET") -> Iterator[None]:
        bucket = self.bucket(path)
        if bucket is not None:
            bucket.acquire(sleep)
        with contextlib.ExitStack() as held:
            # the write slot first: a write waiting for its turn holds no general slot
            if self.writes is not None and method.upper() != "GET":
                held.enter_context(self.writes.slot(sleep))
            if self.concurrency is not None:
                held.enter_context(self.concurrency.slot(sleep))
            yield

    def rate_limited(self, path: str, seconds: float) -> None:
        bucket = self.bucket(path)
        if bucket is not None:
            bucket.drain(seconds)
