"""/metrics: who may read it, what it counts, and recording functions that never raise."""
import re

import pytest
from django.test import Client
from prometheus_client import REGISTRY

from basic.core import metrics
from basic.ops import metrics as ops_metrics
from basic.realtime import socket_metrics


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def scrape(**extra) -> str:
    response = Client().get("/metrics", **extra)
    assert response.status_code == 200, response.content
    assert response["Content-Type"].startswith("text/plain; version=")
    return response.content.decode()


def test_loopback_client_reads_metrics_without_a_token(settings):
    settings.METRICS_TOKEN = ""
    text = scrape(REMOTE_ADDR="127.0.0.1")
    assert "# TYPE jobs_started_total counter" in text


@pytest.mark.parametrize("extra", [{"REMOTE_ADDR": "10.0.0.5"}, {"REMOTE_ADDR": "203.0.113.9"},
                                   {"REMOTE_ADDR": "127.0.0.1", "HTTP_X_FORWARDED_FOR": "203.0.113.9"},
                                   {"REMOTE_ADDR": "::1", "HTTP_FORWARDED": "for=203.0.113.9"}])
def test_others_get_403_without_a_token(settings, extra):
    """Not from loopback, or relayed by a proxy on this machine (which would make everyone loopback)."""
    settings.METRICS_TOKEN = ""
    response = Client().get("/metrics", **extra)
    assert response.status_code == 403
    assert "METRICS_TOKEN" in response.json()["detail"]


def test_with_a_token_set_the_bearer_token_is_required_even_from_loopback(settings):
    settings.METRICS_TOKEN = "s3cret-token"
    missing = Client().get("/metrics", REMOTE_ADDR="127.0.0.1")
    assert missing.status_code == 401
    assert missing["WWW-Authenticate"].startswith("Bearer")
    assert Client().get("/metrics", HTTP_AUTHORIZATION="Token s3cret-token").status_code == 401
    wrong = Client().get("/metrics", REMOTE_ADDR="10.0.0.5", HTTP_AUTHORIZATION="Bearer nope")
    assert wrong.status_code == 403
    assert wrong.json() == {"detail": "That metrics token is not valid."}
    assert "jobs_queue_depth" in scrape(REMOTE_ADDR="10.0.0.5", HTTP_AUTHORIZATION="Bearer s3cret-token")


def test_scrapers_need_no_allowed_host_and_no_https(settings):
    settings.METRICS_TOKEN = "t"
    settings.ALLOWED_HOSTS = ["jobs.example.com"]
    settings.SECURE_SSL_REDIRECT = True
    scrape(HTTP_HOST="10.1.2.3:8000", HTTP_AUTHORIZATION="Bearer t")


def test_job_counters_and_runtime(settings):
    settings.METRICS_TOKEN = ""
    before = sample("jobs_started_total", kind="x")
    metrics.job_started("x")
    metrics.job_finished("x", "done", 2.0)
    metrics.job_finished("x", "cancelled", None)
    assert sample("jobs_started_total", kind="x") == before + 1
    text = scrape()
    assert re.search(r'^jobs_started_total\{kind="x"\} [1-9]', text, re.M)
    assert re.search(r'^jobs_finished_total\{kind="x",outcome="done"\} [1-9]', text, re.M)
    assert re.search(r'^jobs_runtime_seconds_bucket\{kind="x",le="2.5"\} [1-9]', text, re.M)


def test_queue_depth_is_read_from_the_broker_at_scrape_time(settings, redis_client):
    """LLEN of the queue, with kombu's priority sub-lists; a queue of its own, not the real one."""
    settings.METRICS_TOKEN = ""
    settings.CELERY_TASK_DEFAULT_QUEUE = queue = "ops-test-queue"
    redis_client.lpush(queue, "a", "b", "c")
    redis_client.lpush(f"{queue}\x06\x166", "d")
    try:
        text = scrape()
    finally:
        redis_client.delete(queue, f"{queue}\x06\x166")
    assert 'jobs_queue_depth{queue="ops-test-queue"} 4.0' in text
    assert "jobs_broker_up 1.0" in text


def test_queue_depth_without_a_broker_still_scrapes(settings, closed_port):
    settings.METRICS_TOKEN = ""
    settings.CELERY_BROKER_URL = f"redis://127.0.0.1:{closed_port}/0"
    text = scrape()
    assert "jobs_broker_up 0.0" in text
    assert "jobs_queue_depth{" not in text


def test_other_counters():
    metrics.event_pushed("job.progress")
    metrics.push_failed("job.done")
    metrics.fanned_out("jobs", 3)
    metrics.socket_closed_over_limit("too_many_sockets")
    metrics.redis_reconnected("event_store")
    assert sample("jobs_events_pushed_total", type="job.progress") >= 1
    assert sample("jobs_event_push_failures_total", type="job.done") >= 1
    assert sample("ws_fanout_messages_total", route="jobs") >= 3
    assert sample("ws_limit_closes_total", reason="too_many_sockets") >= 1
    assert sample("redis_reconnects_total", component="event_store") >= 1


