"""More than one machine: two web processes (Daphne) and two gevent workers sharing one Redis, one
PostgreSQL database and one MEDIA_ROOT, started with the same commands as `make run`.

"Machine A" is the stack's own Daphne and worker, "machine B" a second Daphne on another port and
a second worker with another name. On one host the shared MEDIA_ROOT folder stands in for the
storage machines share in production (the same volume mounted on every host, or a network
filesystem: docs/deploy.md, Several machines): a report written by either worker is served by
either web process.

- a job started through web A is watched (gapless, to job.done) and downloaded through web B;
- chat crosses web processes: a message sent on A reaches a socket on B, and back;
- a worker SIGKILLed mid-job: the other worker takes the job over and finishes it exactly once.
"""
import asyncio
import csv
import dataclasses
import io
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from basic.ops import stack
from basic.students.reports import STUDENTS_BY_AGE_HEADER
from tests.integration.test_resilience import assert_gapless, follow, wait_for
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

STUDENTS = 4000
# 40 chunks x 0.1 s: a report of at least 4 s, long enough to lose its worker half-way. A lost
# worker's job is picked up once its 2 s lease lapses. JSON logs name the job each worker starts.
ENV = {"REPORT_CHUNK_SIZE": "100", "REPORT_CHUNK_DELAY": "0.1", "JOB_LEASE_SECONDS": "2", "LOG_FORMAT": "json"}


@dataclasses.dataclass
class Machines:
    a: LiveStack  # web A (the stack's Daphne) and worker A
    b: LiveStack  # the same stack seen through web B
    worker_logs: dict[str, Path]


@pytest.fixture(scope="module")
def machines(stack_root) -> Iterator[Machines]:
    with live_stack(stack_root, "two-machines", database="postgres", **ENV) as a:
        workdir = a.worker_log.parent
        logs = {"worker": a.worker_log}
        port = stack.free_port()
        a.processes["daphne-b"] = stack.start_daphne(port, a.env, log=workdir / "daphne-b.log")
        a.start_worker("b")  # its own hostname: b-<pid>@host
        logs["worker-b"] = workdir / "worker-b.log"
        b = dataclasses.replace(a, base_url=f"http://127.0.0.1:{port}", ws_url=f"ws://127.0.0.1:{port}")
        with httpx.Client(base_url=a.base_url, headers=a.headers, timeout=60) as http:
            assert http.post("/api/students/generate/", json={"count": STUDENTS}).status_code == 201
        yield Machines(a, b, logs)


def start_report(web: LiveStack) -> str:
    with httpx.Client(base_url=web.base_url, headers=web.headers, timeout=30) as http:
        response = http.post("/api/students/by-age-report/")
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job_state(web: LiveStack, job_id: str) -> dict:
    with httpx.Client(base_url=web.base_url, headers=web.headers, timeout=30) as http:
        return http.get(f"/api/jobs/{job_id}/").json()


def download_is_the_whole_report(web: LiveStack, job_id: str) -> None:
    with httpx.Client(base_url=web.base_url, headers=web.headers, timeout=60) as http:
        download = http.get(f"/api/jobs/{job_id}/download/")
    assert download.status_code == 200, download.text
    rows = list(csv.reader(io.StringIO(download.text)))
    expected = web.query("SELECT id, name, age FROM basic_student ORDER BY age, name, id")
    assert rows == [list(STUDENTS_BY_AGE_HEADER)] + [[str(i), name, str(age)] for i, name, age in expected]


def starts_logged(log: Path, job_id: str) -> int:
    """How many times this worker started the job (its JSON log lines: "job started", job=<id>)."""
    if not log.exists():
        return 0
    count = 0
    for line in log.read_text(errors="replace").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue  # Celery's start-up banner is printed, not logged
        if isinstance(entry, dict) and entry.get("message") == "job started" and entry.get("job") == job_id:
            count += 1
    return count


def test_a_job_started_on_one_web_process_is_watched_and_downloaded_on_the_other(machines: Machines):
    job_id = start_report(machines.a)
    events, _reconnects = asyncio.run(follow(machines.b, job_id, timeout=120))
    assert events[-1]["type"] == "job.done", events[-1]
    assert_gapless(events)
    assert [e["type"] for e in events].count("job.done") == 1
    assert events[-1]["result_url"].endswith(f"/api/jobs/{job_id}/download/")
    download_is_the_whole_report(machines.b, job_id)
    runners = {name: starts_logged(log, job_id) for name, log in machines.worker_logs.items()}
    assert sorted(runners.values()) == [0, 1], runners  # one worker ran it, once


def test_chat_crosses_web_processes(machines: Machines):
    bob = machines.a.user_token("bob")

    async def scenario() -> tuple[dict, dict]:
        on_a = f"{machines.a.ws_url}/ws/chat/two-machines/?token={machines.a.token}"
        on_b = f"{machines.b.ws_url}/ws/chat/two-machines/?token={bob}"
        async with websockets.connect(on_a) as alice_socket, websockets.connect(on_b) as bob_socket:
            return (await deliver(alice_socket, bob_socket, "from A to B"),
                    await deliver(bob_socket, alice_socket, "from B to A"))

    async def deliver(sender, receiver, text: str) -> dict:
        async with asyncio.timeout(30):
            while True:  # a room's subscription on the other process may take a moment
                await sender.send(json.dumps({"message": text}))
                try:
                    while True:
                        frame = json.loads(await asyncio.wait_for(receiver.recv(), 2))
                        if frame.get("type") == "chat.message" and frame["message"] == text:
                            return frame
                except TimeoutError:
                    continue

    to_b, to_a = asyncio.run(scenario())
    assert (to_b["sender"], to_b["room"]) == ("alice", "two-machines")
    assert (to_a["sender"], to_a["room"]) == ("bob", "two-machines")


def test_a_worker_killed_mid_job_hands_it_to_the_other_which_finishes_it_once(machines: Machines):
    job_id = start_report(machines.a)
    runner = wait_for(lambda: next((name for name, log in machines.worker_logs.items()
                                    if starts_logged(log, job_id)), None), 60, "a worker to start the job")
    other = next(name for name in machines.worker_logs if name != runner)
    wait_for(lambda: job_state(machines.b, job_id)["progress"] >= 20, 60, "progress >= 20%")
    killed = machines.a.processes[runner]
    killed.send_signal(signal.SIGKILL)
    killed.wait()
    assert job_state(machines.b, job_id)["status"] == "running"
    killed_at = time.monotonic()

    events, _reconnects = asyncio.run(follow(machines.b, job_id, timeout=120))
    assert events[-1]["type"] == "job.done", events[-1]
    assert_gapless(events)
    types = [e["type"] for e in events]
    assert types.count("job.done") == 1
    assert types.count("job.started") == 2  # the killed run and the one that finished
    assert "Restarted after its worker was lost" in [e["message"] for e in events]
    assert starts_logged(machines.worker_logs[other], job_id) == 1
    assert starts_logged(machines.worker_logs[runner], job_id) == 1  # and it never came back
    assert time.monotonic() - killed_at < 90
    download_is_the_whole_report(machines.a, job_id)
    job_dir = machines.a.media_root / "jobs" / job_id
    assert [p.name for p in job_dir.iterdir()] == [f"students-by-age-{job_id}.csv"]  # no temp file left
