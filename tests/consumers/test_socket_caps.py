"""Open sockets are capped per signed-in user (WS_MAX_PER_USER) and per anonymous client address
(WS_MAX_ANONYMOUS_PER_IP), across every socket path and web process: error frame + close 4429."""
import asyncio
import json
import time

import pytest
from channels.db import database_sync_to_async

from basic.core.keys import socket_slots_key
from basic.core.redis_clients import sync_redis
from basic.models import Job
from basic.realtime import limits as ws_limits

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


async def assert_refused_4429(communicator, per: str):
    frames, code = await receive_until_closed(communicator)
    assert code == 4429
    error = json.loads(frames[0]["text"])
    assert (error["type"], error["code"]) == ("error", "too_many_sockets")
    assert f"per {per}" in error["detail"]


async def test_sockets_per_user_are_capped_across_paths(connect, alice, bob, settings):
    settings.WS_MAX_PER_USER = 3
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    opened = [(await connect(path, token=alice.token))[0]
              for path in ("/ws/events/", f"/ws/jobs/{job.id}/", "/ws/chat/lobby/")]
    for path in ("/ws/events/", f"/ws/jobs/{job.id}/", "/ws/chat/lobby/"):
        extra, connected = await connect(path, token=alice.token)
        assert connected  # accepted only to say why, then closed
        await assert_refused_4429(extra, "user")
    bobs, _ = await connect("/ws/events/", token=bob.token)  # others are not affected
    await bobs.send_json_to({"type": "ping"})
    assert await bobs.receive_json_from(5) == {"type": "pong"}
    await opened[0].disconnect()  # closing one frees its slot
    again, _ = await connect("/ws/events/", token=alice.token)
    await again.send_json_to({"type": "ping"})
    assert await again.receive_json_from(5) == {"type": "pong"}
    await close_all(*opened[1:], bobs, again)
    assert sync_redis().zcard(socket_slots_key(f"user:{alice.pk}")) == 0


async def test_anonymous_sockets_are_capped_per_address(connect, settings):
    settings.WS_MAX_ANONYMOUS_PER_IP = 2
    opened = [(await connect("/chat/", client="10.0.0.1"))[0] for _ in range(2)]
    refused, _ = await connect("/chat/", client="10.0.0.1")
    await assert_refused_4429(refused, "address")
    elsewhere, _ = await connect("/chat/", client="10.0.0.2")
    await elsewhere.send_json_to({"message": "hi"})
    assert await elsewhere.receive_json_from(5) == {"message": "hi"}
    await close_all(*opened, elsewhere)


async def test_a_socket_awaiting_its_auth_frame_counts_as_anonymous_until_it_signs_in(connect, alice, settings):
    settings.WS_MAX_ANONYMOUS_PER_IP = 1
    waiting, _ = await connect("/ws/events/", client="10.0.0.3")
    refused, _ = await connect("/ws/events/", client="10.0.0.3")
    await assert_refused_4429(refused, "address")
    await waiting.send_json_to({"type": "auth", "token": alice.token})
    await waiting.send_json_to({"type": "ping"})
    assert await waiting.receive_json_from(5) == {"type": "pong"}
    assert sync_redis().zcard(socket_slots_key("ip:10.0.0.3")) == 0
    assert sync_redis().zcard(socket_slots_key(f"user:{alice.pk}")) == 1
    another, _ = await connect("/ws/events/", client="10.0.0.3")  # the address's slot is free again
    assert await another.receive_nothing(0.2)  # open, waiting for its auth frame
    await close_all(waiting, another)


async def test_slots_of_a_crashed_process_expire(connect, alice, settings):
    """A process killed with its sockets open never releases them: their claims lapse instead."""
    settings.WS_MAX_PER_USER = 2
    key = socket_slots_key(f"user:{alice.pk}")
    lapsed = time.time() - 1
    sync_redis().zadd(key, {"dead-process-socket-1": lapsed, "dead-process-socket-2": lapsed})
    communicator, _ = await connect("/ws/events/", token=alice.token)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(5) == {"type": "pong"}
    assert sync_redis().zcard(key) == 1
    await close_all(communicator)


async def test_a_live_socket_keeps_its_claim_fresh(connect, alice, monkeypatch):
    monkeypatch.setattr(ws_limits, "SLOT_TTL_SECONDS", 1)
    monkeypatch.setattr(ws_limits, "SLOT_REFRESH_SECONDS", 0.2)
    communicator, _ = await connect("/ws/events/", token=alice.token)
    key = socket_slots_key(f"user:{alice.pk}")
    await asyncio.sleep(2.5)  # more than twice the claim's lifetime
    (member, expiry), = sync_redis().zrange(key, 0, -1, withscores=True)
    assert expiry >= time.time()
    await close_all(communicator)
    assert sync_redis().zcard(key) == 0


