"""Job policies on real workers (issue 20): a CPU kind runs on the prefork pool, never on the gevent
one; a kind's time limit stops a job that keeps reporting, one that hangs, and (prefork) one that
ignores the stop, on both pools, removing its partial output and freeing the worker's slot; a
kind's concurrency caps hold across workers and after one is killed."""
import json
import os
import signal
import time
import uuid
from datetime import datetime
from pathlib import Path

import httpx
import pytest
import redis

from tests.integration.test_kinds import TERMINAL, watch
from tests.integration.test_resilience import wait_for
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

LIMIT = 2  # seconds: test_steps' time limit on these stacks
RETRIES = {"retries": 2, "retry_backoff": 0.2}  # and its retries: after 0.1-0.2 s, then 0.2-0.4 s


def client(live: LiveStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, headers=live.headers, timeout=30)


@pytest.fixture(scope="module")
def io_live(stack_root):
    with live_stack(stack_root, "policies-io", concurrency=1,
                    JOB_KIND_POLICIES=json.dumps({"test_steps": {"time_limit": LIMIT, **RETRIES}})) as live:
        yield live


@pytest.fixture(scope="module")
def cpu_live(stack_root):
    # test_steps moved to the CPU queue by the deployment's override; a short lease, so a killed
    # child's job is swept within seconds.
    with live_stack(stack_root, "policies-cpu", concurrency=1,
                    JOB_KIND_POLICIES=json.dumps({"test_steps": {"queue": "cpu", "time_limit": LIMIT, **RETRIES}}),
                    JOB_TIME_LIMIT_GRACE_SECONDS="1", JOB_LEASE_SECONDS="3") as live:
        yield live


def with_cpu_worker(live: LiveStack) -> LiveStack:
    process = live.processes.get("worker-cpu")
    if process is None or process.poll() is not None:
        live.start_cpu_worker(concurrency=1)
    return live


@pytest.fixture(params=["io", "cpu"])
def pool(request) -> LiveStack:
    live = request.getfixturevalue(f"{request.param}_live")
    return with_cpu_worker(live) if request.param == "cpu" else live


def start(live: LiveStack, **params) -> str:
    with client(live) as http:
        response = http.post("/api/jobs/", json={"kind": "test_steps", "params": params})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def job(live: LiveStack, job_id: str) -> dict:
    with client(live) as http:
        return http.get(f"/api/jobs/{job_id}/").json()


def ended(live: LiveStack, job_id: str, timeout: float = 40) -> dict:
    return wait_for(lambda: (state := job(live, job_id))["status"] in ("done", "failed", "cancelled") and state,
                    timeout, f"job {job_id} to end")


def files_of(live: LiveStack, job_id: str) -> list[str]:
    folder = live.media_root / "jobs" / job_id
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


def assert_timed_out(live: LiveStack, job_id: str) -> None:
    state = ended(live, job_id)
    assert state["status"] == "failed", state
    assert f"timed out after {LIMIT} s" in state["error"], state
    assert files_of(live, job_id) == []  # the partial steps.txt is gone, temp file and all
    events = watch(live, job_id)
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["job.failed"]


def test_kinds_show_their_queue_and_time_limit(io_live, cpu_live):
    for live, queue in ((io_live, "io"), (cpu_live, "cpu")):
        with client(live) as http:
            listed = {kind["kind"]: kind["policy"] for kind in http.get("/api/kinds/").json()}
        no_caps = {"concurrency": None, "per_user_concurrency": None}
        assert listed["test_steps"] == {"queue": queue, "time_limit": LIMIT, **RETRIES, **no_caps}
        assert listed["thumbnails"] == {"queue": "cpu", "time_limit": 600, "retries": 0, "retry_backoff": 2.0,
                                        **no_caps}
        assert listed["page_fetch"]["retries"] == 2
        assert listed["page_fetch"]["queue"] == "io"


