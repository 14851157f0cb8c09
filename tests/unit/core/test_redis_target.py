"""REDIS_SENTINELS parsed strictly, and every Redis consumer's configuration made from it
(basic/core/redis_target.py); without it, exactly REDIS_URL as before."""
import os
import subprocess
import sys

import pytest
import redis
import redis.asyncio as aioredis
from django.core.exceptions import ImproperlyConfigured
from kombu import Connection

from basic.core import redis_target
from basic.core.redis_target import Sentinels, parse_sentinels
from basic.ops import stack

SENTINELS = Sentinels((("10.0.0.1", 26379), ("sentinel-2", 26380)), "jobs-master")
URL = "redis://:s%40cret@ignored-host:6379/3"


def test_unset_means_no_sentinels():
    assert parse_sentinels("", "mymaster") is None
    assert parse_sentinels(" , ", "mymaster") is None


def test_a_list_of_host_port_pairs():
    parsed = parse_sentinels(" 10.0.0.1:26379, sentinel-2:26380,[::1]:26381", "jobs-master", "pw")
    assert parsed == Sentinels((("10.0.0.1", 26379), ("sentinel-2", 26380), ("::1", 26381)), "jobs-master", "pw")


@pytest.mark.parametrize("value", ["sentinel-1", "sentinel-1:", ":26379", "s1:26379,s2", "s1:port",
                                   "s1:0", "s1:70000", "s1:26379,,s2:26379", "s1:２６３７９"])
def test_a_malformed_entry_stops_start_up_naming_it(value):
    with pytest.raises(ImproperlyConfigured, match=r"^REDIS_SENTINELS=.*is not host:port"):
        parse_sentinels(value, "mymaster")


@pytest.mark.parametrize("master", ["", "  ", "my master"])
def test_the_master_name_is_required(master):
    with pytest.raises(ImproperlyConfigured, match=r"^REDIS_SENTINEL_MASTER="):
        parse_sentinels("s1:26379", master)


def test_without_sentinels_every_consumer_gets_redis_url_as_before():
    url = "redis://127.0.0.1:6379/0"
    assert redis_target.channel_layer_host(url, None) == url
    assert redis_target.broker_url("", url, None) == url
    assert redis_target.broker_url("redis://broker/1", url, None) == "redis://broker/1"
    assert redis_target.broker_transport_options(None) == {}
    assert redis_target.cache_settings(url, None) == {
        "BACKEND": "basic.core.redis_cache.SharedClientRedisCache", "LOCATION": url,
        "OPTIONS": {"pool_class": "redis.BlockingConnectionPool", "max_connections": 50, "timeout": 5}}
    client = redis_target.sync_client(url, None, pool_class=redis.BlockingConnectionPool, max_connections=7)
    assert type(client.connection_pool) is redis.BlockingConnectionPool
    assert client.connection_pool.connection_kwargs["port"] == 6379


def test_the_channel_layer_gets_channels_redis_sentinel_hosts():
    host = redis_target.channel_layer_host(URL, SENTINELS)
    sentinel_kwargs = host.pop("sentinel_kwargs")
    assert host == {"sentinels": [("10.0.0.1", 26379), ("sentinel-2", 26380)], "master_name": "jobs-master",
                    "password": "s@cret", "db": 3}
    assert sentinel_kwargs["socket_timeout"] == 0.5
    assert sentinel_kwargs["retry"].get_retries() == 0  # the next sentinel, not seconds of backoff


def test_channels_redis_makes_a_sentinel_pool_of_it():
    from channels_redis.utils import create_pool

    pool = create_pool(redis_target.channel_layer_host(URL, SENTINELS))
    assert isinstance(pool, aioredis.sentinel.SentinelConnectionPool)
    assert pool.service_name == "jobs-master"
    assert pool.connection_kwargs["db"] == 3


def test_the_broker_url_is_kombus_sentinel_form_with_the_database_and_password():
    url = redis_target.broker_url("", URL, SENTINELS)
    assert url == "sentinel://:s%40cret@10.0.0.1:26379/3;sentinel://:s%40cret@sentinel-2:26380/3"
    options = redis_target.broker_transport_options(SENTINELS)
    assert options["master_name"] == "jobs-master"
    connection = Connection(url, transport_options=options)
    assert connection.transport_cls == "sentinel"
    assert connection.alt == url.split(";")
    assert connection.virtual_host == "3"
    assert connection.password == "s@cret"


def test_celery_reads_celery_broker_url_itself_so_with_sentinels_only_kombus_form_is_taken():
    given = "sentinel://s1:26379/4;sentinel://s2:26379/4"
    assert redis_target.broker_url(given, URL, SENTINELS) == given
    with pytest.raises(ImproperlyConfigured, match=r"^CELERY_BROKER_URL='redis://b/1' with REDIS_SENTINELS"):
        redis_target.broker_url("redis://b/1", URL, SENTINELS)


