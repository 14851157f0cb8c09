"""Per-user limits shared by every way of starting work, and a per-connection token bucket.

- `take`: one unit of a user's budget for a DRF throttle scope (e.g. `job_trigger`, JOB_TRIGGER_RATE).
  The REST throttle (basic/api/throttles.py) and the scheduler (basic/jobs/schedules.py) both call
  it, so a user's REST starts and scheduled runs draw on one budget, kept in Django's cache (Redis:
  shared by every web process and worker). It keeps DRF's `SimpleRateThrottle` sliding window (at
  most `limit` in any `period` seconds, Retry-After until the oldest drops out). On Redis one script
  reads and writes the window, so concurrent starts at the edge of a budget cannot all pass it;
  on another cache (the tests' in-process one) a lock serialises them.
- `lock_user`: the row lock that makes a per-user cap (schedules, students) a check-then-insert
  no parallel request can slip between.
- `TokenBucket`: a per-connection limit for sockets.
"""
import math
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.cache import caches
from redis.commands.core import Script

clock: Callable[[], float] = time.time  # DRF's throttles use time.time as well; tests may stop it

PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}  # DRF's: the period's first letter


def parse_rate(rate: str) -> tuple[int, int]:
    """"30/min" -> (30, 60), as DRF reads a throttle rate."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip()[0].lower()]


def scope_rate(scope: str) -> str | None:
    """The rate of a throttle scope from settings (REST_FRAMEWORK's DEFAULT_THROTTLE_RATES); None: no limit."""
    return settings.REST_FRAMEWORK.get("DEFAULT_THROTTLE_RATES", {}).get(scope)


_shared: tuple[Any, Any] | None = None


def shared_cache() -> Any:
    """The default cache, one instance for the whole process. Django's `cache` is one per async
    context: under Daphne every request got a new one, hence a new Redis connection (a TCP connect
    and a HELLO) for each throttled request (issue 19). Made again if CACHES changes (tests)."""
    global _shared
    config = settings.CACHES["default"]
    if _shared is None or _shared[0] is not config:  # (holding `config` keeps its identity unique)
        _shared = (config, caches.create_connection("default"))
    return _shared[1]


def throttle_key(scope: str, ident: Any) -> str:
    """DRF's `SimpleRateThrottle.cache_format` for a scope and a user's pk."""
    return f"throttle_{scope}_{ident}"


@dataclass(frozen=True)
class Decision:
    allowed: bool
    limit: int
    period: int
    retry_after: float | None = None  # seconds until one more is allowed, when refused

    def describe(self) -> str:
        """The limit in words, e.g. "30 a minute"."""
        words = {1: "second", 60: "minute", 3600: "hour", 86400: "day"}
        return f"{self.limit} a {words.get(self.period, f'{self.period} s')}"


def take(scope: str, ident: Any, rate: str | None = None, now: float | None = None) -> Decision:
    """Use one unit of `ident`'s budget for `scope` if there is one left (DRF's sliding window:
    at most `limit` in any `period` seconds). `rate` defaults to the scope's setting; with none the
    budget is unlimited."""
    rate = rate or scope_rate(scope)
    if rate is None:
        return Decision(allowed=True, limit=0, period=0)
    limit, period = parse_rate(rate)
    now = clock() if now is None else now
    cache = shared_cache()
    redis_client = getattr(cache, "redis_client", None)
    if redis_client is not None:
        allowed, oldest = _take_in_redis(redis_client(), cache.make_key(window_key(scope, ident)), limit, period, now)
    else:
        allowed, oldest = _take_in_cache(cache, throttle_key(scope, ident), limit, period, now)
    if allowed:
        return Decision(allowed=True, limit=limit, period=period)
    # (Clamped: a start that read the clock just before another's, which then took the place, would
    # otherwise be told to wait a hair more than a period.)
    wait = period - (now - oldest) if oldest is not None else period
    return Decision(allowed=False, limit=limit, period=period, retry_after=min(max(wait, 0.0), period))


def window_key(scope: str, ident: Any) -> str:
    """The Redis sorted set of `ident`'s starts in the window (its own name: not DRF's pickled list)."""
    return f"start-window:{scope}:{ident}"


# The window as a sorted set of start times: drop those out of it, count, add one if there is room.
# One script, so two starts at once never both see the last free place. Each member is unique
# (two starts may share a time to the microsecond).
_TAKE = Script(None, b"""
local now, period, limit = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - period)
if redis.call('ZCARD', KEYS[1]) >= limit then
  local oldest = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  return {0, oldest[2] or false}
end
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[4])
redis.call('EXPIRE', KEYS[1], math.ceil(period))
return {1, false}
""")


def _take_in_redis(client: Any, key: str, limit: int, period: int, now: float) -> tuple[bool, float | None]:
    allowed, oldest = _TAKE(keys=[key], args=[repr(now), period, limit, f"{now!r}:{secrets.token_hex(4)}"],
                            client=client)
    return bool(allowed), float(oldest) if oldest is not None else None


_local_lock = threading.Lock()


def _take_in_cache(cache: Any, key: str, limit: int, period: int, now: float) -> tuple[bool, float | None]:
    """DRF's own window in a cache without scripts, read and written under a lock (such a cache
    is in-process: the tests' LocMemCache)."""
    with _local_lock:
        history = [stamp for stamp in cache.get(key, []) if stamp > now - period]
        if len(history) >= limit:
            return False, history[-1] if history else None
        history.insert(0, now)
        cache.set(key, history, period)
        return True, None


def retry_after_seconds(decision: Decision) -> int:
    """Whole seconds to wait, at least 1 (a `Retry-After` value)."""
    return max(1, math.ceil(decision.retry_after or 0))


def lock_user(user: Any) -> None:
    """Inside a transaction: lock `user`'s row until it ends, so one user's capped inserts take
    turns (PostgreSQL: SELECT ... FOR UPDATE; SQLite takes the database's write lock at the
    transaction's start, settings' transaction_mode IMMEDIATE, which serialises them already)."""
    list(get_user_model().objects.select_for_update().filter(pk=user.pk).values_list("pk", flat=True))


class TokenBucket:
    """A per-connection token bucket: `rate` messages a second on average, bursts up to `burst`."""

    def __init__(self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.clock = clock
        self.tokens = float(burst)
        self.updated = clock()

    def allow(self) -> bool:
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False
