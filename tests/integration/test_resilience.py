"""Nothing lost when things break, with real processes: a worker SIGKILLed mid-report, a running
job cancelled, Redis restarted under open sockets and a running job."""
import asyncio
import csv
import io
import json
import signal
import threading
import time
import uuid

import httpx
import pytest
import websockets

from basic.students.reports import STUDENTS_BY_AGE_HEADER
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

TERMINAL = {"job.done", "job.failed", "job.cancelled"}
SLOW_JOB = {"REPORT_CHUNK_SIZE": "100", "REPORT_CHUNK_DELAY": "0.1"}
STUDENTS = 4000  # 40 chunks x 0.1 s: a job of at least 4 s


def client(live: LiveStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, headers=live.headers, timeout=15)


def start_slow_job(live: LiveStack) -> str:
    with client(live) as http:
        assert http.post("/api/students/generate/", json={"count": STUDENTS}).status_code == 201
        response = http.post("/api/students/by-age-report/")
        assert response.status_code == 202
        return response.json()["id"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def job_state(live: LiveStack, job_id: str) -> dict:
    with client(live) as http:
        return http.get(f"/api/jobs/{job_id}/").json()


async def follow(live: LiveStack, job_id: str, timeout: float) -> tuple[list[dict], int]:
    """Watch a job like the console does: reconnect with `?after=<last seq>` whenever the socket
    drops, until a terminal event (or terminal snapshot). Returns the events and reconnect count."""
    received: list[dict] = []
    reconnects = 0
    async with asyncio.timeout(timeout):
        while True:
            after = received[-1]["seq"] if received else 0
            url = f"{live.ws_url}/ws/jobs/{job_id}/?after={after}&token={live.token}"
            try:
                async with websockets.connect(url, open_timeout=5) as socket:
                    async for raw in socket:
                        frame = json.loads(raw)
                        received.append(frame)
                        if frame["type"] in TERMINAL or (
                                frame["type"] == "job.snapshot" and frame["status"] in ("done", "failed", "cancelled")):
                            return received, reconnects
            except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus, TimeoutError):
                pass
            reconnects += 1
            await asyncio.sleep(min(0.2 * reconnects, 1.0))


def db_progress(live: LiveStack, job_id: str) -> int:
    """Straight from the database: the REST API needs no Redis, but this needs nothing at all."""
    return live.query("SELECT progress FROM basic_job WHERE id = %s", uuid.UUID(job_id))[0][0]


def assert_gapless(events: list[dict]) -> None:
    seqs = [e["seq"] for e in events if e["type"] != "job.snapshot"]
    assert seqs == list(range(1, len(seqs) + 1)), seqs


def check_report(live: LiveStack, job_id: str, students: int) -> None:
    with client(live) as http:
        download = http.get(f"/api/jobs/{job_id}/download/")
    assert download.status_code == 200
    rows = list(csv.reader(io.StringIO(download.text)))
    assert rows[0] == list(STUDENTS_BY_AGE_HEADER)
    assert len(rows) == students + 1
    keys = [(int(r[2]), r[1], int(r[0])) for r in rows[1:]]
    assert keys == sorted(keys)


class ReportPathWatcher(threading.Thread):
    """Polls the report path; every time a file is there, it must be a complete report."""

    def __init__(self, path, expected_lines: int) -> None:
        super().__init__(daemon=True)
        self.path, self.expected_lines = path, expected_lines
        self.seen: list[int] = []
        self.stop_event = threading.Event()

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                with self.path.open("rb") as handle:
                    self.seen.append(sum(1 for _ in handle))
            except FileNotFoundError:
                pass
            time.sleep(0.005)


def test_sigkilled_worker_mid_report_completes_exactly_once_on_another(stack_root):
    env = {**SLOW_JOB, "JOB_LEASE_SECONDS": "2"}
    with live_stack(stack_root, "sigkill", **env) as live:
        job_id = start_slow_job(live)
        report = live.media_root / "jobs" / job_id / f"students-by-age-{job_id}.csv"
        watcher = ReportPathWatcher(report, STUDENTS + 1)
        watcher.start()
        wait_for(lambda: job_state(live, job_id)["progress"] >= 20, 60, "progress >= 20%")
        live.processes["worker"].send_signal(signal.SIGKILL)
        live.processes["worker"].wait()
        killed_at = job_state(live, job_id)
        assert killed_at["status"] == "running"
        assert not report.exists()

        live.start_worker("second")
        events, _reconnects = asyncio.run(follow(live, job_id, timeout=90))
        watcher.stop_event.set()
        watcher.join()

        assert events[-1]["type"] == "job.done", events[-1]
        assert_gapless(events)
        types = [e["type"] for e in events]
        assert types.count("job.done") == 1
        assert types.count("job.started") == 2  # the first run and the recovered one
        assert "Restarted after its worker was lost" in [e["message"] for e in events]
        check_report(live, job_id, STUDENTS)
        assert watcher.seen and set(watcher.seen) == {STUDENTS + 1}, "a partial report was visible"
        assert [p.name for p in report.parent.iterdir()] == [report.name]  # no temp file left
        assert "(running) lost its run; queueing it again" in live.log_tail(200)