def waiting_messages(broker: redis.Redis, queue: str) -> int:
    """Messages in a Celery queue: one Redis list per priority (`cpu`, `cpu\x06\x164`, …)."""
    return sum(broker.llen(key) for key in broker.scan_iter(match=f"{queue}*") if broker.type(key) == b"list")


def test_a_cpu_kind_is_never_taken_by_the_gevent_worker(cpu_live):
    live = cpu_live
    process = live.processes.get("worker-cpu")
    if process is not None:  # only the gevent worker is up while the job is sent
        from basic.ops import stack

        stack.stop(process)
    broker = redis.Redis.from_url(live.env["CELERY_BROKER_URL"])
    job_id = start(live, steps=1)
    wait_for(lambda: waiting_messages(broker, "cpu") == 1, 10, "the job's message on the cpu queue")
    assert waiting_messages(broker, "default") == 0
    assert job(live, job_id)["status"] == "queued"  # the gevent worker, idle, leaves it alone
    with_cpu_worker(live)
    assert ended(live, job_id)["status"] == "done"
    assert job_id in live.worker_log.with_name("worker-cpu.log").read_text()


def test_a_job_that_keeps_reporting_past_its_limit_fails_and_frees_the_slot(pool):
    job_id = start(pool, steps=40, delay=0.25)  # 10 s of steps against a 2 s limit
    assert_timed_out(pool, job_id)
    after = start(pool, steps=1)  # the only slot of the pool is free again
    assert ended(pool, after)["status"] == "done"


def test_a_job_that_hangs_past_its_limit_fails_and_frees_the_slot(pool):
    job_id = start(pool, steps=1, hang=120)  # waits without reporting: only the pool's stop ends it
    assert_timed_out(pool, job_id)
    after = start(pool, steps=1)
    assert ended(pool, after)["status"] == "done"


def test_a_cpu_job_that_ignores_the_stop_is_killed_and_ended(cpu_live):
    live = with_cpu_worker(cpu_live)
    job_id = start(live, steps=1, hang=120, ignore_stop=True)
    # Killed at the hard limit (2 + 1 s); its lease lapses (3 s) and the sweep ends it.
    assert_timed_out(live, job_id)
    after = start(live, steps=1)  # the pool replaced the killed child
    assert ended(live, after)["status"] == "done"


# --- retries (both pools) ------------------------------------------------------------------------

