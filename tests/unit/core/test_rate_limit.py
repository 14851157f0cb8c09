import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from basic.core import rate_limit
from basic.core.rate_limit import TokenBucket


def test_burst_then_refill():
    now = [0.0]
    bucket = TokenBucket(rate=10, burst=5, clock=lambda: now[0])
    assert all(bucket.allow() for _ in range(5))
    assert not bucket.allow()
    now[0] += 0.1
    assert bucket.allow()
    assert not bucket.allow()
    now[0] += 100
    assert sum(bucket.allow() for _ in range(100)) == 5


def test_the_start_budget_uses_one_cache_client_per_process(settings):
    """Issue 19: Django's `cache` is one per async context, so under Daphne each request opened a new
    Redis connection to count its start. Every thread and context now shares one client."""
    import asyncio
    from concurrent.futures import ThreadPoolExecutor

    from basic.core import rate_limit

    first = rate_limit.shared_cache()

    async def from_a_context():
        return rate_limit.shared_cache()

    assert asyncio.run(from_a_context()) is first
    with ThreadPoolExecutor(2) as pool:
        assert all(cache is first for cache in pool.map(lambda _: rate_limit.shared_cache(), range(4)))
    assert rate_limit.take("job_trigger", 1, rate="2/min").allowed
    assert first.get(rate_limit.throttle_key("job_trigger", 1))  # counted in the shared client
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": "elsewhere"}}
    assert rate_limit.shared_cache() is not first  # settings changed: a new client


def test_the_redis_cache_builds_one_client_per_pool(settings):
    """Issue 19: Django's Redis cache built a `redis.Redis` (~0.2 ms) for every command, two per
    throttled REST request; basic/core/redis_cache.py keeps one per connection pool."""
    from django.core.cache.backends.redis import RedisCacheClient

    from basic.core import redis_target
    from basic.core.redis_cache import SharedClientRedisCache

    config = redis_target.cache_settings(settings.REDIS_URL, None)
    cache = SharedClientRedisCache(config["LOCATION"], {})
    assert isinstance(cache._cache, RedisCacheClient)
    cache.set("shared-client-check", [1.5], 30)
    assert cache.get("shared-client-check") == [1.5]
    assert cache._cache.get_client(write=True) is cache._cache.get_client(write=False)
    assert len(cache._cache._clients) == 1


def test_more_requests_at_once_than_the_cache_has_connections_wait_for_one_not_fail(settings):
    """200 REST clients starting jobs at once got 503s: each throttled start reads and writes this
    cache, and redis-py's default pool raises MaxConnectionsError past its cap (bench_jobs at 200
    clients, 57 of 2,000 starts). The pool now waits for a free connection."""
    import threading

    from basic.core import redis_target
    from basic.core.redis_cache import SharedClientRedisCache

    config = redis_target.cache_settings(settings.REDIS_URL, None, max_connections=2)
    cache = SharedClientRedisCache(config["LOCATION"], {"OPTIONS": config["OPTIONS"]})
    errors, start = [], threading.Barrier(20)

    def use() -> None:
        start.wait()
        try:
            for n in range(20):
                cache.set(f"pool-wait-{threading.get_ident()}", n, 30)
                cache.get(f"pool-wait-{threading.get_ident()}")
        except Exception as exc:  # MaxConnectionsError with a pool that raises
            errors.append(exc)

    threads = [threading.Thread(target=use) for _ in range(20)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert errors == []
    assert len(cache._cache._get_connection_pool(write=True)._connections) <= 2


def _redis_cache(settings) -> Any:
    """The deployment's cache (Redis) for this test only: its own key prefix, so no other test's
    window is seen."""
    from basic.core import redis_target

    config = redis_target.cache_settings(settings.REDIS_URL, None)
    settings.CACHES = {"default": {**config, "KEY_PREFIX": uuid.uuid4().hex}}
    return rate_limit.shared_cache()


def _at_once(count: int, call: Callable[[], Any]) -> list[Any]:
    start = threading.Barrier(count)

    def run(_: int) -> Any:
        start.wait()
        return call()

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(run, range(count)))


@pytest.mark.parametrize("cache", ["redis", "in-process"])
def test_starts_at_once_at_the_edge_of_a_budget_never_pass_it(settings, cache):
    """Reading the window and writing it back were two steps: starts at once could all read the
    same free place and all pass (up to as many as ran at once)."""
    if cache == "redis":
        _redis_cache(settings)
    for round_ in range(5):
        user = f"edge-{round_}"
        decisions = _at_once(30, lambda user=user: rate_limit.take("job_trigger", user, rate="10/min"))
        assert sum(decision.allowed for decision in decisions) == 10
        refused = [decision for decision in decisions if not decision.allowed]
        assert all(0 < decision.retry_after <= 60 for decision in refused)


def test_the_redis_window_is_drfs_sliding_window(settings):
    cache = _redis_cache(settings)
    assert rate_limit.take("job_trigger", 7, rate="2/min", now=1000.0).allowed
    assert rate_limit.take("job_trigger", 7, rate="2/min", now=1010.0).allowed
    refused = rate_limit.take("job_trigger", 7, rate="2/min", now=1030.0)
    assert not refused.allowed and refused.retry_after == pytest.approx(30.0)  # until 1000.0 drops out
    assert not rate_limit.take("job_trigger", 7, rate="2/min", now=1059.9).allowed
    assert rate_limit.take("job_trigger", 7, rate="2/min", now=1060.0).allowed  # 1000.0 is out, as in DRF
    assert rate_limit.take("job_trigger", 8, rate="2/min", now=1060.5).allowed  # another user's budget
    assert rate_limit.take("other_scope", 7, rate="2/min", now=1060.5).allowed  # another scope's
    client = cache.redis_client()
    key = cache.make_key(rate_limit.window_key("job_trigger", 7))
    assert client.zcard(key) == 2 and 0 < client.ttl(key) <= 60  # forgotten after a period
