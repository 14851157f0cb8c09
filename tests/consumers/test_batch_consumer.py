"""`/ws/batches/{id}/`: the job socket's rules for a batch: ownership (4404), a snapshot with its
members, `?after=` replay, gap fill from the batch's stream, one end; and its events on `/ws/events/`."""
import asyncio
import json
import uuid

import pytest
from channels.db import database_sync_to_async

from basic.jobs import event_store, transitions
from basic.models import Batch, Job

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def make_batch(alice):
    @database_sync_to_async
    def make(members: int = 2) -> tuple[Batch, list[Job]]:
        batch = Batch.objects.create(owner=alice, total=members)
        jobs = [Job.objects.create(kind="students_by_age", owner=alice, batch=batch) for _ in range(members)]
        return batch, jobs
    return make


def member_progress(job: Job, progress: int, status: str = "running"):
    """A member's event as the lifecycle pushes it (transitions.push updates its batch)."""
    def push():
        job.status, job.progress = status, progress
        Job.objects.filter(id=job.id).update(status=status, progress=progress)
        transitions.push(job, "job.progress")
    return asyncio.to_thread(push)


def member_done(job: Job):
    return asyncio.to_thread(lambda: transitions.finish(job, Job.Status.DONE, progress=100, result={}))


async def frames_until(communicator, end_type: str, timeout: float = 5) -> list[dict]:
    frames = []
    while not frames or frames[-1]["type"] != end_type:
        frames.append(await communicator.receive_json_from(timeout))
    return frames


async def test_snapshot_with_members_then_aggregate_events_then_one_end(connect, alice, make_batch):
    batch, (first, second) = await make_batch()
    communicator, connected = await connect(f"/ws/batches/{batch.id}/", token=alice.token)
    assert connected
    snapshot = await communicator.receive_json_from(5)
    assert (snapshot["type"], snapshot["batch"], snapshot["seq"], snapshot["total"], snapshot["owner"]) == (
        "batch.snapshot", str(batch.id), 0, 2, "alice")
    assert [m["job"] for m in snapshot["members"]] == [str(first.id), str(second.id)]
    await member_progress(first, 50)
    await member_progress(first, 50)  # the same aggregate: nothing new is sent
    await member_done(first)
    await member_progress(second, 40)
    await member_done(second)
    frames = await frames_until(communicator, "batch.done")
    assert [f["seq"] for f in frames] == list(range(1, len(frames) + 1))
    assert [f["progress"] for f in frames] == [25, 50, 70, 100, 100]
    assert frames[-1]["done"] == 2 and frames[-1]["status"] == "done"
    assert await communicator.receive_nothing(0.3)
    await close_all(communicator)


async def test_snapshot_members_carry_the_seq_their_row_stands_for(connect, alice, make_batch):
    """The console drops a member's snapshot that is behind the member's last event it saw on the
    user feed (a snapshot read before the member ended can arrive after its end): it needs the
    member's own seq to tell."""
    batch, (first, second) = await make_batch()
    await member_done(first)
    await database_sync_to_async(first.refresh_from_db)()
    communicator, _ = await connect(f"/ws/batches/{batch.id}/", token=alice.token)
    members = {m["job"]: m for m in (await communicator.receive_json_from(5))["members"]}
    assert first.last_seq > 0
    assert (members[str(first.id)]["status"], members[str(first.id)]["seq"]) == ("done", first.last_seq)
    assert (members[str(second.id)]["status"], members[str(second.id)]["seq"]) == ("queued", 0)
    await close_all(communicator)


async def test_after_replays_the_missed_aggregate_events_without_a_gap(connect, alice, make_batch):
    batch, (first, second) = await make_batch()
    for pct in (20, 40, 60):
        await member_progress(first, pct)
    communicator, _ = await connect(f"/ws/batches/{batch.id}/?after=1", token=alice.token)
    assert [(await communicator.receive_json_from(5))["seq"] for _ in range(2)] == [2, 3]
    await member_done(first)
    await member_done(second)
    frames = await frames_until(communicator, "batch.done")
    assert [f["seq"] for f in frames] == list(range(4, 4 + len(frames)))
    await close_all(communicator)


async def test_an_event_lost_by_the_live_layer_is_filled_from_the_batch_stream(connect, alice, make_batch):
    batch, (first, second) = await make_batch()
    communicator, _ = await connect(f"/ws/batches/{batch.id}/", token=alice.token)
    await communicator.receive_json_from(5)
    # Stored but never published: as if the pub/sub layer dropped it.
    await asyncio.to_thread(event_store.aggregate_batch, batch.id, member=first.id, status="running", progress=10,
                            total=2, fields={"type": "batch.progress", "batch": str(batch.id), "status": "queued",
                                             "ts": "2026-01-01T00:00:00.000+00:00"},
                            message_type="job.event", channels=[])
    await member_progress(first, 30)
    assert [(await communicator.receive_json_from(5))["seq"] for _ in range(2)] == [1, 2]
    await close_all(communicator)


async def test_an_ended_batch_gets_a_terminal_snapshot_and_an_after_past_its_end_ends_quietly(
        connect, alice, make_batch):
    batch, jobs = await make_batch(1)
    await member_done(jobs[0])
    communicator, _ = await connect(f"/ws/batches/{batch.id}/", token=alice.token)
    snapshot = await communicator.receive_json_from(5)
    assert (snapshot["status"], snapshot["done"], snapshot["progress"]) == ("done", 1, 100)
    assert snapshot["finished"] and snapshot["seq"] == 2
    late, _ = await connect(f"/ws/batches/{batch.id}/?after=2", token=alice.token)
    assert await late.receive_nothing(0.3)
    await close_all(communicator, late)


@pytest.mark.parametrize("who", ["bob", "nobody"])
async def test_another_users_or_an_unknown_batch_closes_4404_with_a_reason(connect, alice, bob, make_batch, who):
    batch, _ = await make_batch(1)
    path = f"/ws/batches/{batch.id if who == 'bob' else uuid.uuid4()}/"
    communicator, _ = await connect(path, token=bob.token if who == "bob" else alice.token)
    frames, code = await receive_until_closed(communicator)
    assert code == 4404 and json.loads(frames[0]["text"]) == {
        "type": "error", "code": "not_found", "detail": "No such batch."}


async def test_staff_may_watch_any_batch(connect, charlie, make_batch):
    batch, _ = await make_batch(1)
    communicator, _ = await connect(f"/ws/batches/{batch.id}/", token=charlie.token)
    assert (await communicator.receive_json_from(5))["type"] == "batch.snapshot"
    await close_all(communicator)


async def test_bad_after_closes_4400(connect, alice, make_batch):
    batch, _ = await make_batch(1)
    communicator, _ = await connect(f"/ws/batches/{batch.id}/?after=x", token=alice.token)
    _, code = await receive_until_closed(communicator)
    assert code == 4400


async def test_the_owners_feed_gets_the_batch_events_too(connect, alice, make_batch):
    batch, jobs = await make_batch(1)
    feed, _ = await connect("/ws/events/", token=alice.token)
    await member_done(jobs[0])
    types = [(await feed.receive_json_from(5))["type"] for _ in range(3)]
    assert sorted(types) == ["batch.done", "batch.progress", "job.done"]
    await close_all(feed)
