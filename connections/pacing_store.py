"""Pacing shared by every worker of an account, across processes and machines.

``connectors.pacing`` paces each account with a token bucket; by default
the bucket lives in the process. At start-up (``ConnectionsConfig.ready``)
:func:`install` puts the buckets where every worker sees them:

- **Redis** when ``REDIS_URL`` is set: one hash per bucket, taken and
  drained by a Lua script (atomic in Redis, Redis's own clock), expiring
  once it would be full again;
- **the database** otherwise: one :class:`PaceBucket` row per bucket,
  read and then updated only if its ``version`` is still the one read (a
  conditional UPDATE: two workers never spend the same tokens; the loser
  reads again). Two short queries per lease, and a lease is about a tenth of
  the app's window (``connectors.pacing.Pacer``), not one per request. The
  clock is the machine's (``time.time()``): keep the workers' clocks in sync
  (NTP), as the locks' heartbeats already need.

Inside a database transaction the database store paces in the process only:
a row updated there stays locked until the transaction ends, which would
make the account's other workers wait for it.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, models

from connectors import pacing

log = logging.getLogger(__name__)


class PaceBucket(models.Model):
    """One token bucket (``connectors.pacing``): an account's requests to one app."""

    key = models.CharField(max_length=200, unique=True)
    tokens = models.FloatField()
    #: when ``tokens`` was computed (seconds since the epoch)
    at = models.FloatField()
    #: bumped by every update: the conditional UPDATE's guard
    version = models.BigIntegerField(default=0)

    class Meta:
        app_label = "connections"
        verbose_name = "pacing bucket"

    def __str__(self) -> str:
        return f"{self.key}: {self.tokens:.1f} tokens"


class DatabaseStore:
    """Buckets in the database (the default): see the module docstring."""

    #: conditional UPDATEs lost in a row before pacing this one in the process
    attempts = 8

    def __init__(self) -> None:
        self._local = pacing.MemoryStore()

    def take(self, key: str, want: int, capacity: float, rate: float) -> tuple[int, float]:
        if connection.in_atomic_block:
            return self._local.take(key, want, capacity, rate)

        def spend(tokens: float) -> tuple[float, tuple[int, float]]:
            granted = max(0, min(want, int(tokens)))
            left = tokens - granted
            return left, (granted, 0.0 if granted else (1 - left) / rate)

        return self._update(key, capacity, rate, spend)

    def drain(self, key: str, seconds: float, rate: float) -> None:
        if connection.in_atomic_block:
            self._local.drain(key, seconds, rate)
            return
        self._update(key, math.inf, rate, lambda tokens: (min(tokens, 0.0) - seconds * rate, None))

    def _update(
        self, key: str, capacity: float, rate: float, change: Callable[[float], tuple[float, Any]]
    ) -> Any:
        """Apply ``change`` (tokens -> new tokens, result) to the refilled bucket."""
        for _ in range(self.attempts):
            now = time.time()
            row = PaceBucket.objects.filter(key=key).values_list("tokens", "at", "version").first()
            if row is None:
                tokens, result = change(capacity if math.isfinite(capacity) else 0.0)
                try:
                    PaceBucket.objects.create(key=key, tokens=tokens, at=now)
                except IntegrityError:
                    continue  # another worker made it first: read it
                return result
            tokens, at, version = row
            tokens = min(capacity, tokens + max(0.0, now - at) * rate)
            tokens, result = change(tokens)
            if PaceBucket.objects.filter(key=key, version=version).update(
                tokens=tokens, at=now, version=version + 1
            ):
                return result
        raise RuntimeError(f"pacing bucket {key} too contended")


#: KEYS[1] the bucket; ARGV: mode ("take"/"drain"), want or seconds, capacity, rate
_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local mode, arg = ARGV[1], tonumber(ARGV[2])
local capacity, rate = tonumber(ARGV[3]), tonumber(ARGV[4])
if capacity <= 0 then capacity = math.huge end
local b = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens, at = tonumber(b[1]), tonumber(b[2])
if tokens == nil then tokens = capacity; at = now end
tokens = math.min(capacity, tokens + math.max(0, now - at) * rate)
local granted = 0
if mode == 'take' then
  granted = math.max(0, math.min(arg, math.floor(tokens)))
  tokens = tokens - granted
else
  tokens = math.min(tokens, 0) - arg * rate
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(now))
-- gone once it would be full again (a drain does not know the capacity: 10 min more)
local full = (mode == 'take') and (capacity - tokens) / rate or (-tokens / rate + 600)
redis.call('EXPIRE', KEYS[1], math.ceil(full) + 1)
return {granted, tostring(tokens)}
"""


class RedisStore:
    """Buckets in Redis (``REDIS_URL``): see the module docstring."""

    def __init__(self, url: str, prefix: str = "driftsync:pace:") -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_timeout=5)
        self.prefix = prefix
        self.script = self.client.register_script(_SCRIPT)

    def take(self, key: str, want: int, capacity: float, rate: float) -> tuple[int, float]:
        granted, tokens = self.script(keys=[self.prefix + key], args=["take", want, capacity, rate])
        granted, left = int(granted), float(tokens)
        return granted, 0.0 if granted else (1 - left) / rate

    def drain(self, key: str, seconds: float, rate: float) -> None:
        # 0: capacity unknown here (a drain leaves the bucket below any capacity)
        self.script(keys=[self.prefix + key], args=["drain", seconds, 0, rate])


def store_for_settings() -> pacing.PaceStore:
    """Redis when ``REDIS_URL`` is set, else the database."""
    url = getattr(settings, "REDIS_URL", "")
    if url:
        # one namespace per database: two installations sharing a Redis never share buckets
        name = str(settings.DATABASES["default"].get("NAME") or "")
        return RedisStore(url, prefix=f"driftsync:pace:{name}:")
    return DatabaseStore()


def install() -> None:
    """Share every account's pacing across its workers (``connectors.pacing``)."""
    pacing.use_shared_store(store_for_settings())
