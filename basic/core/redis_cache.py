"""Django's Redis cache (selected by basic/core/redis_target.py's `cache_settings`), with one
`redis.Redis` per pool instead of a new one for every command: building one costs ~0.2 ms (its
response callbacks), two of them per throttled REST request (issue 19). Through Redis Sentinel
(REDIS_SENTINELS) its connection pool asks the sentinels for the master instead of using
LOCATION's host and port.

Django makes a cache object per thread (and per request context under ASGI), each with its own
pool; here the process shares one per master, so a request does not also pay for asking a
sentinel where the master is."""
import threading
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

from basic.core import redis_target

_pools: dict[tuple[str, redis_target.Sentinels], redis.ConnectionPool] = {}
_pools_lock = threading.Lock()


class SharedClientRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        super().__init__(servers, **options)
        self._clients: dict[int, redis.Redis] = {}

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        """A client bound to the pool Django would pick (redis-py clients are thread-safe)."""
        pool = self._get_connection_pool(write)
        client = self._clients.get(id(pool))
        if client is None or client.connection_pool is not pool:
            client = self._clients[id(pool)] = self._client(connection_pool=pool)
        return client


class SharedClientRedisCache(RedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedClientRedisCacheClient

    def redis_client(self) -> redis.Redis:
        """The client behind the cache, for what Django's cache API cannot say in one step (the
        start budget's script, basic/core/rate_limit.py); keys go through `make_key`."""
        return self._cache.get_client(write=True)


class SentinelRedisCacheClient(SharedClientRedisCacheClient):
    def __init__(self, servers: list[str], sentinels: redis_target.Sentinels, **options: Any) -> None:
        super().__init__(servers, **options)
        self._sentinels = sentinels

    def _get_connection_pool(self, write: bool) -> redis.ConnectionPool:
        """One server (the master), so one pool: every read and write goes to it."""
        key = (self._servers[0], self._sentinels)
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                client = redis_target.sync_client(self._servers[0], self._sentinels, pool_class=self._pool_class,
                                                  **self._pool_options)
                pool = _pools[key] = client.connection_pool
        return pool


class SentinelRedisCache(SharedClientRedisCache):
    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SentinelRedisCacheClient