def test_the_broker_client_reads_the_database_back_from_kombus_url():
    client = redis_target.broker_client(redis_target.broker_url("", URL, SENTINELS), SENTINELS)
    assert client.connection_pool.connection_kwargs["db"] == 3
    assert client.connection_pool.connection_kwargs["password"] == "s@cret"


def test_sentinel_clients_ask_for_the_master_and_keep_the_url_s_database():
    client = redis_target.sync_client(URL, SENTINELS, pool_class=redis.BlockingConnectionPool, max_connections=7)
    pool = client.connection_pool
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert isinstance(pool, redis.BlockingConnectionPool)  # waits instead of raising past the cap (trap 5)
    assert pool.service_name == "jobs-master" and pool.max_connections == 7
    assert pool.connection_kwargs["db"] == 3 and pool.connection_kwargs["password"] == "s@cret"
    assert "host" not in pool.connection_kwargs  # asked of the sentinels at each connection
    sentinel = pool.sentinel_manager.sentinels[0].connection_pool.connection_kwargs
    assert (sentinel["host"], sentinel["port"], sentinel["socket_timeout"]) == ("10.0.0.1", 26379, 0.5)


def test_the_async_client_too():
    client = redis_target.async_client(URL, SENTINELS, pool_class=aioredis.BlockingConnectionPool)
    pool = client.connection_pool
    assert isinstance(pool, aioredis.sentinel.SentinelConnectionPool)
    assert isinstance(pool, aioredis.BlockingConnectionPool)
    assert pool.connection_kwargs["db"] == 3


def test_the_cache_is_djangos_redis_cache_through_the_sentinels():
    from django.core.cache.backends.redis import RedisCache
    from django.utils.module_loading import import_string

    config = redis_target.cache_settings(URL, SENTINELS)
    cache = import_string(config["BACKEND"])(config["LOCATION"], {"OPTIONS": config["OPTIONS"]})
    assert isinstance(cache, RedisCache)
    pool = cache._cache._get_connection_pool(write=False)
    assert isinstance(pool, redis.sentinel.SentinelConnectionPool)
    assert isinstance(pool, redis.BlockingConnectionPool) and pool.max_connections == 50  # waits, never raises
    assert pool is cache._cache._get_connection_pool(write=True)
    assert pool.connection_kwargs["db"] == 3


@pytest.mark.parametrize("url", ["unix:///run/redis.sock", "sentinel://s1:26379"])
def test_a_url_that_cannot_name_a_database_on_the_master_stops_start_up(url):
    with pytest.raises(ImproperlyConfigured, match="with REDIS_SENTINELS"):
        redis_target.check_url(url, SENTINELS)
    assert redis_target.check_url(url, None) == url


def test_rediss_urls_keep_tls_to_the_master():
    host = redis_target.channel_layer_host("rediss://:pw@h:6380/1", SENTINELS)
    assert host["ssl"] is True and "connection_class" not in host


def _settings_with(**env: str) -> subprocess.CompletedProcess:
    code = ("from django.conf import settings as s; import django; django.setup(); "
            "print(s.CELERY_BROKER_URL); print(s.CHANNEL_LAYERS['default']['CONFIG']['hosts'][0]); "
            "print(s.CACHES['default']['BACKEND']); print(s.CELERY_BROKER_TRANSPORT_OPTIONS.get('master_name')); "
            "print(s.CELERY_BROKER_TRANSPORT)")
    return subprocess.run([sys.executable, "-c", code], cwd=stack.BASE_DIR, capture_output=True, text=True,
                          env={**os.environ, "DJANGO_SETTINGS_MODULE": "app.settings", "CELERY_BROKER_URL": "",
                               "REDIS_URL": "redis://127.0.0.1:6379/2", **env}, timeout=60)


def test_one_setting_moves_every_consumer():
    done = _settings_with(REDIS_SENTINELS="127.0.0.1:26379,127.0.0.1:26380", REDIS_SENTINEL_MASTER="prod")
    assert done.returncode == 0, done.stderr
    broker, layer, cache, master, transport = done.stdout.splitlines()
    assert broker == "sentinel://127.0.0.1:26379/2;sentinel://127.0.0.1:26380/2"
    assert transport == "basic.core.broker_transport:SentinelTransport"
    assert "'master_name': 'prod'" in layer and "'db': 2" in layer
    assert cache == "basic.core.redis_cache.SentinelRedisCache"
    assert master == "prod"


def test_unset_settings_are_as_before():
    done = _settings_with(REDIS_SENTINELS="")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/2",
                                        "basic.core.redis_cache.SharedClientRedisCache", "None",
                                        "basic.core.broker_transport:Transport"]


def test_a_bad_setting_stops_start_up_with_its_name():
    done = _settings_with(REDIS_SENTINELS="127.0.0.1")
    assert done.returncode != 0
    assert "ImproperlyConfigured: REDIS_SENTINELS='127.0.0.1': '127.0.0.1' is not host:port" in done.stderr
    done = _settings_with(REDIS_SENTINELS="127.0.0.1:26379", CELERY_BROKER_URL="redis://127.0.0.1:6379/8")
    assert done.returncode != 0
    assert "ImproperlyConfigured: CELERY_BROKER_URL='redis://127.0.0.1:6379/8' with REDIS_SENTINELS" in done.stderr


