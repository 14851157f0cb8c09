"""Schedules on the real stack: `celery beat` (database scheduler) beside a gevent worker and
Daphne. A schedule every 10 s starts ordinary jobs of its owner that finish and show up on the
owner's `/ws/events/`; deleting it stops them. `manage.py runstack` starts beat and stops it."""
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import websockets

from basic.ops import stack
from tests.integration.test_kinds import watch
from tests.integration.test_resilience import assert_gapless
from tests.live import live_stack, manage

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def live(stack_root):
    with live_stack(stack_root, "schedules") as running:
        running.start_beat()
        yield running


def poll(read, good, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = read()
        if good(value):
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}: {value}")


def scheduled_jobs(http: httpx.Client) -> list[dict]:
    return http.get("/api/jobs/", params={"kind": "test_steps", "limit": 100}).json()["results"]


async def feed_events(live, seconds: float) -> list[dict]:
    received = []
    async with websockets.connect(f"{live.ws_url}/ws/events/?token={live.token}", open_timeout=10) as socket:
        try:
            async with asyncio.timeout(seconds):
                async for raw in socket:
                    received.append(json.loads(raw))
        except TimeoutError:
            pass
    return received


def test_a_schedule_every_ten_seconds_starts_jobs_that_finish(live):
    with httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30) as http:
        created = http.post("/api/schedules/", json={"kind": "test_steps", "params": {"steps": 3, "delay": 0.2},
                                                     "every": 10})
        assert created.status_code == 201, created.text
        schedule = created.json()
        # The owner's feed hears a scheduled job like any other (the first run is ~10 s away).
        feed = asyncio.run(feed_events(live, 25))
        done = poll(lambda: scheduled_jobs(http), lambda jobs: sum(j["status"] == "done" for j in jobs) >= 2,
                    timeout=60, what="two scheduled jobs to finish")
        assert all(job["owner"] == "alice" and job["params"] == {"steps": 3, "delay": 0.2} for job in done)
        finished = [j for j in done if j["status"] == "done"]
        events = watch(live, finished[-1]["id"])
        assert_gapless(events)
        assert events[-1]["type"] == "job.done" and events[-1]["result"] == {"steps": 3}
        assert {"job.started", "job.done"} <= {e["type"] for e in feed if e["job"] in {j["id"] for j in done}}
        last_job = http.get(f"/api/schedules/{schedule['id']}/").json()["last_job"]
        assert last_job["id"] in {job["id"] for job in scheduled_jobs(http)}
        assert http.get(f"/api/jobs/{finished[-1]['id']}/download/").text == "step 1\nstep 2\nstep 3\n"

        # Deleted: beat notices within its loop interval and starts no more.
        assert http.delete(f"/api/schedules/{schedule['id']}/").status_code == 204
        time.sleep(6)  # a run already sent may still arrive
        count = len(scheduled_jobs(http))
        time.sleep(14)
        assert len(scheduled_jobs(http)) == count


def children_of(pid: int) -> dict[int, str]:
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = next((int(line.split()[1]) for line in status.splitlines() if line.startswith("PPid:")), None)
        if ppid == pid:
            found[int(entry.name)] = cmdline
    return found


def test_runstack_starts_one_beat_beside_the_workers_and_stops_it_on_ctrl_c(stack_root):
    workdir = stack_root / "runstack"
    workdir.mkdir(parents=True, exist_ok=True)
    # Its own Redis database: its worker must not take other stacks' tasks from the shared queue.
    redis_url = os.environ["REDIS_URL"].rsplit("/", 1)[0] + "/7"
    env = {**os.environ, "REDIS_URL": redis_url, "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
           "MEDIA_ROOT": str(workdir / "media"),
           "PROMETHEUS_MULTIPROC_DIR": str(workdir / "metrics"), "CHANNEL_PREFIX": f"it-runstack-{os.getpid()}",
           "LOG_LEVEL": "WARNING", "CPU_WORKER_CONCURRENCY": "1"}
    (workdir / "metrics").mkdir(exist_ok=True)
    manage(env, "migrate", "--noinput", "-v0")
    port = stack.free_port()
    log = (workdir / "runstack.log").open("wb")
    runstack = subprocess.Popen([sys.executable, "manage.py", "runstack", "--port", str(port), "--concurrency", "4"],
                                cwd=stack.BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        stack.wait_for_port(port, timeout=60, process=runstack)
        children = children_of(runstack.pid)
        beats = [pid for pid, cmd in children.items() if " beat " in cmd]
        workers = [cmd for cmd in children.values() if " worker " in cmd]
        # The I/O worker on gevent and the CPU queue's prefork worker (issue 20), one of each.
        assert len(beats) == 1 and len(workers) == 2, children
        assert sorted("--pool=gevent" in cmd and "-Q default" in cmd for cmd in workers) == [False, True]
        assert sorted("--pool=prefork" in cmd and "-Q cpu" in cmd for cmd in workers) == [False, True]
        assert "DatabaseScheduler" in children[beats[0]]
        runstack.send_signal(signal.SIGINT)
        assert runstack.wait(30) == 0
        for pid in children:
            assert not Path(f"/proc/{pid}").exists() or "(Z)" in Path(f"/proc/{pid}/stat").read_text(), pid
    finally:
        stack.stop(runstack)
        log.close()
