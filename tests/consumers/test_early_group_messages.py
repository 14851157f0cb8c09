"""A socket is a member of its groups from the moment it joins, before its handshake is answered:
a message that arrives in between is held and sent right after the accept, not sent on an
unaccepted socket (Daphne refused it with "Socket has not been accepted" and it was lost; a crowd
reconnecting to a restarted web process logged hundreds, tests/integration/test_restart_recovery.py)."""
import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from basic.jobs.publish import push_job_event
from basic.models import Job
from basic.realtime import chat
from basic.realtime.consumers import ChatConsumer, UserEventsConsumer

from .conftest import close_all

pytestmark = pytest.mark.django_db(transaction=True)


def messages_while_joining(monkeypatch, consumer: type, publish) -> None:
    """Make `consumer` publish to the group it just joined and wait for the layer to hand it over,
    all before it accepts, as a slow join under a connect storm lets happen."""
    join = consumer.join_group

    async def join_then_a_message(self, group):
        await join(self, group)
        await publish()
        await asyncio.sleep(0.3)

    monkeypatch.setattr(consumer, "join_group", join_then_a_message)


async def test_a_feed_event_published_while_the_socket_joins_comes_after_the_accept(connect, alice, monkeypatch):
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    messages_while_joining(monkeypatch, UserEventsConsumer, lambda: asyncio.to_thread(
        push_job_event, "job.progress", job_id=job.id, owner_id=alice.id, status="running", progress=10))
    communicator, connected = await connect("/ws/events/", token=alice.token)
    assert connected
    frame = await communicator.receive_json_from(5)  # before the fix: the accept message, not a frame
    assert (frame["type"], frame["job"], frame["progress"]) == ("job.progress", str(job.id), 10), frame
    assert await communicator.receive_nothing(0.3)
    await close_all(communicator)


async def test_chat_messages_said_while_the_socket_joins_come_after_the_accept_in_order(connect, alice, monkeypatch):
    from channels.layers import get_channel_layer

    async def say_two():
        layer = get_channel_layer()
        for text in ("first", "second"):
            await layer.group_send(chat.chat_group("early"), {"type": chat.LAYER_CHAT_MESSAGE, "room": "early",
                                                             "message": text, "sender": "bob", "ts": "now"})
    messages_while_joining(monkeypatch, ChatConsumer, say_two)
    communicator, connected = await connect("/ws/chat/early/", token=alice.token)
    assert connected
    frames = [await communicator.receive_from(5) for _ in range(2)]
    assert [json.loads(f)["message"] for f in frames] == ["first", "second"]
    await close_all(communicator)
