"""The worker-side pusher delivers to real channel-layer group members, like group_send would."""
import asyncio
import uuid

import pytest
from channels.layers import get_channel_layer

from basic.jobs import publish as helpers
from basic.jobs.events import job_group, user_group


@pytest.mark.parametrize("pusher", ["redis", "async_to_sync"])
async def test_pushed_event_reaches_job_and_user_groups(pusher, settings, monkeypatch):
    settings.JOB_EVENT_PUSHER = pusher
    monkeypatch.setattr(helpers, "_pusher", None)
    layer = get_channel_layer()
    job_id = uuid.uuid4()
    job_channel = await layer.new_channel()
    user_channel = await layer.new_channel()
    await layer.group_add(job_group(job_id), job_channel)
    await layer.group_add(user_group(7), user_channel)

    sent = await asyncio.to_thread(
        helpers.push_job_event, "job.progress", job_id=job_id, owner_id=7, status="running", progress=42,
        message="halfway",
    )
    for channel in (job_channel, user_channel):
        message = await asyncio.wait_for(layer.receive(channel), 5)
        assert message["type"] == "job.event"
        assert message["event"] == sent
    assert sent["seq"] == 1 and sent["progress"] == 42 and sent["job"] == str(job_id)
    monkeypatch.setattr(helpers, "_pusher", None)


def test_progress_push_survives_redis_being_down(settings, monkeypatch):
    import redis

    def down(*args, **kwargs):
        raise redis.ConnectionError("down")

    monkeypatch.setattr(helpers.event_store, "append_event", down)
    monkeypatch.setattr(helpers.event_store, "append_and_publish", down)
    monkeypatch.setattr(helpers.time, "sleep", lambda s: None)
    assert helpers.push_job_event("job.progress", job_id=uuid.uuid4(), owner_id=None, status="running",
                                  progress=1) is None


def test_terminal_push_is_retried_until_it_lands(monkeypatch):
    import redis

    calls = []
    real_append = helpers.event_store.append_and_publish

    def flaky(*args):
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("blip")
        return real_append(*args)

    monkeypatch.setattr(helpers.event_store, "append_and_publish", flaky)
    monkeypatch.setattr(helpers.time, "sleep", lambda s: None)
    sent = helpers.push_job_event("job.done", job_id=uuid.uuid4(), owner_id=None, status="done", progress=100)
    assert sent is not None and sent["seq"] == 1
    assert len(calls) == 3


def test_one_round_trip_when_the_layer_reads_redis_msgpack():
    assert helpers.RedisEventPusher().one_trip is True


def test_an_encrypted_layer_gets_serialize_and_two_trips(settings):
    from channels_redis.pubsub import RedisPubSubChannelLayer

    pusher = helpers.RedisEventPusher()
    pusher.layer = RedisPubSubChannelLayer(hosts=[settings.REDIS_URL], symmetric_encryption_keys=["secret"])
    assert pusher.one_trip is False


@pytest.mark.parametrize("one_trip", [True, False])
async def test_both_paths_deliver_the_same_message(one_trip, monkeypatch):
    pusher = helpers.RedisEventPusher()
    pusher._one_trip = one_trip
    monkeypatch.setattr(helpers, "_pusher", pusher)
    layer = get_channel_layer()
    job_id = uuid.uuid4()
    channel = await layer.new_channel()
    await layer.group_add(job_group(job_id), channel)
    sent = await asyncio.to_thread(helpers.push_job_event, "job.failed", job_id=job_id, owner_id=None,
                                   status="failed", progress=3, message='naïve "quotes" \\ ✓ \U0001F600',
                                   error="Traceback: x\ny")
    received = await asyncio.wait_for(layer.receive(channel), 5)
    assert received == {"type": "job.event", "event": sent}
    monkeypatch.setattr(helpers, "_pusher", None)