def test_recording_functions_never_raise_and_keep_labels_bounded():
    metrics.job_started(None)  # type: ignore[arg-type]
    metrics.job_finished("k" * 500, "exploded", -1)
    metrics.job_finished("k", "done", "soon")  # type: ignore[arg-type]
    metrics.socket_closed("/ws/jobs/8f0e-secret-id/", "x")  # type: ignore[arg-type]
    metrics.fanned_out("/ws/chat/some-room/", -5)
    metrics.event_pushed(object())  # type: ignore[arg-type]
    assert sample("jobs_finished_total", kind="k" * 40, outcome="other") >= 1
    assert metrics.route_of("/ws/jobs/123/") == "jobs"
    assert metrics.route_of("/ws/chat/lobby/") == "chat"
    assert metrics.route_of("/chat/") == "seed_chat"
    assert metrics.route_of("/nope/") == "other"


def test_live_gauges_of_dead_processes_on_this_host_are_dropped(tmp_path, monkeypatch):
    """Open-socket gauges of a crashed web process would otherwise count forever."""
    import os
    import subprocess
    import sys

    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    names = {
        "dead_here": f"gauge_livesum_{metrics._HOST}-{dead.pid}.db",
        "alive_here": f"gauge_livesum_{metrics._HOST}-{os.getpid()}.db",
        "other_host": f"gauge_livesum_elsewhere-{dead.pid}.db",
        "counter": f"counter_{metrics._HOST}-{dead.pid}.db",
    }
    for name in names.values():
        (tmp_path / name).write_bytes(b"")
    monkeypatch.setattr(metrics, "MULTIPROC_DIR", str(tmp_path))
    ops_metrics._prune_dead_processes()
    left = {path.name for path in tmp_path.iterdir()}
    assert left == {names["alive_here"], names["other_host"], names["counter"]}


def test_the_grafana_dashboard_only_uses_metrics_we_export(settings):
    import json
    from pathlib import Path

    settings.METRICS_TOKEN = ""
    metrics.job_started("k")
    metrics.job_finished("k", "failed", 1)
    metrics.event_pushed("t")
    metrics.push_failed("t")
    metrics.socket_opened("jobs")
    metrics.socket_closed("jobs", 1000)
    metrics.fanned_out("jobs")
    metrics.socket_closed_over_limit("r")
    metrics.redis_reconnected("c")
    socket_metrics._frame_sent("jobs")
    socket_metrics._frame_received("jobs")
    socket_metrics._handshake_refused("jobs")
    exported = set(re.findall(r"^([a-z_]+)(?:\{| )", scrape(), re.M))
    dashboard = json.loads((Path(__file__).parents[2] / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\b((?:jobs|ws|redis)_[a-z_]+)\b", expr)}
    assert used and used <= exported, used - exported


async def test_frames_sent_in_one_loop_step_are_counted_once_and_before_anyone_can_look():
    """Fan-out sends thousands of frames in one step: one increment for all of them, queued
    before the first frame goes out, so it lands before anything that frame wakes."""
    import asyncio

    from basic.realtime.socket_metrics import FrameTally

    increments = []

    class Counter:
        def inc(self, amount: int = 1) -> None:
            increments.append(amount)

    tally, counter, woken = FrameTally(), Counter(), asyncio.Event()
    for _ in range(3000):
        tally.add(counter)
    asyncio.get_running_loop().call_soon(woken.set)  # what the first frame's delivery wakes
    assert increments == []
    await woken.wait()
    assert increments == [3000]
    tally.add(counter)
    await asyncio.sleep(0)
    assert increments == [3000, 1]


def test_a_frame_sent_outside_an_event_loop_is_counted_at_once():
    from basic.realtime.socket_metrics import FrameTally

    increments = []

    class Counter:
        def inc(self, amount: int = 1) -> None:
            increments.append(amount)

    FrameTally().add(Counter())
    assert increments == [1]


async def test_a_fan_out_loops_frames_are_counted_once_per_route():
    """The outlets' loop (basic/realtime/wire.py) hands over its frames per route at once; they
    join what single sends counted in the same step, and each route gets one increment."""
    import asyncio

    from basic.realtime.socket_metrics import FrameTally

    increments = []

    class Counter:
        def __init__(self, route: str) -> None:
            self.route = route

        def inc(self, amount: int = 1) -> None:
            increments.append((self.route, amount))

    tally, chat, jobs, woken = FrameTally(), Counter("chat"), Counter("jobs"), asyncio.Event()
    tally.add(chat)
    tally.add_counts({chat: 2999, jobs: 1})
    asyncio.get_running_loop().call_soon(woken.set)
    assert increments == []
    await woken.wait()
    assert sorted(increments) == [("chat", 3000), ("jobs", 1)]


def test_a_fan_out_loops_frames_counted_outside_an_event_loop_are_counted_at_once():
    from basic.realtime.socket_metrics import FrameTally

    increments = []

    class Counter:
        def inc(self, amount: int = 1) -> None:
            increments.append(amount)

    FrameTally().add_counts({Counter(): 5})
    assert increments == [5]
