"""A consumer that fails, wherever and however (connect, a frame, a group message, disconnect), on
every socket route, anonymous included: the client gets an error frame and close 1011, and the
consumer leaves its groups, frees its socket slot and stops its tasks, exactly as after a normal
close. Issue 22: crashed sockets stayed in their groups until restart (after 300 crashes each
message to the room went to 301 members)."""
import asyncio
import json
import re
from pathlib import Path

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from basic.core.keys import socket_slots_key
from basic.core.redis_clients import sync_redis
from basic.jobs import events
from basic.models import Job
from basic.realtime import chat, close_codes
from basic.realtime.consumers import (
    ChatConsumer,
    JobEventsConsumer,
    SeedChatConsumer,
    UserEventsConsumer,
    ValidatingJsonConsumer,
)
from basic.realtime.feed_watch import FEEDS

from .conftest import close_all

pytestmark = pytest.mark.django_db(transaction=True)

CRASHES = 25
ADDRESS = "10.22.0.1"


class Boom(Exception):
    """The deliberate failure."""


async def boom(*args, **kwargs):
    raise Boom("deliberate")


@pytest.fixture
async def routes(alice, settings):
    """(path, consumer class, group, token, slot owner) for every socket route."""
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    return {
        "anonymous /chat/": ("/chat/", SeedChatConsumer, chat.chat_group(settings.SEED_CHAT_ROOM), None,
                             f"ip:{ADDRESS}"),
        "/ws/chat/": ("/ws/chat/crashy/", ChatConsumer, chat.chat_group("crashy"), alice.token, f"user:{alice.pk}"),
        "/ws/events/": ("/ws/events/", UserEventsConsumer, events.user_group(alice.pk), alice.token,
                        f"user:{alice.pk}"),
        "/ws/jobs/": (f"/ws/jobs/{job.id}/", JobEventsConsumer, events.job_group(str(job.id)), alice.token,
                      f"user:{alice.pk}"),
    }


def members(group: str) -> set[str]:
    """This process's members of `group`, as the channel layer fans out to them."""
    layer = get_channel_layer()._get_layer()
    return set(layer.groups.get(layer._get_group_channel_name(group), ()))


def resync_tasks() -> list[asyncio.Task]:
    """Feed timers (basic/realtime/feed_watch.py) and the socket resyncs they start."""
    return [task for task in asyncio.all_tasks()
            if any(name in repr(task.get_coro()) for name in ("FeedWatch._watch", "EventFeedConsumer._resync"))]


async def ended_by_crash(communicator) -> tuple[list[dict], int | None]:
    """What the client got until the socket ended: frames and close code (None: the app raised)."""
    frames = []
    try:
        while True:
            message = await communicator.receive_output(5)
            if message["type"] == "websocket.close":
                return frames, message.get("code")
            if message["type"] == "websocket.send":
                frames.append(json.loads(message["text"]))
    except Boom:
        return frames, None


async def crash_once(connect, site: str, path: str, group: str, token: str | None):
    communicator, _ = await connect(path, token=token, client=ADDRESS)
    if site == "connect":
        return await ended_by_crash(communicator)
    assert len(members(group)) == 1, "the socket joined its group"
    if site == "frame":
        await communicator.send_json_to({"type": "ping", "message": "hi"})
    elif site == "group message":  # a message no handler takes, straight to the socket's channel
        [channel] = members(group)
        await get_channel_layer().send(channel, {"type": "no.such.handler"})
    elif site == "disconnect":
        await communicator.disconnect()
        return [], close_codes.CLOSE_INTERNAL_ERROR
    return await ended_by_crash(communicator)


@pytest.mark.parametrize("route", ["anonymous /chat/", "/ws/chat/", "/ws/events/", "/ws/jobs/"])
@pytest.mark.parametrize("site", ["connect", "frame", "group message", "disconnect"])
async def test_after_many_crashes_a_route_has_no_leftover_members_slots_or_tasks(
        connect, routes, monkeypatch, settings, route, site):
    path, consumer, group, token, slot_owner = routes[route]
    settings.WS_MAX_PER_USER = settings.WS_MAX_ANONYMOUS_PER_IP = 3  # leaked slots would lock the next one out
    patched = {"connect": "accept", "frame": "websocket_receive", "disconnect": "disconnect"}.get(site)
    if patched:
        monkeypatch.setattr(consumer, patched, boom)
    for _ in range(CRASHES):
        frames, code = await crash_once(connect, site, path, group, token)
        assert code == close_codes.CLOSE_INTERNAL_ERROR, (site, code)
        if site != "disconnect":
            assert frames[-1]["code"] == "internal_error", frames
        assert members(group) == set(), f"a crashed socket stayed in {group}"
    layer = get_channel_layer()._get_layer()
    assert not layer.direct_handlers, "crashed sockets still take group messages"
    assert sync_redis().zcard(socket_slots_key(slot_owner)) == 0, "crashed sockets kept their slots"
    await asyncio.sleep(0)
    assert not resync_tasks(), "a crashed job socket's resync task still runs"
    assert FEEDS.watching() == 0, "a crashed job socket is still in its feed's resync round"
    monkeypatch.undo()

    normal, accepted = await connect(path, token=token, client=ADDRESS)  # and the route still serves
    assert accepted
    assert members(group) != set() and len(members(group)) == 1
    await close_all(normal)
    assert members(group) == set()


async def test_three_hundred_anonymous_chat_crashes_leave_the_room_with_its_real_members(connect, monkeypatch,
                                                                                        settings):
    """The issue's numbers: 300 crashes on the anonymous `/chat/`, then a message reaches only the
    one socket really there."""
    listener, _ = await connect("/chat/", client="10.22.0.2")
    monkeypatch.setattr(SeedChatConsumer, "websocket_receive", boom)
    for _ in range(300):
        communicator, _ = await connect("/chat/", client=ADDRESS)
        await communicator.send_to(text_data="[" * 3000)
        assert (await ended_by_crash(communicator))[1] == close_codes.CLOSE_INTERNAL_ERROR
    monkeypatch.undo()
    speaker, _ = await connect("/chat/", client="10.22.0.3")
    assert len(members(chat.chat_group(settings.SEED_CHAT_ROOM))) == 2  # the listener and the speaker
    await speaker.send_json_to({"message": "only two of us"})
    assert await listener.receive_json_from(5) == {"message": "only two of us"}
    await close_all(listener, speaker)


def test_consumers_join_groups_only_through_the_base():
    """`join_group` is what records a group to leave; a direct group_add would bypass it."""
    consumers = Path(ValidatingJsonConsumer.__module__.replace(".", "/")).parent
    for module in Path(__file__).resolve().parents[2].joinpath(consumers).glob("*.py"):
        calls = re.findall(r"channel_layer\.group_add\(", module.read_text())
        assert len(calls) == (1 if module.name == "base.py" else 0), module
