"""Redis restarts, with and without its data, lose nothing a user can see (docs/design.md traps 6
and 7), with real processes: a private Redis, Daphne and a gevent worker."""
import asyncio
import json
import time

import httpx
import pytest
import websockets

from tests.integration.test_resilience import SLOW_JOB, check_report, client, follow, start_slow_job, wait_for
from tests.live import live_stack

pytestmark = pytest.mark.integration

FAST_RECOVERY = {"JOB_SOCKET_RESYNC_SECONDS": "1", "JOB_TERMINAL_EVENT_GRACE_SECONDS": "3",
                 "JOB_LEASE_SECONDS": "4", "JOB_REQUEUE_AFTER_SECONDS": "3", "JOB_RESERVED_SECONDS": "3"}


def test_a_redis_that_comes_back_empty_mid_job(stack_root):
    """The lease, the seq counter, the event history and the broker's data all vanish: the run
    takes its lease back, its events reach the open socket again within seconds, seq never goes
    backwards, and the job finishes exactly once."""
    with live_stack(stack_root, "redis-empty", own_redis=True, **SLOW_JOB, **FAST_RECOVERY) as live:
        job_id = start_slow_job(live)

        async def scenario():
            follower = asyncio.create_task(follow(live, job_id, timeout=120))
            await asyncio.to_thread(wait_for, lambda: _progress(live, job_id) >= 15, 60, "progress >= 15%")
            await asyncio.to_thread(live.stop_redis)
            await asyncio.sleep(1)
            await asyncio.to_thread(live.start_redis_again, True)
            return await follower

        events, _reconnects = asyncio.run(scenario())
        live_events = [e for e in events if e["type"] != "job.snapshot"]
        seqs = [e["seq"] for e in live_events]
        assert seqs == sorted(set(seqs)), f"seq went backwards or repeated: {seqs}"
        final = events[-1]
        assert final["type"] == "job.done" or (final["type"] == "job.snapshot" and final["status"] == "done"), final
        assert [e["type"] for e in live_events].count("job.done") <= 1
        log = live.log_tail(400)
        assert "taken over by another run" not in log
        check_report(live, job_id, 4000)


def _progress(live, job_id: str) -> int:
    with client(live) as http:
        return http.get(f"/api/jobs/{job_id}/").json()["progress"]


def test_jobs_queued_before_redis_lost_its_data_still_run(stack_root):
    with live_stack(stack_root, "redis-empty-queued", worker=False, own_redis=True, **FAST_RECOVERY) as live:
        with client(live) as http:
            ids = [http.post("/api/jobs/", json={"kind": "test_steps", "params": {"steps": 2}}).json()["id"]
                   for _ in range(3)]
        live.stop_redis()
        live.start_redis_again(empty=True)  # the broker's queue is gone with everything else
        live.start_worker("after-loss")
        with client(live) as http:
            wait_for(lambda: all(http.get(f"/api/jobs/{i}/").json()["status"] == "done" for i in ids), 60,
                     "the lost jobs to be sent again and finish")
        assert live.log_tail(400).count("(queued) lost its run; queueing it again") >= 3


def test_a_socket_that_connects_while_redis_is_down_is_told_to_come_back(stack_root):
    with live_stack(stack_root, "redis-down-connect", worker=False, own_redis=True) as live:
        live.stop_redis()

        async def connect() -> tuple[dict, int]:
            url = f"{live.ws_url}/ws/chat/lobby/?token={live.token}"
            async with websockets.connect(url, open_timeout=10) as socket:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 10))
                await asyncio.wait_for(socket.wait_closed(), 10)
                return frame, socket.close_code

        frame, code = asyncio.run(connect())
        assert code == 1013
        assert frame["type"] == "error" and frame["code"] == "unavailable"
        assert "127.0.0.1" not in frame["detail"] and "Redis" not in frame["detail"]
        live.start_redis_again()


@pytest.mark.parametrize("empty", [False, True], ids=["with-data", "empty"])
def test_a_chat_message_sent_right_after_redis_returns_arrives(stack_root, empty):
    with live_stack(stack_root, f"redis-chat-{int(empty)}", worker=False, own_redis=True) as live:
        url = f"{live.ws_url}/ws/chat/restart/?token={live.token}"

        async def scenario() -> tuple[dict, float]:
            async with websockets.connect(url) as listener, websockets.connect(url) as speaker:
                await speaker.send(json.dumps({"message": "before"}))
                assert json.loads(await asyncio.wait_for(listener.recv(), 10))["message"] == "before"
                await asyncio.to_thread(live.stop_redis)
                await asyncio.sleep(0.5)
                await asyncio.to_thread(live.start_redis_again, empty)
                back = time.monotonic()
                await asyncio.sleep(1.0)  # "within a second of Redis returning"
                await speaker.send(json.dumps({"message": "after restart"}))
                sent_at = time.monotonic() - back
                while True:
                    frame = json.loads(await asyncio.wait_for(listener.recv(), 10))
                    if frame.get("type") == "chat.message":
                        return frame, sent_at
        try:
            frame, sent_at = asyncio.run(scenario())
        except TimeoutError:
            print((live.media_root.parent / "daphne.log").read_text()[-4000:])
            raise
        assert frame["message"] == "after restart"
        assert sent_at < 1.5
        with httpx.Client(base_url=live.base_url) as http:
            assert http.get("/healthz").status_code == 200


def test_chat_messages_sent_while_the_web_process_resubscribes_arrive_once(stack_root):
    """Redis drops the server's subscriber connection (a blip, a failover, `CLIENT KILL`) while a
    room is talking: the messages published before it has subscribed again still reach every
    socket, each once and in order (channels-redis #256 loses them)."""
    import redis

    with live_stack(stack_root, "redis-chat-blip", worker=False, own_redis=True) as live:
        url = f"{live.ws_url}/ws/chat/blip/?token={live.token}"
        admin = redis.Redis.from_url(live.env["REDIS_URL"])
        sent = [f"message {i}" for i in range(12)]

        async def scenario() -> list[str]:
            async with websockets.connect(url) as listener, websockets.connect(url) as speaker:
                await speaker.send(json.dumps({"message": "before"}))
                assert json.loads(await asyncio.wait_for(listener.recv(), 10))["message"] == "before"
                killed = await asyncio.to_thread(admin.client_kill_filter, _type="pubsub")
                assert killed >= 1
                for message in sent:
                    await speaker.send(json.dumps({"message": message}))
                    await asyncio.sleep(0.05)
                got = []
                while len(got) < len(sent):
                    frame = json.loads(await asyncio.wait_for(listener.recv(), 10))
                    if frame.get("type") == "chat.message":
                        got.append(frame["message"])
                with pytest.raises(TimeoutError):  # and nothing twice
                    await asyncio.wait_for(listener.recv(), 1)
                return got

        assert asyncio.run(scenario()) == sent
        daphne_log = (live.media_root.parent / "daphne.log").read_text()
        assert "published while the subscriber reconnected" in daphne_log  # they were lost, then sent