def _session_redis() -> tuple[str, int]:
    options = redis.connection.parse_url(os.environ["REDIS_URL"])
    return options["host"], options["port"]


class _Discovery:
    """Stands in for the sentinels' answers: no master named `misses` times, then the session's
    Redis (the moments after a promotion, when no sentinel names a master yet)."""

    def __init__(self, misses: int) -> None:
        self.misses, self.asked = misses, 0

    def __call__(self, service_name: str) -> tuple[str, int]:
        self.asked += 1
        if self.asked <= self.misses:
            raise redis.sentinel.MasterNotFoundError(f"No master found for {service_name!r}")
        return _session_redis()


async def _async_discovery(discovery: _Discovery, service_name: str) -> tuple[str, int]:
    return discovery(service_name)


def test_a_new_connection_waits_while_no_master_is_named(monkeypatch):
    client = redis_target.sync_client("redis://localhost/0", SENTINELS, pool_class=redis.BlockingConnectionPool)
    discovery = _Discovery(misses=3)
    monkeypatch.setattr(client.connection_pool.sentinel_manager, "discover_master", discovery)
    assert client.ping() is True  # asked four times, answered at the fourth: no error for the caller
    assert discovery.asked == 4
    client.close()


def test_waiting_for_a_master_is_bounded(monkeypatch):
    """A Redis that is really gone still fails fast enough to answer 503 (MASTER_WAIT_SECONDS)."""
    monkeypatch.setattr(redis_target, "MASTER_WAIT_SECONDS", 0.3)
    client = redis_target.sync_client("redis://localhost/0", SENTINELS)
    discovery = _Discovery(misses=1000)
    monkeypatch.setattr(client.connection_pool.sentinel_manager, "discover_master", discovery)
    with pytest.raises(redis.ConnectionError, match="No master found"):
        client.ping()
    assert 2 <= discovery.asked <= 4  # asked every 0.1 s for 0.3 s, then gave up
    client.close()


def test_a_command_that_fails_on_a_made_connection_is_not_sent_again(monkeypatch):
    """Only connecting waits: a write that may have run on the old master is not repeated."""
    client = redis_target.sync_client("redis://localhost/0", SENTINELS)
    monkeypatch.setattr(client.connection_pool.sentinel_manager, "discover_master", _Discovery(misses=0))
    client.ping()
    connection = client.connection_pool.get_connection()
    sent = []

    def reset_after_sending(*args, **kwargs) -> None:
        sent.append(args)
        raise redis.ConnectionError("reset")

    monkeypatch.setattr(connection, "send_packed_command", reset_after_sending)
    client.connection_pool.release(connection)
    with pytest.raises(redis.ConnectionError, match="reset"):
        client.incr("never-twice")
    assert len(sent) == 1
    client.close()


def test_the_async_connection_waits_too(monkeypatch):
    import asyncio

    async def scenario() -> int:
        client = redis_target.async_client("redis://localhost/0", SENTINELS)
        discovery = _Discovery(misses=2)
        monkeypatch.setattr(client.connection_pool.sentinel_manager, "discover_master",
                            lambda name: _async_discovery(discovery, name))
        assert await client.ping() is True
        await client.aclose()
        return discovery.asked

    assert asyncio.run(scenario()) == 3


def test_tls_to_the_master_keeps_waiting_connections():
    assert issubclass(redis_target.sync_client("rediss://:pw@h:6380/1", SENTINELS).connection_pool.connection_class,
                      (redis.SSLConnection, redis_target.MasterWaitingConnection))
    pool = redis_target.async_client("rediss://:pw@h:6380/1", SENTINELS).connection_pool
    assert issubclass(pool.connection_class, aioredis.SSLConnection)
    assert issubclass(pool.connection_class, redis_target.AsyncMasterWaitingConnection)


def test_the_wait_is_bounded_once_around_a_clients_own_connect_retries(monkeypatch):
    """redis_clients' clients retry a connect 3 times themselves: the wait for a master must not
    be multiplied by them (4 x 2 s in an outage), only bound the whole."""
    import time

    from redis.backoff import NoBackoff
    from redis.retry import Retry

    monkeypatch.setattr(redis_target, "MASTER_WAIT_SECONDS", 0.3)
    client = redis_target.sync_client("redis://localhost/0", SENTINELS, retry=Retry(NoBackoff(), 3))
    monkeypatch.setattr(client.connection_pool.sentinel_manager, "discover_master", _Discovery(misses=1000))
    started = time.monotonic()
    with pytest.raises(redis.ConnectionError):
        client.ping()
    assert time.monotonic() - started < 0.3 + 0.1 + 0.2  # the bound, one more ask, slack
    client.close()