async def test_redis_trouble_lets_sockets_in_rather_than_failing(connect, alice, monkeypatch):
    async def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(ws_limits, "claim_slot", down)
    communicator, _ = await connect("/ws/events/", token=alice.token)
    await communicator.send_json_to({"type": "ping"})
    assert await communicator.receive_json_from(5) == {"type": "pong"}
    await close_all(communicator)


async def test_one_task_per_process_keeps_every_claim_and_stops_with_the_last_socket(connect, alice, bob, monkeypatch):
    monkeypatch.setattr(ws_limits, "SLOT_TTL_SECONDS", 1)
    monkeypatch.setattr(ws_limits, "SLOT_REFRESH_SECONDS", 0.2)
    sockets = [(await connect("/ws/events/", token=user.token))[0] for user in (alice, alice, bob)]
    keeper = ws_limits.slot_keeper()
    assert len(keeper.claims) == 3 and not keeper.task.done()
    await asyncio.sleep(2.5)  # more than twice a claim's lifetime
    for user, count in ((alice, 2), (bob, 1)):
        claims = sync_redis().zrange(socket_slots_key(f"user:{user.pk}"), 0, -1, withscores=True)
        assert len(claims) == count and all(expiry >= time.time() for _member, expiry in claims)
    await close_all(*sockets)
    assert keeper.claims == {}
    await asyncio.sleep(0.5)
    assert keeper.task.done()


def count_script_calls(monkeypatch) -> list[int]:
    """The sockets (keys) in each call of the slots' script."""
    script = ws_limits._scripts[ws_limits._SLOTS]
    sent: list[int] = []

    async def counted(keys, args, client):
        sent.append(len(keys))
        return await script(keys=keys, args=args, client=client)

    monkeypatch.setitem(ws_limits._scripts, ws_limits._SLOTS, counted)
    return sent


async def test_claims_asked_together_share_one_round_trip_and_keep_the_cap(monkeypatch):
    sent = count_script_calls(monkeypatch)
    who = "user:storm"
    claimed = await asyncio.gather(*(ws_limits.claim_slot(who, f"socket-{i}", 3) for i in range(10)))
    assert claimed == [True] * 3 + [False] * 7  # in the order asked
    assert sent == [10]  # one call for the ten
    assert sorted(sync_redis().zrange(socket_slots_key(who), 0, -1)) == [b"socket-0", b"socket-1", b"socket-2"]
    # Asked in one turn, releases go first: a client that closes and comes back at once gets in.
    answers = await asyncio.gather(ws_limits.claim_slot(who, "socket-back", 3),
                                   ws_limits.release_slot(who, "socket-0"))
    assert answers == [True, None]
    assert sent == [10, 2]  # the release and the claim in one call
    assert sorted(sync_redis().zrange(socket_slots_key(who), 0, -1)) == [b"socket-1", b"socket-2", b"socket-back"]
    await asyncio.gather(*(ws_limits.release_slot(who, member) for member in ("socket-1", "socket-2", "socket-back")))
    assert sync_redis().zcard(socket_slots_key(who)) == 0


async def test_a_batch_larger_than_one_script_is_split(monkeypatch):
    monkeypatch.setattr(ws_limits.SlotBatches, "MAX_BATCH", 4)
    sent = count_script_calls(monkeypatch)
    claimed = await asyncio.gather(*(ws_limits.claim_slot(f"ip:10.1.0.{i % 3}", f"s{i}", 2) for i in range(10)))
    assert sent == [4, 4, 2]  # in calls of at most MAX_BATCH, in order
    assert claimed == [True] * 6 + [False] * 4  # two per address, the first asked
    await asyncio.gather(*(ws_limits.release_slot(f"ip:10.1.0.{i % 3}", f"s{i}") for i in range(10)))


async def test_every_socket_of_a_batch_hears_that_redis_is_down(monkeypatch):
    from redis.asyncio import Redis
    from redis.asyncio.retry import Retry
    from redis.backoff import NoBackoff

    down = Redis(port=1, socket_connect_timeout=0.5, retry=Retry(NoBackoff(), 0))
    monkeypatch.setattr(ws_limits, "async_redis", lambda: down)
    answers = await asyncio.gather(*(ws_limits.claim_slot("user:down", f"s{i}", 5) for i in range(3)),
                                   ws_limits.release_slot("user:down", "s9"), return_exceptions=True)
    assert [type(answer).__name__ for answer in answers] == ["ConnectionError"] * 4
