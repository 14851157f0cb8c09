"""With real processes (the `make run` commands): /readyz follows the worker and Redis going away and
coming back, and /metrics adds up the processes' socket gauges through the shared metrics dir."""
import asyncio
import time

import httpx
import pytest
import websockets
from prometheus_client.parser import text_string_to_metric_families

from basic.ops import stack
from tests.live import live_stack, stack_root  # noqa: F401  (fixture)

pytestmark = pytest.mark.integration


def readyz(base_url: str) -> tuple[int, dict, float]:
    started = time.monotonic()
    response = httpx.get(f"{base_url}/readyz", timeout=10)
    return response.status_code, response.json(), time.monotonic() - started


def wait_for_readyz(base_url: str, status: int, timeout: float = 30) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        code, body, took = readyz(base_url)
        assert took < 2.0, body
        if code == status:
            return body
        assert time.monotonic() < deadline, f"/readyz stayed {code}: {body}"
        time.sleep(0.3)


def gauge(text: str, name: str, **labels: str) -> float | None:
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and sample.labels == labels:
                return sample.value
    return None


def test_readyz_follows_the_worker_and_redis(stack_root):  # noqa: F811
    with live_stack(stack_root, "ops-ready", own_redis=True) as live:
        body = wait_for_readyz(live.base_url, 200)
        assert body["status"] == "ok"
        assert all(check["ok"] for check in body["checks"].values()), body

        stack.stop(live.processes["worker"])
        body = wait_for_readyz(live.base_url, 503)
        assert body["checks"]["workers"] == {"ok": False, "error": "No worker answered a ping.",
                                             "ms": body["checks"]["workers"]["ms"]}
        assert body["checks"]["redis"]["ok"] and body["checks"]["database"]["ok"]

        live.stop_redis()
        code, body, took = readyz(live.base_url)
        assert (code, body["status"]) == (503, "unavailable") and took < 2.0
        assert body["checks"]["redis"] == {"ok": False, "error": "Redis is unreachable.",
                                           "ms": body["checks"]["redis"]["ms"]}
        assert body["checks"]["workers"]["ok"] is False
        assert body["checks"]["database"]["ok"] is True

        live.start_redis_again()
        live.start_worker("again")
        body = wait_for_readyz(live.base_url, 200)
        assert all(check["ok"] for check in body["checks"].values()), body


def test_metrics_add_up_processes_and_show_queue_depth_and_sockets(stack_root):  # noqa: F811
    with live_stack(stack_root, "ops-metrics", worker=False) as live:
        assert live.env["PROMETHEUS_MULTIPROC_DIR"]

        def scrape() -> str:
            response = httpx.get(f"{live.base_url}/metrics", timeout=10)
            assert response.status_code == 200, response.text
            return response.text

        # Through a proxy the same request is someone else's: refused.
        assert httpx.get(f"{live.base_url}/metrics", headers={"X-Forwarded-For": "203.0.113.9"}).status_code == 403
        text = scrape()
        assert gauge(text, "jobs_queue_depth", queue="default") is not None
        assert gauge(text, "jobs_broker_up") == 1.0

        async def with_open_sockets() -> tuple[str, str]:
            url = f"{live.ws_url}/ws/events/?token={live.token}"
            async with websockets.connect(url) as first, websockets.connect(url) as second:
                for socket in (first, second):
                    await socket.send('{"type": "ping"}')
                    await asyncio.wait_for(socket.recv(), 5)
                during = await asyncio.to_thread(scrape)
            await asyncio.sleep(0.3)
            return during, await asyncio.to_thread(scrape)

        during, after = asyncio.run(with_open_sockets())
        assert gauge(during, "ws_connections_open", route="events") == 2.0
        assert gauge(after, "ws_connections_open", route="events") == 0.0
        assert gauge(after, "ws_connections_total", route="events") == 2.0
        assert gauge(after, "ws_disconnects_total", route="events", code="1000") == 2.0


def test_metrics_count_jobs_that_ran_on_a_real_worker(stack_root):  # noqa: F811
    """The worker's counters reach the web process's /metrics through the shared metrics dir."""
    with live_stack(stack_root, "ops-metrics-jobs") as live:
        with httpx.Client(base_url=live.base_url, headers=live.headers, timeout=10) as http:
            ids = [http.post("/api/jobs/", json={"kind": "test_steps", "params": params}).json()["id"]
                   for params in ({"steps": 2}, {"steps": 2, "crash_at": 1})]
            deadline = time.monotonic() + 30
            while any(http.get(f"/api/jobs/{i}/").json()["status"] not in ("done", "failed") for i in ids):
                assert time.monotonic() < deadline, "the jobs did not finish"
                time.sleep(0.2)
            text = http.get("/metrics").text
        assert gauge(text, "jobs_started_total", kind="test_steps") == 2.0
        assert gauge(text, "jobs_finished_total", kind="test_steps", outcome="done") == 1.0
        assert gauge(text, "jobs_finished_total", kind="test_steps", outcome="failed") == 1.0
        assert gauge(text, "jobs_runtime_seconds_count", kind="test_steps") == 2.0
        assert gauge(text, "jobs_events_pushed_total", type="job.done") == 1.0
        assert gauge(text, "ws_fanout_messages_total", route="job") is None  # nobody was watching
