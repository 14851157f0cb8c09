"""The worker-side pusher delivers to real channel-layer group members, like group_send would."""
import asyncio
import uuid

import pytest
from channels.layers import get_channel_layer

from basic import helpers
from basic.events import job_group, user_group


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
    monkeypatch.setattr(helpers.time, "sleep", lambda s: None)
    assert helpers.push_job_event("job.progress", job_id=uuid.uuid4(), owner_id=None, status="running",
                                  progress=1) is None


def test_terminal_push_is_retried_until_it_lands(monkeypatch):
    import redis

    calls = []
    real_append = helpers.event_store.append_event

    def flaky(job_id, event):
        calls.append(1)
        if len(calls) < 3:
            raise redis.ConnectionError("blip")
        return real_append(job_id, event)

    monkeypatch.setattr(helpers.event_store, "append_event", flaky)
    monkeypatch.setattr(helpers.time, "sleep", lambda s: None)
    sent = helpers.push_job_event("job.done", job_id=uuid.uuid4(), owner_id=None, status="done", progress=100)
    assert sent is not None and sent["seq"] == 1
    assert len(calls) == 3
