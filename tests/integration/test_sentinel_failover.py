"""Redis Sentinel failover with real processes (issue 21, item 5): a master, a replica and three
sentinels (tests/sentinel.py); the stack configured only with REDIS_SENTINELS. The master is
SIGKILLed mid-job while two sockets watch the job and a chat room talks: the job ends exactly
once, each socket's seq is gapless, chat sent after the failover arrives, and the product is fully
back (readiness naming the new master, chat, job events, a new job run end to end) within 15 s
of the promotion."""
import asyncio
import json
import time
import uuid

import httpx
import pytest
import redis
import websockets

from tests.integration.test_resilience import TERMINAL, assert_gapless, wait_for
from tests.live import LiveStack, live_stack
from tests.sentinel import sentinel_set

pytestmark = pytest.mark.integration

BACK_WITHIN_SECONDS = 15
STEPS, STEP_DELAY = 70, 0.15  # a job of at least 10 s: killed at 10%, it outlasts the promotion (2-3 s)
AFTER_FAILOVER = [f"after failover {i}" for i in range(6)]


def http(live: LiveStack) -> httpx.Client:
    return httpx.Client(base_url=live.base_url, headers=live.headers, timeout=15)


def start_job(live: LiveStack, steps: int, delay: float) -> str:
    with http(live) as client:
        response = client.post("/api/jobs/", json={"kind": "test_steps", "params": {"steps": steps, "delay": delay}})
    assert response.status_code == 202, f"{response.text}\n{live.log_tail(40, 'daphne.log')}"
    return response.json()["id"]


def db_job(live: LiveStack, job_id: str) -> tuple[str, int]:
    return live.query("SELECT status, progress FROM basic_job WHERE id = %s", uuid.UUID(job_id))[0]


def is_terminal(frame: dict) -> bool:
    return frame["type"] in TERMINAL or (frame["type"] == "job.snapshot"
                                         and frame["status"] in ("done", "failed", "cancelled"))


async def follow(live: LiveStack, job_id: str) -> list[tuple[float, dict]]:
    """Watch a job as the console does (reconnect with ?after=), noting when each frame came."""
    received: list[tuple[float, dict]] = []
    attempt = 0
    async with asyncio.timeout(90):
        while True:
            seqs = [frame["seq"] for _, frame in received if frame["type"] != "job.snapshot"]
            url = f"{live.ws_url}/ws/jobs/{job_id}/?after={seqs[-1] if seqs else 0}&token={live.token}"
            try:
                async with websockets.connect(url, open_timeout=5) as socket:
                    async for raw in socket:
                        frame = json.loads(raw)
                        received.append((time.monotonic(), frame))
                        if is_terminal(frame):
                            return received
            except (OSError, websockets.ConnectionClosed, websockets.InvalidStatus, TimeoutError):
                pass
            attempt += 1
            await asyncio.sleep(min(0.2 * attempt, 1.0))


async def readiness_names(live: LiveStack, master: str, seen: list[dict]) -> float:
    """When /readyz is 200 and names `master` (asked from loopback, which may see addresses);
    the answers before that go to `seen`."""
    async with httpx.AsyncClient(base_url=live.base_url, timeout=5) as client:
        while True:
            try:
                response = await client.get("/readyz")
                body = response.json()
                if response.status_code == 200 and body["checks"]["redis"].get("master") == master:
                    return time.monotonic()
                seen.append(body["checks"])
            except httpx.HTTPError as exc:
                seen.append({"error": repr(exc)})
            await asyncio.sleep(0.2)


async def a_new_job_runs(live: LiveStack) -> float:
    """When a job started after the promotion is done (REST, the broker, a worker, the events)."""
    job_id = await asyncio.to_thread(start_job, live, 2, 0)
    while (await asyncio.to_thread(db_job, live, job_id))[0] != "done":
        await asyncio.sleep(0.1)
    return time.monotonic()


