import asyncio
import json

import pytest
from django.conf import settings

from basic.core.redis_clients import sync_redis

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


def subscribers(group: str) -> int:
    prefix = settings.CHANNEL_LAYERS["default"]["CONFIG"]["prefix"]
    channel = f"{prefix}__group__{group}"
    return dict(sync_redis().pubsub_numsub(channel))[channel.encode()]


async def test_room_broadcast_reaches_everyone_with_server_side_sender(connect, alice, bob):
    alices, _ = await connect("/ws/chat/lobby/", token=alice.token)
    bobs, _ = await connect("/ws/chat/lobby/", token=bob.token)
    other_room, _ = await connect("/ws/chat/elsewhere/", token=bob.token)
    await alices.send_json_to({"message": "hello", "sender": "spoofed-admin"})
    for communicator in (alices, bobs):
        frame = await communicator.receive_json_from(5)
        assert frame["type"] == "chat.message"
        assert (frame["room"], frame["message"], frame["sender"]) == ("lobby", "hello", "alice")
        assert "ts" in frame
    assert await other_room.receive_nothing(0.2)
    await close_all(alices, bobs, other_room)


async def test_seed_chat_path_matches_the_tutorial_exactly(connect):
    first, connected = await connect("/chat/")
    assert connected
    second, _ = await connect("/chat/")
    await first.send_to(text_data=json.dumps({"message": "hi"}))
    assert await first.receive_json_from(5) == {"message": "hi"}
    assert await second.receive_json_from(5) == {"message": "hi"}
    await close_all(first, second)


async def test_bad_chat_frames_get_error_frames_and_nothing_is_broadcast(connect, alice):
    sender, _ = await connect("/ws/chat/lobby/", token=alice.token)
    listener, _ = await connect("/ws/chat/lobby/", token=alice.token)
    cases = [
        ("not json", "invalid_json"),
        ('"just a string"', "invalid_frame"),
        ("{}", "invalid_message"),
        ('{"message": ""}', "invalid_message"),
        ('{"message": 42}', "invalid_message"),
        ('{"message": {"nested": 1}}', "invalid_message"),
        (json.dumps({"message": "x" * 4097}), "too_large"),
        (json.dumps({"message": "é" * 2100}), "too_large"),  # 4,200 bytes though 2,100 chars
    ]
    for text, code in cases:
        await sender.send_to(text_data=text)
        reply = await sender.receive_json_from(5)
        assert (reply["type"], reply["code"]) == ("error", code), text
    assert await listener.receive_nothing(0.2)
    await sender.send_json_to({"message": "still here"})
    assert (await listener.receive_json_from(5))["message"] == "still here"
    await close_all(sender, listener)


@pytest.mark.parametrize("room", ["has space", "x" * 65, "semi;colon", "%00"])
async def test_bad_room_names_close_4400(connect, alice, room):
    communicator, connected = await connect(f"/ws/chat/{room}/", token=alice.token)
    assert connected
    frames, code = await receive_until_closed(communicator)
    assert code == 4400
    assert json.loads(frames[0]["text"])["code"] == "invalid_room"


async def test_flood_gets_error_frames_then_close_4429(connect, alice):
    flooder, _ = await connect("/ws/chat/flood/", token=alice.token)
    for _ in range(settings.CHAT_RATE_BURST + settings.CHAT_RATE_STRIKES + 5):
        await flooder.send_json_to({"message": "spam"})
    frames, code = await receive_until_closed(flooder, timeout=5)
    errors = [json.loads(f["text"]) for f in frames if json.loads(f["text"]).get("type") == "error"]
    assert code == 4429
    assert len(errors) == settings.CHAT_RATE_STRIKES + 1
    assert all(e["code"] == "rate_limited" for e in errors)


async def test_disconnect_leaves_no_group_membership(connect, alice):
    first, _ = await connect("/ws/chat/leaving/", token=alice.token)
    second, _ = await connect("/ws/chat/leaving/", token=alice.token)
    assert subscribers("chat.leaving") == 1  # one subscription per process, shared by both sockets
    await first.disconnect()
    assert subscribers("chat.leaving") == 1
    await second.disconnect()
    assert subscribers("chat.leaving") == 0


