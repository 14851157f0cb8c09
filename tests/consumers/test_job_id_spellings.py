"""`/ws/jobs/<id>/` takes any spelling of the job's UUID: the same snapshot, and the live events
published to the canonical id's group. Anything else is 4404; never an HTTP 500 or a 1011."""
import asyncio
import json
import uuid

import pytest
from channels.db import database_sync_to_async

from basic.jobs.publish import push_job_event
from basic.models import Job

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


def spellings(job_id: uuid.UUID) -> list[str]:
    text = str(job_id)
    return [text.upper(), job_id.hex, job_id.hex.upper(), "{" + text + "}", "{" + job_id.hex.upper() + "}",
            f"urn:uuid:{text}", f"urn:uuid:{text.upper()}", "%7B" + text + "%7D"]


@database_sync_to_async
def job_of(user) -> Job:
    return Job.objects.create(kind="students_by_age", owner=user)


async def test_every_spelling_gets_the_snapshot_and_live_events(connect, alice):
    job = await job_of(alice)
    sockets = []
    for spelling in spellings(job.id):
        communicator, connected = await connect(f"/ws/jobs/{spelling}/", token=alice.token)
        assert connected, spelling
        snapshot = await communicator.receive_json_from(5)
        assert (snapshot["type"], snapshot["job"]) == ("job.snapshot", str(job.id)), spelling
        sockets.append(communicator)
    await asyncio.to_thread(push_job_event, "job.progress", job_id=job.id, owner_id=alice.id, status="running",
                            progress=40)
    for spelling, communicator in zip(spellings(job.id), sockets, strict=True):
        event = await communicator.receive_json_from(5)
        assert (event["type"], event["job"], event["progress"]) == ("job.progress", str(job.id), 40), spelling
    await close_all(*sockets)


async def test_resume_works_in_another_spelling(connect, alice):
    job = await job_of(alice)
    for progress in (10, 20, 30):
        await asyncio.to_thread(push_job_event, "job.progress", job_id=job.id, owner_id=alice.id,
                                status="running", progress=progress)
    communicator, _ = await connect(f"/ws/jobs/{{{job.id.hex.upper()}}}/?after=1", token=alice.token)
    assert [(await communicator.receive_json_from(5))["seq"] for _ in range(2)] == [2, 3]
    await close_all(communicator)


@pytest.mark.parametrize("job_id", ["{}", "urn:uuid:", "g" * 32, "1" * 31, "1" * 33, "{{" + "1" * 32 + "}",
                                    "urn:uuid:" + "z" * 36,
                                    "URN:UUID:" + "1" * 32, "uuid", "%20", "x" * 64, "x" * 300, "..", "a:b"])
async def test_malformed_ids_close_4404(connect, alice, job_id):
    communicator, connected = await connect(f"/ws/jobs/{job_id}/", token=alice.token)
    assert connected, job_id
    frames, code = await receive_until_closed(communicator)
    assert code == 4404, job_id
    assert json.loads(frames[0]["text"])["code"] == "not_found"


async def test_another_users_job_is_4404_in_every_spelling(connect, alice, bob):
    job = await job_of(alice)
    for spelling in spellings(job.id):
        communicator, _ = await connect(f"/ws/jobs/{spelling}/", token=bob.token)
        _frames, code = await receive_until_closed(communicator)
        assert code == 4404, spelling