def test_the_master_killed_mid_job_under_sockets_and_chat(stack_root):
    with sentinel_set(stack_root / "sentinels") as sentinels, live_stack(
            stack_root, "sentinel-failover",
            # Only REDIS_URL's database number is used (the broker's too): the sentinels name the master.
            redis_env={**sentinels.env, "REDIS_URL": "redis://localhost/0", "CELERY_BROKER_URL": ""},
            JOB_SOCKET_RESYNC_SECONDS="1", JOB_TERMINAL_EVENT_GRACE_SECONDS="3") as live:
        old_master = sentinels.master()
        job_id = start_job(live, STEPS, STEP_DELAY)
        chat_url = f"{live.ws_url}/ws/chat/failover/?token={live.token}"

        async def scenario() -> dict:
            watchers = [asyncio.create_task(follow(live, job_id)) for _ in range(2)]
            async with websockets.connect(chat_url) as listener, websockets.connect(chat_url) as speaker:
                await speaker.send(json.dumps({"message": "before"}))
                assert json.loads(await asyncio.wait_for(listener.recv(), 10))["message"] == "before"
                assert json.loads(await asyncio.wait_for(speaker.recv(), 10))["message"] == "before"
                await asyncio.to_thread(wait_for, lambda: db_job(live, job_id)[1] >= 10, 60, "the job at 10%")

                killed_at = time.monotonic()
                await asyncio.to_thread(sentinels.kill_master)
                new_master, promoted_at = await asyncio.to_thread(sentinels.wait_for_new_master, old_master)
                status_at_promotion = (await asyncio.to_thread(db_job, live, job_id))[0]
                not_ready: list[dict] = []
                readiness = asyncio.create_task(readiness_names(live, new_master, not_ready))
                new_job = asyncio.create_task(a_new_job_runs(live))

                async def talk() -> list[dict]:
                    for message in AFTER_FAILOVER:
                        await speaker.send(json.dumps({"message": message}))
                        await asyncio.sleep(0.5)
                    return [json.loads(await asyncio.wait_for(speaker.recv(), 15)) for _ in AFTER_FAILOVER]

                async def hear() -> list[tuple[float, dict]]:
                    heard = []
                    while len(heard) < len(AFTER_FAILOVER):
                        frame = json.loads(await asyncio.wait_for(listener.recv(), 20))
                        heard.append((time.monotonic(), frame))
                    return heard

                echoed, heard = await asyncio.gather(talk(), hear())
                followed = await asyncio.gather(*watchers)
                return {"status_at_promotion": status_at_promotion, "not_ready": not_ready,
                        "killed_at": killed_at, "promoted_at": promoted_at, "new_master": new_master,
                        "echoed": echoed, "heard": heard, "followed": followed,
                        "ready_at": await readiness, "new_job_done_at": await new_job}

        result = asyncio.run(scenario())
        promoted_at = result["promoted_at"]
        assert result["new_master"] != old_master
        assert result["status_at_promotion"] == "running"  # the failover happened mid-job

        # Chat sent after the failover arrives, each message once, in order, to both sockets.
        assert [frame.get("message") for _, frame in result["heard"]] == AFTER_FAILOVER, result["heard"]
        assert [frame.get("message") for frame in result["echoed"]] == AFTER_FAILOVER, result["echoed"]

        # The job ended exactly once; every socket saw a gapless seq and one end.
        assert db_job(live, job_id) == ("done", 100)
        first_event_after = []
        for frames in result["followed"]:
            events = [frame for _, frame in frames]
            assert is_terminal(events[-1]) and events[-1].get("status", "done") == "done", events[-1]
            assert_gapless(events)
            assert sum(is_terminal(event) for event in events) == 1
            assert [e["type"] for e in events].count("job.started") <= 1
            first_event_after.append(min(at for at, frame in frames if at > promoted_at and "seq" in frame))
        master_host, master_port = result["new_master"].rsplit(":", 1)
        with redis.Redis(host=master_host, port=int(master_port)) as master:
            stored = [json.loads(fields[b"e"]) for _, fields in master.xrange(f"jobs:{job_id}:events")]
        assert [e["type"] for e in stored].count("job.done") == 1

        # Fully back within 15 s of the promotion: readiness, chat, job events, a new job.
        back = {"readiness names the new master": result["ready_at"],
                "chat": result["heard"][0][0],
                "job events": max(first_event_after),
                "a new job ran": result["new_job_done_at"]}
        took = {what: round(at - promoted_at, 2) for what, at in back.items()}
        print(f"promoted {promoted_at - result['killed_at']:.2f}s after the kill; back after the promotion: {took}; "
              f"readiness before: {result['not_ready'][-2:]}")
        assert max(took.values()) <= BACK_WITHIN_SECONDS, (took, result["not_ready"][-3:], live.log_tail(80))