def test_a_transient_failure_is_tried_again_with_a_gapless_seq_and_one_end(pool):
    job_id = start(pool, steps=2, transient_until=3)  # attempts 1 and 2 fail, 3 succeeds (retries: 2)
    state = ended(pool, job_id)
    assert (state["status"], state["attempt"]) == ("done", 3), state
    events = watch(pool, job_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    retrying = [e for e in events if e["type"] == "job.retrying"]
    assert [(e["attempt"], e["max_attempts"], e["error"]) for e in retrying] == [
        (2, 3, "Temporary trouble at attempt 1."), (3, 3, "Temporary trouble at attempt 2.")]
    assert all(e["status"] == "queued" and "attempt" in e["message"] for e in retrying)
    assert [e["type"] for e in events].count("job.started") == 3
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["job.done"]


def test_a_job_out_of_retries_fails_with_the_last_error(pool):
    job_id = start(pool, steps=1, transient_until=99)
    state = ended(pool, job_id)
    assert (state["status"], state["attempt"], state["error"]) == ("failed", 3, "Temporary trouble at attempt 3.")
    events = watch(pool, job_id)
    assert [e["type"] for e in events].count("job.retrying") == 2
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["job.failed"]


# --- priorities and delayed starts (both pools, one slot) -----------------------------------------

def test_queued_jobs_of_a_higher_priority_overtake_lower_ones(pool):
    blocker = start(pool, steps=4, delay=0.4)  # holds the only slot while the others queue
    wait_for(lambda: job(pool, blocker)["status"] == "running", 20, "the blocker to run")
    low = [start_with(pool, {"steps": 1}, priority=1) for _ in range(3)]
    high = start_with(pool, {"steps": 1}, priority=6)
    states = {job_id: ended(pool, job_id) for job_id in [blocker, *low, high]}
    assert all(state["status"] == "done" for state in states.values()), states
    order = sorted([*low, high], key=lambda job_id: at(states[job_id]["started"]))
    assert order[0] == high, [(states[j]["priority"], states[j]["started"]) for j in order]


def test_a_delayed_job_waits_scheduled_and_starts_at_its_time(pool):
    job_id = start_with(pool, {"steps": 1}, delay_seconds=3)
    state = job(pool, job_id)
    assert state["status"] == "scheduled" and state["not_before"]
    state = ended(pool, job_id)
    assert state["status"] == "done"
    assert at(state["started"]) >= at(state["not_before"]), state


def test_a_delayed_job_cancelled_before_its_time_never_runs(pool):
    job_id = start_with(pool, {"steps": 1}, delay_seconds=5)
    with client(pool) as http:
        assert http.post(f"/api/jobs/{job_id}/cancel/").status_code in (200, 202)
    state = ended(pool, job_id)
    assert (state["status"], state["started"]) == ("cancelled", None)


@pytest.fixture(scope="module")
def delay_live(stack_root):
    # A sweep every second, and a killed worker taken for dead after 2 s of silence.
    with live_stack(stack_root, "policies-delay", own_redis=True, JOB_LEASE_SECONDS="2",
                    WORKER_ALIVE_SECONDS="2") as live:
        yield live


def test_a_delayed_job_starts_on_time_after_redis_comes_back_empty(delay_live):
    job_id = start_with(delay_live, {"steps": 1}, delay_seconds=8)
    delay_live.stop_redis()
    delay_live.start_redis_again(empty=True)  # the countdown's message and the job's marker are gone
    state = ended(delay_live, job_id, timeout=60)
    assert state["status"] == "done", state
    assert at(state["started"]) >= at(state["not_before"])


ON_TIME_SECONDS = 3  # a sweep (1 s) and a countdown's start, on a loaded 2-core box


def test_a_delayed_job_starts_on_time_after_its_worker_is_killed(delay_live):
    """The worker holding the countdown's message is SIGKILLed and another starts: the new worker's
    sweep sees the message's holder is gone and sends it again with the countdown left (it used to
    wait for the reserved marker to expire, JOB_RESERVED_SECONDS = 30 s past the job's time)."""
    job_id = start_with(delay_live, {"steps": 1}, delay_seconds=15)
    markers = redis.Redis.from_url(delay_live.env["REDIS_URL"])
    wait_for(lambda: (markers.get(f"jobs:{job_id}:queued") or b"").startswith(b"reserved:"), 10,
             "the worker to hold the countdown's message")
    worker = delay_live.processes["worker"]
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    delay_live.start_worker("after-the-kill", concurrency=100)
    state = ended(delay_live, job_id, timeout=60)
    assert state["status"] == "done", state
    late = (at(state["started"]) - at(state["not_before"])).total_seconds()
    assert 0 <= late < ON_TIME_SECONDS, state


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def start_with(live: LiveStack, params: dict, **options) -> str:
    with client(live) as http:
        response = http.post("/api/jobs/", json={"kind": "test_steps", "params": params, **options})
    assert response.status_code == 202, response.text
    return response.json()["id"]


# --- concurrency caps (the gevent pool, ten slots a worker) -----------------------------------------
# One stack for every cap test: each test has its own copy of test_steps (tests/capped_kinds.py)
# with its own cap, so their jobs never count against each other's. Two gevent workers (a cap
# holds across them) and the CPU queue's prefork worker with two children.
CAPS = {
    "steps_cap_two": {"concurrency": 2},
    "steps_user_cap": {"per_user_concurrency": 1},
    "steps_cap_one": {"concurrency": 1},
    "steps_cpu_cap_one": {"queue": "cpu", "concurrency": 1},
    "steps_kill": {"concurrency": 1},
}


@pytest.fixture(scope="module")
def caps_live(stack_root):
    # A short lease (a killed worker's job and slot lapse within seconds) and a quick sweep of
    # queued jobs whose message went down with a killed worker.
    with live_stack(stack_root, "policies-caps", concurrency=10, JOB_KIND_POLICIES=json.dumps(CAPS),
                    JOB_KIND_EXTRA_MODULES="tests.job_kinds,tests.capped_kinds",
                    JOB_LEASE_SECONDS="3", JOB_RESERVED_SECONDS="5", JOB_REQUEUE_AFTER_SECONDS="5") as live:
        live.start_worker("second", concurrency=10)
        live.start_cpu_worker(concurrency=2)
        yield live


def start_kind(live: LiveStack, kind: str, token: str | None = None, **params) -> str:
    headers = {"Authorization": f"Token {token}"} if token else live.headers
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=30) as http:
        response = http.post("/api/jobs/", json={"kind": kind, "params": params})
    assert response.status_code == 202, response.text
    return response.json()["id"]