async def kill_this_process_subscriber() -> None:
    """Drop the channel layer's subscriber connection from the Redis side, as a network blip or
    a Redis failover would; the publishing connections stay up."""
    from channels.layers import get_channel_layer

    layer = get_channel_layer()._get_layer()
    connection = layer._shards[0]._pubsub.connection
    host, port = connection._writer.get_extra_info("sockname")[:2]
    assert sync_redis().client_kill_filter(addr=f"{host}:{port}") == 1


async def test_messages_sent_while_the_subscriber_reconnects_arrive_once_and_in_order(connect, alice, bob):
    """channels-redis's pub/sub layer loses what is published while it reconnects (#256): chat
    rooms keep their recent messages in Redis, and the layer sends what it missed once it is back."""
    listener, _ = await connect("/ws/chat/gap/", token=alice.token)
    speaker, _ = await connect("/ws/chat/gap/", token=bob.token)
    await speaker.send_json_to({"message": "before"})
    for communicator in (listener, speaker):
        assert (await communicator.receive_json_from(5))["message"] == "before"
    await kill_this_process_subscriber()
    sent = [f"during {i}" for i in range(6)]
    for message in sent:
        await speaker.send_json_to({"message": message})
        await asyncio.sleep(0.05)
    await asyncio.sleep(1)
    await speaker.send_json_to({"message": "after"})
    for communicator in (listener, speaker):
        frames = [await communicator.receive_json_from(5) for _ in range(len(sent) + 1)]
        assert [frame["message"] for frame in frames] == [*sent, "after"]
        assert all(frame["sender"] == "bob" and frame["room"] == "gap" for frame in frames)
        ids = [frame["id"] for frame in frames]
        assert len(set(ids)) == len(ids)
        assert await communicator.receive_nothing(0.3)  # nothing twice
    await close_all(listener, speaker)


async def test_chat_frames_carry_the_message_id_and_nothing_internal(connect, alice):
    sender, _ = await connect("/ws/chat/ids/", token=alice.token)
    await sender.send_json_to({"message": "one"})
    await sender.send_json_to({"message": "two"})
    first, second = await sender.receive_json_from(5), await sender.receive_json_from(5)
    assert set(first) == {"type", "room", "message", "sender", "ts", "id"}
    assert [int(part) for part in first["id"].split("-")] < [int(part) for part in second["id"].split("-")]
    await close_all(sender)


async def test_a_client_back_from_a_dropped_connection_gets_what_it_missed(connect, alice, bob):
    """`?after=<the last id it got>`: the messages said meanwhile, once and in order, then live."""
    listener, _ = await connect("/ws/chat/resume/", token=alice.token)
    speaker, _ = await connect("/ws/chat/resume/", token=bob.token)
    await speaker.send_json_to({"message": "seen"})
    last_seen = (await listener.receive_json_from(5))["id"]
    await listener.disconnect()
    for text in ("missed 1", "missed 2", "missed 3"):
        await speaker.send_json_to({"message": text})
    for _ in range(4):
        await speaker.receive_json_from(5)
    back, connected = await connect(f"/ws/chat/resume/?after={last_seen}", token=alice.token)
    assert connected
    assert [(await back.receive_json_from(5))["message"] for _ in range(3)] == ["missed 1", "missed 2", "missed 3"]
    await speaker.send_json_to({"message": "live"})
    assert (await back.receive_json_from(5))["message"] == "live"
    assert await back.receive_nothing(0.3)
    await close_all(back, speaker)


