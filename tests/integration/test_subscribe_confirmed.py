"""Joining a group returns only once Redis has the subscription.

A resuming chat socket joins its room, then reads what it missed from the room's history. redis-py's
`subscribe` only writes the SUBSCRIBE; a Redis that was paused (SIGSTOP, a slow fork, a VM pause)
serves its clients' queued commands in any order once it resumes, so the history read could run
first and a message stored and published between the two reached that socket neither way. The
chaos soak lost one such delivery in 10,027 (seed 671699, a Redis paused while a member rejoined).
These tests pause a private Redis of their own.
"""
import asyncio
import os
import signal
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from redis.exceptions import RedisError

from basic.ops import stack
from basic.realtime import channel_layer
from basic.realtime.channel_layer import ResilientPubSubChannelLayer

pytestmark = pytest.mark.asyncio


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """(port, pid) of a Redis this test may pause."""
    port = stack.free_port()
    process = stack.start_redis(port, tmp_path / "redis")
    try:
        yield port, process.pid
    finally:
        os.kill(process.pid, signal.SIGCONT)
        stack.stop(process)


def subscribers(port: int, channel: str) -> int:
    client = redis.Redis(port=port, socket_timeout=5)
    try:
        return dict(client.pubsub_numsub(channel))[channel.encode()]
    finally:
        client.close()


async def joined_layer(port: int) -> tuple[ResilientPubSubChannelLayer, str]:
    """A layer whose subscriber connection is up (one group joined while Redis runs)."""
    layer = ResilientPubSubChannelLayer(hosts=[f"redis://127.0.0.1:{port}/0"], prefix=uuid.uuid4().hex)
    channel = await layer.new_channel()
    await layer.group_add("warm", channel)
    return layer, channel


async def test_a_join_while_redis_is_paused_returns_once_redis_has_the_subscription(own_redis):
    port, pid = own_redis
    layer, channel = await joined_layer(port)
    try:
        group_channel = layer._get_layer()._get_group_channel_name("room")
        os.kill(pid, signal.SIGSTOP)
        try:
            join = asyncio.create_task(layer.group_add("room", channel))
            second = asyncio.create_task(layer.group_add("room", await layer.new_channel()))
            await asyncio.sleep(0.5)
            # Before the fix both were done here: the SUBSCRIBE sat unsent-to-Redis in a buffer.
            assert not join.done() and not second.done()
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(asyncio.gather(join, second), 5)
        # Whatever the joiner sends next reaches Redis after the subscription.
        assert subscribers(port, group_channel) == 1
        # A group subscribed already is joined at once, with no round trip to wait for.
        os.kill(pid, signal.SIGSTOP)
        try:
            await asyncio.wait_for(layer.group_add("room", await layer.new_channel()), 0.5)
        finally:
            os.kill(pid, signal.SIGCONT)
    finally:
        await layer.flush()


async def test_a_join_redis_never_confirms_fails_as_an_outage_and_a_later_join_succeeds(own_redis, monkeypatch):
    """The consumer turns a RedisError from its join into close 1013 (try again later)."""
    monkeypatch.setattr(channel_layer, "SUBSCRIBE_CONFIRM_SECONDS", 0.3)
    port, pid = own_redis
    layer, channel = await joined_layer(port)
    try:
        os.kill(pid, signal.SIGSTOP)
        try:
            with pytest.raises(RedisError, match="did not confirm"):
                await layer.group_add("room", channel)
        finally:
            os.kill(pid, signal.SIGCONT)
        await asyncio.wait_for(layer.group_add("room", channel), 5)
        assert subscribers(port, layer._get_layer()._get_group_channel_name("room")) == 1
    finally:
        await layer.flush()
