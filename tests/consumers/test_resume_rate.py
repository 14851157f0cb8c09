"""Resume frames on /ws/jobs/ are rate-limited per socket (WS_RESUME_RATE_PER_SECOND, bursts of
WS_RESUME_BURST): error frames, then close 4429 after WS_RESUME_STRIKES of them."""
import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from basic.jobs.publish import push_job_event
from basic.models import Job

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
async def job_socket(connect, alice):
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    await asyncio.to_thread(push_job_event, "job.progress", job_id=job.id, owner_id=alice.id, status="running",
                            progress=5)
    communicator, _ = await connect(f"/ws/jobs/{job.id}/", token=alice.token)
    assert (await communicator.receive_json_from(5))["type"] == "job.snapshot"
    return communicator


async def test_a_burst_is_served_then_error_frames_then_close_4429(job_socket, settings):
    settings.WS_RESUME_RATE_PER_SECOND = 0.001  # no refill while the test runs
    settings.WS_RESUME_STRIKES = 3
    for _ in range(settings.WS_RESUME_BURST + 4):
        await job_socket.send_json_to({"type": "resume", "after": 0})
    frames, code = await receive_until_closed(job_socket, timeout=5)
    replies = [json.loads(frame["text"]) for frame in frames]
    assert [r["type"] for r in replies[:10]] == ["job.progress"] * 10  # each resume replays seq 1
    assert [(r["type"], r["code"]) for r in replies[10:]] == [("error", "rate_limited")] * 4
    assert replies[-1]["detail"].endswith("closing.")
    assert code == 4429


async def test_the_bucket_refills(job_socket):
    for _ in range(10):  # the default burst
        await job_socket.send_json_to({"type": "resume", "after": 0})
    assert [(await job_socket.receive_json_from(5))["type"] for _ in range(10)] == ["job.progress"] * 10
    await job_socket.send_json_to({"type": "resume", "after": 0})
    assert (await job_socket.receive_json_from(5))["code"] == "rate_limited"
    await asyncio.sleep(0.25)  # 5 a second: one more token
    await job_socket.send_json_to({"type": "resume", "after": 0})
    assert (await job_socket.receive_json_from(5))["type"] == "job.progress"
    await job_socket.send_json_to({"type": "ping"})  # other frames are not limited
    assert await job_socket.receive_json_from(5) == {"type": "pong"}
    await close_all(job_socket)
