"""/healthz and /readyz: answers, reasons without internals, and the 2 s bound when things hang."""
import threading
import time

import pytest
from django.test import AsyncClient, Client

from basic.ops import health


def test_healthz_is_ok_without_checking_anything(monkeypatch):
    monkeypatch.setattr(health, "CHECKS", {})  # not even consulted
    response = Client().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_probes_work_by_address_and_over_plain_http_in_production(settings):
    """A probe calls the pod by its address over HTTP: no 400 for the host, no HTTPS redirect."""
    settings.ALLOWED_HOSTS = ["jobs.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    assert Client().get("/healthz", HTTP_HOST="10.1.2.3:8000").status_code == 200
    assert Client().get("/api/students/", HTTP_HOST="10.1.2.3:8000").status_code == 400
    assert Client().get("/api/students/", HTTP_HOST="jobs.example.com").status_code == 301


async def test_healthz_through_the_async_stack():
    response = await AsyncClient().get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_readyz_ok_when_every_check_passes(monkeypatch):
    monkeypatch.setitem(health.CHECKS, "workers", lambda timeout: None)  # a live worker: see test_live_ops
    response = Client().get("/readyz")
    assert response.status_code == 200, response.json()
    body = response.json()
    assert body["status"] == "ok"
    assert set(body["checks"]) == {"database", "redis", "workers"}
    for check in body["checks"].values():
        assert check["ok"] is True
        assert isinstance(check["ms"], float)


@pytest.mark.django_db
def test_readyz_503_names_redis_when_it_is_unreachable(settings, monkeypatch, closed_port):
    monkeypatch.setitem(health.CHECKS, "workers", lambda timeout: None)
    settings.REDIS_URL = f"redis://127.0.0.1:{closed_port}/0"
    response = Client().get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    redis = body["checks"]["redis"]
    assert redis == {"ok": False, "error": "Redis is unreachable.", "ms": redis["ms"]}
    assert body["checks"]["database"]["ok"] is True
    assert str(closed_port) not in response.content.decode() and "127.0.0.1" not in response.content.decode()


@pytest.mark.django_db
def test_readyz_answers_503_within_2s_when_redis_hangs(settings, monkeypatch, hanging_port):
    monkeypatch.setitem(health.CHECKS, "workers", lambda timeout: None)
    settings.REDIS_URL = f"redis://127.0.0.1:{hanging_port}/0"
    started = time.monotonic()
    response = Client().get("/readyz")
    assert time.monotonic() - started < 2.0
    assert response.status_code == 503
    assert response.json()["checks"]["redis"]["ok"] is False
    assert response.json()["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_a_check_that_never_returns_is_down_at_the_deadline(monkeypatch):
    release = threading.Event()
    monkeypatch.setitem(health.CHECKS, "workers", lambda timeout: release.wait(30))
    started = time.monotonic()
    try:
        response = Client().get("/readyz")
    finally:
        release.set()
    assert time.monotonic() - started < 2.0
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["error"] == "No answer within 1.5 s."


@pytest.mark.django_db
def test_no_worker_is_503_naming_the_workers():
    """The test session runs no worker: the ping goes through the broker and nobody answers."""
    started = time.monotonic()
    response = Client().get("/readyz")
    assert time.monotonic() - started < 2.0
    assert response.status_code == 503
    assert response.json()["checks"]["workers"]["ok"] is False
    assert response.json()["checks"]["workers"]["error"] == "No worker answered a ping."
    assert response.json()["checks"]["redis"]["ok"] is True


@pytest.mark.parametrize("server", ["closed", "hanging"])
def test_worker_check_gives_up_on_a_dead_or_hung_broker(monkeypatch, closed_port, hanging_port, server):
    """kombu retries a publish forever by default; the check must end instead of leaking a thread."""
    from app.celery import app

    port = closed_port if server == "closed" else hanging_port
    monkeypatch.setattr(app.conf, "broker_url", f"redis://127.0.0.1:{port}/0")
    started = time.monotonic()
    with pytest.raises(health.CheckFailed, match=r"^The job queue \(broker\) is unreachable\.$"):
        health.check_workers(0.5)
    assert time.monotonic() - started < 2.0


async def test_readyz_through_the_async_stack(monkeypatch):
    monkeypatch.setattr(health, "CHECKS", {"redis": health.check_redis})
    response = await AsyncClient().get("/readyz")
    assert response.status_code == 200
    assert response.json()["checks"]["redis"]["ok"] is True
