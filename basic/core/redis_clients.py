"""The process's Redis clients for everything but the broker and the channel layer (those bring their own):
job events, leases, queue markers, the page cache, chat history and socket limits. They connect to
REDIS_URL's server, or to the master REDIS_SENTINELS name (basic/core/redis_target.py).

Short timeouts and a few retries: a Redis outage must turn into a clean 503 or close 1013 within
seconds, never a hang (docs/design.md trap 5).
"""
import asyncio
import weakref
from typing import Any

import redis
import redis.asyncio as aioredis
from django.conf import settings
from redis.backoff import ExponentialBackoff
from redis.commands.core import Script
from redis.retry import Retry

from basic.core import redis_target

_CLIENT_OPTIONS: dict[str, Any] = {"socket_connect_timeout": 1, "socket_timeout": 5, "health_check_interval": 15}

_sync_client: redis.Redis | None = None
_scripts: dict[str, Script] = {}
_async_clients: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aioredis.Redis]" = (
    weakref.WeakKeyDictionary()
)


def _options(retry: Any) -> dict[str, Any]:
    """Client and pool options; `retry` differs for the sync and asyncio clients."""
    return {**_CLIENT_OPTIONS, "retry": retry, "timeout": 5,
            "max_connections": settings.JOB_EVENTS_REDIS_MAX_CONNECTIONS}


def sync_redis() -> redis.Redis:
    """A process-wide client whose pool waits for a free connection instead of raising.

    redis-py 8 raises MaxConnectionsError past 100 connections (docs/design.md trap 5); 100 gevent
    greenlets pushing at once would hit that with the default pool.
    """
    global _sync_client
    if _sync_client is None:
        _sync_client = redis_target.sync_client(
            settings.REDIS_URL, settings.REDIS_SENTINELS, pool_class=redis.BlockingConnectionPool,
            **_options(Retry(ExponentialBackoff(cap=1), 3)))
    return _sync_client


def async_redis() -> aioredis.Redis:
    """One client per event loop (each test, each server process runs its own loop)."""
    loop = asyncio.get_running_loop()
    client = _async_clients.get(loop)
    if client is None:
        from redis.asyncio.retry import Retry as AsyncRetry

        client = redis_target.async_client(
            settings.REDIS_URL, settings.REDIS_SENTINELS, pool_class=aioredis.BlockingConnectionPool,
            **_options(AsyncRetry(ExponentialBackoff(cap=1), 3)))
        _async_clients[loop] = client
    return client


def run_script(source: str, keys: list[str], args: list[Any]) -> Any:
    """Run a Lua script on the sync client by EVALSHA: its text is sent once per process (and again
    if Redis forgot it: a restart, a failover)."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = sync_redis().register_script(source)
    return script(keys=keys, args=args, client=sync_redis())
