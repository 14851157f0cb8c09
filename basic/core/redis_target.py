"""Where Redis is: the server REDIS_URL names, or the master a set of Redis Sentinels names
(REDIS_SENTINELS, REDIS_SENTINEL_MASTER). Every Redis client of the product is made from here, so
one setting moves all of them: the Celery broker, the channel layer, the cache and our own clients.

With sentinels, REDIS_URL still names the database number, the master's password and the options;
only its host and port are replaced by the current master's, asked of the sentinels at each new
connection. A client whose master dies gets connection errors until the
sentinels promote a replica, then connects to it (redis-py's SentinelManagedConnection).

Used by app/settings.py at start-up, so nothing here reads Django settings at import.
"""
import asyncio
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import redis
import redis.asyncio as aioredis
import redis.asyncio.sentinel as async_sentinel
import redis.sentinel as sync_sentinel
from django.core.exceptions import ImproperlyConfigured
from redis.asyncio.retry import Retry as AsyncRetry
from redis.backoff import NoBackoff
from redis.connection import SSLConnection, parse_url
from redis.retry import Retry

# Asking a sentinel must never stall a client for long: one that is down is skipped.
SENTINEL_TIMEOUT = 0.5


@dataclass(frozen=True)
class Sentinels:
    """The sentinels to ask, the name of the master they watch, and their own password (if any)."""

    addresses: tuple[tuple[str, int], ...]
    master: str
    password: str = ""

    def client_kwargs(self, asynchronous: bool = False) -> dict[str, Any]:
        """Options for the connections to the sentinels themselves. No retries: redis-py's default
        (3, with backoff from 1 s) would spend seconds on a sentinel that is down before asking the
        next one, at every new connection to the master."""
        retry = (AsyncRetry if asynchronous else Retry)(NoBackoff(), 0)
        options: dict[str, Any] = {"socket_connect_timeout": SENTINEL_TIMEOUT, "socket_timeout": SENTINEL_TIMEOUT,
                                   "retry": retry}
        if self.password:
            options["password"] = self.password
        return options


def parse_sentinels(addresses: str, master: str, password: str = "") -> Sentinels | None:
    """REDIS_SENTINELS ("host:port,host:port,…") and REDIS_SENTINEL_MASTER; None when unset (then
    REDIS_URL's server is used). Anything malformed stops start-up with the setting's name."""
    items = [item.strip() for item in addresses.split(",")]
    if not any(items):
        return None
    parsed = []
    for item in items:
        host, colon, port = item.rpartition(":")
        host = host.strip("[]")  # [::1]:26379
        if not (colon and host and port.isascii() and port.isdigit() and 0 < int(port) < 65536):
            raise ImproperlyConfigured(
                f"REDIS_SENTINELS={addresses!r}: {item!r} is not host:port (a comma-separated list of "
                "sentinels, e.g. sentinel-1:26379,sentinel-2:26379).")
        parsed.append((host, int(port)))
    if not master.strip() or any(char.isspace() for char in master.strip()):
        raise ImproperlyConfigured(f"REDIS_SENTINEL_MASTER={master!r}: the name the sentinels monitor, no spaces.")
    return Sentinels(tuple(parsed), master.strip(), password)


def _url_options(url: str) -> dict[str, Any]:
    """What a Redis URL says besides where the server is: the master's connection options."""
    try:
        options = parse_url(url)
    except ValueError as exc:
        raise ImproperlyConfigured(f"{url!r}: with REDIS_SENTINELS, Redis URLs are redis:// or rediss:// "
                                   "(only their database, password and options are used).") from exc
    if "path" in options:
        raise ImproperlyConfigured(f"{url!r} is a Unix socket: with REDIS_SENTINELS, use a redis:// URL "
                                   "(only its database, password and options are used).")
    options.pop("host", None)
    options.pop("port", None)
    if options.pop("connection_class", None) is SSLConnection:
        options["ssl"] = True
    return options


def check_url(url: str, sentinels: Sentinels | None) -> str:
    """`url`, after checking that it can be used with `sentinels` (settings call this at start-up)."""
    if sentinels is not None:
        _url_options(url)
    return url


def sync_client(url: str, sentinels: Sentinels | None, pool_class: type[redis.ConnectionPool] | None = None,
                **options: Any) -> redis.Redis:
    """A client of `url`'s database: on its server, or on the sentinels' current master. It owns
    its pool: closing the client closes its connections."""
    if sentinels is None:
        return redis.Redis.from_pool((pool_class or redis.ConnectionPool).from_url(url, **options))
    manager = sync_sentinel.Sentinel(list(sentinels.addresses), sentinel_kwargs=sentinels.client_kwargs())
    pool_class = _SYNC_SENTINEL_POOLS[pool_class or redis.ConnectionPool]
    options = {**_url_options(url), **options}
    options["connection_class"] = MasterWaitingSSLConnection if options.pop("ssl", False) else MasterWaitingConnection
    return manager.master_for(sentinels.master, connection_pool_class=pool_class, **options)