async def test_live_messages_wait_while_a_resuming_socket_is_sent_what_it_missed(connect, alice, bob, monkeypatch):
    from basic.realtime import chat_history as group_history

    speaker, _ = await connect("/ws/chat/held/", token=bob.token)
    await speaker.send_json_to({"message": "one"})
    first = await speaker.receive_json_from(5)
    await speaker.send_json_to({"message": "two"})
    await speaker.receive_json_from(5)
    real_read, reading, release = group_history.read_from, asyncio.Event(), asyncio.Event()

    async def slow_read(*args):
        found = await real_read(*args)
        reading.set()
        await release.wait()
        return found

    monkeypatch.setattr(group_history, "read_from", slow_read)
    opening = asyncio.create_task(connect(f"/ws/chat/held/?after={first['id']}", token=alice.token))
    await asyncio.wait_for(reading.wait(), 5)
    await speaker.send_json_to({"message": "three"})  # live, while "two" is being read
    await speaker.receive_json_from(5)
    await asyncio.sleep(0.1)
    release.set()
    back, _ = await opening
    assert [(await back.receive_json_from(5))["message"] for _ in range(2)] == ["two", "three"]
    assert await back.receive_nothing(0.3)
    await close_all(back, speaker)


@pytest.mark.parametrize("after", ["abc", "1-", "-1", "1-2-3", "1732430000000", f"{'9' * 16}-0", ""])
async def test_a_resume_point_that_is_not_a_message_id_closes_4400(connect, alice, after):
    communicator, _ = await connect(f"/ws/chat/resume/?after={after}", token=alice.token)
    frames, code = await receive_until_closed(communicator)
    assert code == 4400
    assert json.loads(frames[0]["text"])["code"] == "invalid_after"


async def test_a_message_is_stored_and_published_in_one_step(connect, alice, bob, monkeypatch):
    """The sender's web process may die right after storing a message (a deploy, a crash): it must
    not leave the message in the room's history unsent. The chaos soak found such messages, stored
    but never delivered to the members on other processes."""
    from channels.layers import get_channel_layer

    listener, _ = await connect("/ws/chat/one-step/", token=alice.token)
    speaker, _ = await connect("/ws/chat/one-step/", token=bob.token)
    layer = get_channel_layer()
    sends = []

    async def dies_before_sending(group, message):  # the process is gone before its own send
        sends.append(group)

    monkeypatch.setattr(layer, "group_send", dies_before_sending)
    await speaker.send_json_to({"message": "stored and sent"})
    assert (await listener.receive_json_from(5))["message"] == "stored and sent"
    assert sends == []  # it went out with the store, not by a later send
    await close_all(listener, speaker)


async def test_a_resume_while_the_history_cannot_be_read_closes_1013_to_come_back(connect, alice, bob, monkeypatch):
    """Redis down as a client resumes: it is told to come back (1013), not sent the live messages
    as if it had missed nothing."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from basic.realtime import chat_history as group_history

    speaker, _ = await connect("/ws/chat/down/", token=bob.token)
    await speaker.send_json_to({"message": "one"})
    first = await speaker.receive_json_from(5)

    async def redis_down(*args):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(group_history, "read_from", redis_down)
    back, _ = await connect(f"/ws/chat/down/?after={first['id']}", token=alice.token)
    frames, code = await receive_until_closed(back)
    assert code == 1013
    assert [json.loads(frame["text"])["code"] for frame in frames] == ["unavailable"]
    await close_all(speaker)


async def test_a_message_sent_while_redis_is_down_is_refused_as_unavailable_and_the_socket_stays(
        connect, alice, monkeypatch):
    """An outage is not a bug: the sender is told the message was not sent and to send it again
    (it was an `internal_error` and a traceback), and the socket stays open for when Redis is back."""
    from redis.exceptions import ConnectionError as RedisConnectionError

    from basic.realtime import chat_history as group_history

    speaker, _ = await connect("/ws/chat/outage/", token=alice.token)

    async def redis_down(*args, **kwargs):
        raise RedisConnectionError("Connection refused")

    monkeypatch.setattr(group_history, "append", redis_down)
    monkeypatch.setattr(group_history, "append_and_publish", redis_down)
    await speaker.send_json_to({"message": "lost?"})
    refused = await speaker.receive_json_from(5)
    assert refused["code"] == "unavailable" and "send it again" in refused["detail"]
    monkeypatch.undo()  # Redis is back
    await speaker.send_json_to({"message": "back"})
    assert (await speaker.receive_json_from(5))["message"] == "back"
    await close_all(speaker)
