"""Job policies on real workers (issue 20): a CPU kind runs on the prefork pool, never on the gevent
one; a kind's time limit stops a job that keeps reporting, one that hangs, and (prefork) one that
ignores the stop, on both pools, removing its partial output and freeing the worker's slot."""
import json
from datetime import datetime

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
        assert listed["test_steps"] == {"queue": queue, "time_limit": LIMIT, **RETRIES}
        assert listed["thumbnails"] == {"queue": "cpu", "time_limit": 600, "retries": 0, "retry_backoff": 2.0}
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


# --- priorities and delayed starts (the gevent pool, one slot) -----------------------------------

def test_queued_jobs_of_a_higher_priority_overtake_lower_ones(io_live):
    blocker = start(io_live, steps=4, delay=0.4)  # holds the only slot while the others queue
    wait_for(lambda: job(io_live, blocker)["status"] == "running", 20, "the blocker to run")
    low = [start_with(io_live, {"steps": 1}, priority=1) for _ in range(3)]
    high = start_with(io_live, {"steps": 1}, priority=6)
    states = {job_id: ended(io_live, job_id) for job_id in [blocker, *low, high]}
    assert all(state["status"] == "done" for state in states.values()), states
    order = sorted([*low, high], key=lambda job_id: at(states[job_id]["started"]))
    assert order[0] == high, [(states[j]["priority"], states[j]["started"]) for j in order]


def test_a_delayed_job_waits_scheduled_and_starts_at_its_time(io_live):
    job_id = start_with(io_live, {"steps": 1}, delay_seconds=3)
    state = job(io_live, job_id)
    assert state["status"] == "scheduled" and state["not_before"]
    state = ended(io_live, job_id)
    assert state["status"] == "done"
    assert at(state["started"]) >= at(state["not_before"]), state


def test_a_delayed_job_cancelled_before_its_time_never_runs(io_live):
    job_id = start_with(io_live, {"steps": 1}, delay_seconds=5)
    with client(io_live) as http:
        assert http.post(f"/api/jobs/{job_id}/cancel/").status_code in (200, 202)
    state = ended(io_live, job_id)
    assert (state["status"], state["started"]) == ("cancelled", None)


def test_a_delayed_job_starts_on_time_after_redis_comes_back_empty(stack_root):
    with live_stack(stack_root, "policies-delay", own_redis=True, JOB_LEASE_SECONDS="2") as live:
        job_id = start_with(live, {"steps": 1}, delay_seconds=8)
        live.stop_redis()
        live.start_redis_again(empty=True)  # the countdown's message and the job's marker are gone
        state = ended(live, job_id, timeout=60)
        assert state["status"] == "done", state
        assert at(state["started"]) >= at(state["not_before"])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def start_with(live: LiveStack, params: dict, **options) -> str:
    with client(live) as http:
        response = http.post("/api/jobs/", json={"kind": "test_steps", "params": params, **options})
    assert response.status_code == 202, response.text
    return response.json()["id"]