def watch_rows(live: LiveStack, job_ids: list[str], timeout: float = 60) -> list[list[tuple]]:
    """(id, owner, status, message) of the jobs, read from the database every 50 ms until all have
    ended: a sample per read."""
    marks = ", ".join(["%s"] * len(job_ids))
    ids = {uuid.UUID(job_id).hex: job_id for job_id in job_ids}
    samples = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = live.query(f"SELECT id, owner_id, status, message FROM basic_job WHERE id IN ({marks})",
                          *(uuid.UUID(job_id) for job_id in job_ids))
        samples.append([(ids.get(str(row[0]).replace("-", ""), str(row[0])), *row[1:]) for row in rows])
        if all(row[2] in ("done", "failed", "cancelled") for row in rows):
            return samples
        time.sleep(0.05)
    raise AssertionError(f"jobs still active after {timeout} s: {samples[-1]}")


def most_running(samples: list[list[tuple]], owner: object = None) -> int:
    return max(sum(1 for row in sample if row[2] == "running" and owner in (None, row[1])) for sample in samples)


def test_a_kind_cap_runs_its_jobs_two_at_a_time_in_the_order_they_came(caps_live):
    live = caps_live
    job_ids = [start_kind(live, "steps_cap_two", steps=4, delay=0.3) for _ in range(5)]
    samples = watch_rows(live, job_ids)
    assert most_running(samples) == 2
    waiting = {row[3] for sample in samples for row in sample if row[2] == "queued"}
    assert "waiting: 2 of 2 Cap-two steps jobs running" in waiting, waiting
    states = [job(live, job_id) for job_id in job_ids]
    assert [state["status"] for state in states] == ["done"] * 5, states
    # In the order they came, two at a time: the two slots free at about the same moment, so
    # the two jobs let in then mark themselves started in either order (ms apart), but no job
    # starts in a round before one that came earlier (strict order with one slot: below).
    by_start = sorted(job_ids, key=lambda job_id: at(job(live, job_id)["started"]))
    assert [set(by_start[:2]), set(by_start[2:4]), by_start[4]] == [set(job_ids[:2]), set(job_ids[2:4]),
                                                                   job_ids[4]]
    events = watch(live, job_ids[-1])
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events if e["type"] in TERMINAL] == ["job.done"]


def test_a_per_user_cap_runs_one_users_jobs_one_at_a_time_beside_anothers(caps_live):
    live = caps_live
    bob = live.user_token("bob")
    alices = [start_kind(live, "steps_user_cap", steps=4, delay=0.3) for _ in range(2)]
    bobs = start_kind(live, "steps_user_cap", bob, steps=4, delay=0.3)
    samples = watch_rows(live, [*alices, bobs])
    alice_id = next(row[1] for row in samples[-1] if row[0] == alices[0])
    assert most_running(samples, owner=alice_id) == 1
    assert most_running(samples) == 2  # bob's job ran beside one of alice's
    waiting = {row[3] for sample in samples for row in sample if row[0] == alices[1] and row[2] == "queued"}
    assert "waiting: 1 of 1 of your User-cap steps jobs running" in waiting, waiting
    assert all(job(live, job_id)["status"] == "done" for job_id in alices)


