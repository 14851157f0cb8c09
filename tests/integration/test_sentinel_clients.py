"""Every Redis client the product makes, pointed at real sentinels by REDIS_SENTINELS alone, reaches
the master, and the new one after a failover (tests/sentinel.py): our sync and asyncio clients,
their Lua scripts (the new master has none cached: NOSCRIPT, loaded again), the cache, the
metrics' broker client and /readyz, which names the master to loopback callers only."""
import asyncio
import time

import pytest
from django.core.cache import cache
from django.test import Client

from basic.core import redis_clients, redis_target
from basic.jobs import event_store, leases
from basic.ops import health
from basic.ops.metrics import QueueDepthCollector
from tests.sentinel import MASTER_NAME, SentinelSet, sentinel_set

pytestmark = pytest.mark.integration

REDIS_URL = "redis://localhost/5"  # only the database number is used


@pytest.fixture
def sentinels(tmp_path, settings, monkeypatch):
    with sentinel_set(tmp_path / "sentinels") as cluster:
        configured = redis_target.parse_sentinels(cluster.env["REDIS_SENTINELS"], MASTER_NAME)
        settings.REDIS_URL = REDIS_URL
        settings.REDIS_SENTINELS = configured
        settings.CACHES = {"default": redis_target.cache_settings(REDIS_URL, configured)}
        settings.CELERY_BROKER_URL = redis_target.broker_url("", "redis://localhost/6", configured)
        monkeypatch.setattr(redis_clients, "_sync_client", None)
        monkeypatch.setattr(redis_clients, "_scripts", {})
        monkeypatch.setattr(QueueDepthCollector, "_client", None)
        monkeypatch.setitem(health.CHECKS, "workers", lambda timeout: None)
        yield cluster


def use_every_client(tag: str) -> dict:
    """One round trip through each client; what each said."""
    lease = leases.JobLease(f"00000000-0000-0000-0000-{tag:0>12}", seconds=30)
    cache.set(f"key-{tag}", tag)

    async def asynchronous() -> bytes:
        client = redis_clients.async_redis()
        await client.set(f"async-{tag}", tag)
        return await client.get(f"async-{tag}")

    metrics = {family.name: family for family in QueueDepthCollector().collect()}
    return {
        "lease": lease.acquire(),  # a Lua script, by EVALSHA
        "event": event_store.append_event(lease.job_id, {"type": "job.progress"}, 0)["seq"],  # another
        "cache": cache.get(f"key-{tag}"),
        "async": asyncio.run(asynchronous()),
        "broker up": metrics["jobs_broker_up"].samples[0].value,
        "readiness": health.check_redis(1.5),
    }


def until_back(cluster: SentinelSet, tag: str, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return use_every_client(tag)
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_every_client_follows_the_master_through_a_failover(sentinels):
    before = sentinels.master()
    assert use_every_client("1") == {"lease": True, "event": 1, "cache": "1", "async": b"1", "broker up": 1,
                                     "readiness": {"master": before}}

    # Replication is asynchronous, so a failover may lose the master's last writes (README, "What
    # survives what"): the keys checked below are ones the replica acknowledged before the kill.
    assert redis_clients.sync_redis().wait(1, 5000) >= 1
    sentinels.kill_master()
    after, promoted_at = sentinels.wait_for_new_master(before)
    answers = until_back(sentinels, "2", timeout=15)
    took = time.monotonic() - promoted_at
    assert answers == {"lease": True, "event": 1, "cache": "2", "async": b"2", "broker up": 1,
                       "readiness": {"master": after}}
    assert took < 15
    # Written before the failover, replicated, so kept: the new master holds it.
    assert redis_clients.sync_redis().get("async-1") == b"1"
    assert cache.get("key-1") == "1"


@pytest.mark.django_db
def test_readyz_names_the_master_to_loopback_and_the_metrics_token_only(sentinels, settings):
    master = sentinels.master()
    loopback = Client().get("/readyz").json()["checks"]["redis"]
    assert loopback["ok"] is True and loopback["master"] == master
    outside = Client(REMOTE_ADDR="203.0.113.9").get("/readyz").json()["checks"]["redis"]
    assert outside["ok"] is True and "master" not in outside
    settings.METRICS_TOKEN = "t0ken"
    scraper = Client(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer t0ken").get("/readyz").json()
    assert scraper["checks"]["redis"]["master"] == master
    wrong = Client(REMOTE_ADDR="203.0.113.9", HTTP_AUTHORIZATION="Bearer nope").get("/readyz").json()
    assert "master" not in wrong["checks"]["redis"]


def test_readyz_is_down_while_no_master_is_named(sentinels):
    for name, process in sentinels.processes.items():
        if name.startswith("sentinel-"):
            process.kill()
            process.wait()
    result = health.run_checks({"redis": health.check_redis}, 1.0)["redis"]
    assert result["ok"] is False
    assert result["error"] == "The sentinels name no Redis master."