def test_cancelling_a_running_job_stops_it_and_leaves_no_report(stack_root):
    with live_stack(stack_root, "cancel", **SLOW_JOB) as live:
        job_id = start_slow_job(live)

        async def watch_and_cancel() -> list[dict]:
            url = f"{live.ws_url}/ws/jobs/{job_id}/?after=0&token={live.token}"
            received = []
            # One cancel, once the job is 10% in. Progress frames already on their way still arrive after
            # it; a second cancel sent on one of them could land after the job has ended, and the API
            # rightly answers a cancel of a finished job with 409.
            cancel_sent = False
            async with websockets.connect(url) as socket:
                async with asyncio.timeout(60):
                    while True:
                        frame = json.loads(await socket.recv())
                        received.append(frame)
                        if frame["type"] == "job.progress" and frame["progress"] >= 10 and not cancel_sent:
                            async with httpx.AsyncClient(base_url=live.base_url, headers=live.headers) as http:
                                response = await http.post(f"/api/jobs/{job_id}/cancel/")
                                assert response.status_code == 202
                            cancel_sent = True
                            received.append({"type": "cancel-sent", "seq": None})
                        if frame["type"] in TERMINAL:
                            return received

        frames = asyncio.run(watch_and_cancel())
        events = [f for f in frames if f["type"] != "cancel-sent"]
        assert events[-1]["type"] == "job.cancelled"
        assert events[-1]["progress"] < 100
        assert_gapless(events)
        state = job_state(live, job_id)
        assert state["status"] == "cancelled"
        with client(live) as http:
            assert http.get(f"/api/jobs/{job_id}/download/").status_code == 409
            assert http.post(f"/api/jobs/{job_id}/cancel/").status_code == 409
        job_dir = live.media_root / "jobs" / job_id
        assert not job_dir.exists() or list(job_dir.iterdir()) == []


def test_redis_restart_under_open_sockets_and_a_running_job(stack_root):
    with live_stack(stack_root, "redis-restart", own_redis=True, **SLOW_JOB,
                    JOB_SOCKET_RESYNC_SECONDS="1", JOB_TERMINAL_EVENT_GRACE_SECONDS="3") as live:
        job_id = start_slow_job(live)

        async def scenario():
            follower = asyncio.create_task(follow(live, job_id, timeout=120))
            chat_url = f"{live.ws_url}/ws/chat/restart/?token={live.token}"
            async with websockets.connect(chat_url) as listener:
                await asyncio.to_thread(wait_for, lambda: job_state(live, job_id)["progress"] >= 15, 60,
                                        "progress >= 15%")
                await asyncio.to_thread(live.stop_redis)
                progress_when_redis_died = await asyncio.to_thread(db_progress, live, job_id)
                # The job keeps working while Redis is down (its progress events are dropped;
                # the database still moves): the worker's greenlets must not freeze.
                await asyncio.to_thread(
                    wait_for, lambda: db_progress(live, job_id) > progress_when_redis_died + 10, 10,
                    "the job to make progress while Redis is down")
                await asyncio.to_thread(live.start_redis_again)
                events, reconnects = await follower
                # The chat socket opened before the restart still works after it, with no reconnect.
                async with websockets.connect(chat_url) as speaker:
                    async with asyncio.timeout(30):
                        while True:  # the listener's subscription may take a moment to come back
                            await speaker.send(json.dumps({"message": "after restart"}))
                            try:
                                frame = json.loads(await asyncio.wait_for(listener.recv(), 2))
                                break
                            except TimeoutError:
                                continue
            return events, reconnects, frame

        events, reconnects, chat_frame = asyncio.run(scenario())
        assert chat_frame["message"] == "after restart"
        final = events[-1]
        assert final["type"] == "job.done" or (final["type"] == "job.snapshot" and final["status"] == "done"), final
        assert_gapless(events)
        live_events = [e for e in events if e["type"] != "job.snapshot"]
        assert len({e["seq"] for e in live_events}) == len(live_events)  # no duplicates
        check_report(live, job_id, STUDENTS)

        # The same processes serve a new job end to end after the restart.
        with client(live) as http:
            again = http.post("/api/students/by-age-report/")
            assert again.status_code == 202
        events, _ = asyncio.run(follow(live, again.json()["id"], timeout=90))
        assert events[-1]["type"] == "job.done"
        assert_gapless(events)
        assert all(p.poll() is None for p in live.processes.values()), "no process had to restart"