@pytest.mark.parametrize("kind, label", [
    ("steps_cap_one", "Cap-one steps"),  # on the stack's two gevent workers
    ("steps_cpu_cap_one", "CPU cap-one steps"),  # on the CPU queue's prefork worker with two children
], ids=["two-gevent-workers", "prefork"])
def test_a_cap_of_one_holds_across_workers_and_children(caps_live, kind, label):
    live = caps_live
    job_ids = [start_kind(live, kind, steps=3, delay=0.2) for _ in range(3)]
    samples = watch_rows(live, job_ids)
    assert most_running(samples) == 1
    waiting = {row[3] for sample in samples for row in sample if row[2] == "queued"}
    assert f"waiting: 1 of 1 {label} jobs running" in waiting, waiting
    assert all(job(live, job_id)["status"] == "done" for job_id in job_ids)
    # One slot: each job starts after the one before it ended, so strictly in the order they came.
    assert sorted(job_ids, key=lambda job_id: at(job(live, job_id)["started"])) == job_ids


def test_a_killed_workers_slot_is_not_leaked(caps_live):
    """Last: it kills both of the stack's gevent workers (whichever runs the holder) and starts
    another, which takes the jobs over."""
    live = caps_live
    holder = start_kind(live, "steps_kill", steps=20, delay=0.3)
    wait_for(lambda: job(live, holder)["progress"] >= 10, 20, "the holder to run")
    queued = start_kind(live, "steps_kill", steps=1)
    wait_for(lambda: job(live, queued)["message"].startswith("waiting: 1 of 1"), 20, "the second to wait")
    for name in ("worker", "worker-second"):
        live.processes[name].send_signal(signal.SIGKILL)
        live.processes[name].wait()
    assert job(live, holder)["status"] == "running"
    live.start_worker("after-the-kill", concurrency=10)

    first, second = ended(live, holder, timeout=60), ended(live, queued, timeout=60)
    assert (first["status"], second["status"]) == ("done", "done"), (first, second)
    # One at a time, whichever took the slot first once the killed worker's had lapsed.
    assert at(second["started"]) >= at(first["finished"]) or at(first["started"]) >= at(second["finished"])
    assert [e["type"] for e in watch(live, holder)].count("job.started") == 2  # recovered, run again
    after = start_kind(live, "steps_kill", steps=1)  # the slot is free: nothing leaked
    assert ended(live, after, timeout=20)["status"] == "done"


def niceness(pid: int) -> set[int]:
    """The niceness of every thread of process `pid` (field 19 of each thread's stat)."""
    return {int((task / "stat").read_text().rsplit(")", 1)[1].split()[16])
            for task in Path(f"/proc/{pid}/task").iterdir()}


def test_computing_jobs_leave_the_cores_to_the_web_process_and_the_gevent_worker(cpu_live):
    """The prefork (CPU queue) worker's children run 10 below the niceness the stack was started
    with (CPU_WORKER_NICE), so a thumbnail that computes yields to requests and to the gevent
    worker's jobs; the web process, the gevent worker and the prefork parent (which only hands out
    work) stay at it."""
    live = with_cpu_worker(cpu_live)
    base = os.getpriority(os.PRIO_PROCESS, 0)
    assert niceness(live.processes["daphne"].pid) == {base}
    assert niceness(live.processes["worker"].pid) == {base}
    parent = live.processes["worker-cpu"].pid
    assert niceness(parent) == {base}

    def children() -> list[int]:
        return [int(pid) for pid in Path(f"/proc/{parent}/task/{parent}/children").read_text().split()]

    wait_for(lambda: children() and all(niceness(child) == {min(base + 10, 19)} for child in children()), 10,
             "the CPU worker's children at CPU_WORKER_NICE")