def async_client(url: str, sentinels: Sentinels | None,
                 pool_class: type[aioredis.ConnectionPool] | None = None, **options: Any) -> aioredis.Redis:
    """The asyncio twin of `sync_client` (one per event loop: the caller keeps it)."""
    if sentinels is None:
        return aioredis.Redis.from_pool((pool_class or aioredis.ConnectionPool).from_url(url, **options))
    manager = async_sentinel.Sentinel(list(sentinels.addresses), sentinel_kwargs=sentinels.client_kwargs(True))
    pool_class = _ASYNC_SENTINEL_POOLS[pool_class or aioredis.ConnectionPool]
    options = {**_url_options(url), **options}
    options["connection_class"] = (AsyncMasterWaitingSSLConnection if options.pop("ssl", False)
                                   else AsyncMasterWaitingConnection)
    return manager.master_for(sentinels.master, connection_pool_class=pool_class, **options)


def broker_client(url: str, sentinels: Sentinels | None, **options: Any) -> redis.Redis:
    """A client of the broker's database, given Celery's broker URL (`broker_url`'s result)."""
    if sentinels is not None:
        url = "redis://" + url.split(";", 1)[0].removeprefix("sentinel://")
    return sync_client(url, sentinels, **options)


def client_at(url: str, host: str, port: int, **options: Any) -> redis.Redis:
    """A client of `url`'s database on the server at host:port (a master the sentinels named)."""
    return redis.Redis(**{**_url_options(url), "host": host, "port": port, **options})


def master_address(sentinels: Sentinels, timeout: float) -> str:
    """The current master as the sentinels tell it, "host:port" (MasterNotFoundError if none)."""
    kwargs = {**sentinels.client_kwargs(), "socket_connect_timeout": timeout, "socket_timeout": timeout}
    manager = sync_sentinel.Sentinel(list(sentinels.addresses), sentinel_kwargs=kwargs)
    try:
        host, port = manager.discover_master(sentinels.master)
    finally:
        manager.close()
    return _netloc(host, port)


def channel_layer_host(url: str, sentinels: Sentinels | None) -> str | dict[str, Any]:
    """An entry of the channel layer's `hosts`: channels-redis makes a sentinel pool of a dict with
    `sentinels` and `master_name` (channels_redis.utils.create_pool), the rest being the master's
    connection options."""
    if sentinels is None:
        return url
    return {"sentinels": list(sentinels.addresses), "master_name": sentinels.master,
            "sentinel_kwargs": sentinels.client_kwargs(asynchronous=True), **_url_options(url)}


def broker_url(given: str, redis_url: str, sentinels: Sentinels | None) -> str:
    """Celery's broker URL: CELERY_BROKER_URL as `given`, else REDIS_URL's. With sentinels, kombu's
    sentinel form of REDIS_URL, `sentinel://[:password@]host:port/db;sentinel://…` (the password
    and database are the master's; kombu reads the database from the first URL). Celery reads the
    CELERY_BROKER_URL variable itself, before these settings, so with sentinels it must be unset
    or already that form."""
    if sentinels is None:
        return given or redis_url
    if given.startswith("sentinel://"):
        return given
    if given:
        raise ImproperlyConfigured(
            f"CELERY_BROKER_URL={given!r} with REDIS_SENTINELS: Celery would use it as it is, past the "
            "sentinels. Leave it unset (the broker then uses REDIS_URL's database on the master) or give "
            "kombu's form, sentinel://host:port/db;sentinel://host:port/db.")
    options = _url_options(redis_url)
    auth = ""
    if options.get("password"):
        auth = f"{quote(options.get('username') or '', safe='')}:{quote(options['password'], safe='')}@"
    return ";".join(f"sentinel://{auth}{_netloc(host, port)}/{options.get('db', 0)}"
                    for host, port in sentinels.addresses)


# A broker URL's scheme -> the transport that keeps its Redis client (basic/core/broker_transport.py).
BROKER_TRANSPORTS = {"redis": "basic.core.broker_transport:Transport",
                     "sentinel": "basic.core.broker_transport:SentinelTransport"}


def broker_is_redis_url(given: str, redis_url: str) -> bool:
    """Whether Celery's broker is the Redis REDIS_URL names (CELERY_BROKER_URL as `given`: unset,
    so derived from REDIS_URL, or the same URL). Only then can a key every process reads through
    REDIS_URL be written with a message on the broker's connection (basic/core/broker_transport.py)."""
    return not given or given == redis_url


def broker_transport(url: str) -> str | None:
    """The transport class for Celery's broker URL; None (kombu's own for its scheme) for any
    scheme but redis:// and sentinel://."""
    return BROKER_TRANSPORTS.get(url.split("://", 1)[0]) if "://" in url else None


def broker_transport_options(sentinels: Sentinels | None) -> dict[str, Any]:
    """What kombu's sentinel transport needs besides the URL (nothing without sentinels)."""
    if sentinels is None:
        return {}
    return {"master_name": sentinels.master, "sentinel_kwargs": sentinels.client_kwargs()}


CACHE_MAX_CONNECTIONS = 50  # per process; more requests at once wait for one (up to 5 s)


def cache_settings(url: str, sentinels: Sentinels | None, max_connections: int = CACHE_MAX_CONNECTIONS,
                   ) -> dict[str, Any]:
    """BACKEND, LOCATION and OPTIONS of the Redis cache (basic/core/redis_cache.py's subclasses of
    Django's: one client per pool, and through the sentinels when there are some).

    Its pool waits for a free connection instead of raising: with redis-py's default pool, 200 REST
    clients starting jobs at once (each throttled start reads and writes this cache) got 503s from
    MaxConnectionsError past 100 connections (docs/design.md trap 5; found by bench_jobs)."""
    pool = {"pool_class": "redis.BlockingConnectionPool", "max_connections": max_connections, "timeout": 5}
    if sentinels is None:
        return {"BACKEND": "basic.core.redis_cache.SharedClientRedisCache", "LOCATION": url, "OPTIONS": pool}
    return {"BACKEND": "basic.core.redis_cache.SentinelRedisCache", "LOCATION": check_url(url, sentinels),
            "OPTIONS": {"sentinels": sentinels, **pool}}


def _netloc(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


# How long a new connection to the master waits for the sentinels to name one that answers, and
# how often it asks again meanwhile. Long enough for the sentinels to agree after a promotion
# (they tell each other every 2 s), short enough that a Redis that is really gone still gets a
# quick 503 rather than piling up waiting requests.
MASTER_WAIT_SECONDS = 2.0
MASTER_ASK_EVERY_SECONDS = 0.1


class MasterWaitingConnection(sync_sentinel.SentinelManagedConnection):
    """A connection to the sentinels' master that asks them again for up to MASTER_WAIT_SECONDS
    when none is named (MasterNotFoundError) or the one named refuses. Only connecting waits: a
    command that fails on a connection already made is not sent again (it may have run)."""

    def connect(self) -> None:
        """(Around the client's own connect retries, if it has any, so the wait is bounded once.)"""
        deadline = time.monotonic() + MASTER_WAIT_SECONDS
        while True:
            try:
                return super().connect()
            except redis.ConnectionError:
                if time.monotonic() + MASTER_ASK_EVERY_SECONDS > deadline:
                    raise
                time.sleep(MASTER_ASK_EVERY_SECONDS)


class MasterWaitingSSLConnection(MasterWaitingConnection, redis.SSLConnection):
    pass


class AsyncMasterWaitingConnection(async_sentinel.SentinelManagedConnection):
    """The asyncio twin of MasterWaitingConnection."""

    async def connect(self) -> None:
        deadline = time.monotonic() + MASTER_WAIT_SECONDS
        while True:
            try:
                return await super().connect()
            except aioredis.ConnectionError:
                if time.monotonic() + MASTER_ASK_EVERY_SECONDS > deadline:
                    raise
                await asyncio.sleep(MASTER_ASK_EVERY_SECONDS)


class AsyncMasterWaitingSSLConnection(AsyncMasterWaitingConnection, aioredis.SSLConnection):
    pass


class BlockingSentinelConnectionPool(sync_sentinel.SentinelConnectionPool, redis.BlockingConnectionPool):
    """Waits for a free connection to the master instead of raising past max_connections
    (docs/design.md trap 5), as redis_clients' pools do without sentinels."""


class AsyncBlockingSentinelConnectionPool(async_sentinel.SentinelConnectionPool, aioredis.BlockingConnectionPool):
    """The asyncio twin of BlockingSentinelConnectionPool."""


_SYNC_SENTINEL_POOLS: dict[type, type] = {
    redis.ConnectionPool: sync_sentinel.SentinelConnectionPool,
    redis.BlockingConnectionPool: BlockingSentinelConnectionPool,
}
_ASYNC_SENTINEL_POOLS: dict[type, type] = {
    aioredis.ConnectionPool: async_sentinel.SentinelConnectionPool,
    aioredis.BlockingConnectionPool: AsyncBlockingSentinelConnectionPool,
}
