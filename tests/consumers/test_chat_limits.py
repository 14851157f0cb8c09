"""Chat rooms need sign-in unless CHAT_ALLOW_ANONYMOUS (the seed room /chat/ never does), and the
chat rate is per sender across all their sockets: per user, or per address when anonymous."""
import json

import pytest

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


async def test_anonymous_room_socket_is_closed_4401(connect):
    communicator, connected = await connect("/ws/chat/lobby/")
    assert connected
    frames, code = await receive_until_closed(communicator)
    assert code == 4401
    assert json.loads(frames[0]["text"])["code"] == "unauthorized"


async def test_a_bad_token_is_4401_even_where_anonymous_is_allowed(connect, settings):
    settings.CHAT_ALLOW_ANONYMOUS = True
    communicator, _ = await connect("/ws/chat/lobby/", token="forged")
    _frames, code = await receive_until_closed(communicator)
    assert code == 4401


async def test_anonymous_rooms_when_allowed(connect, settings):
    settings.CHAT_ALLOW_ANONYMOUS = True
    first, _ = await connect("/ws/chat/open/")
    second, _ = await connect("/ws/chat/open/")
    await first.send_json_to({"message": "hello"})
    frame = await second.receive_json_from(5)
    assert frame["message"] == "hello" and frame["sender"].startswith("guest-")
    await close_all(first, second)


async def test_the_seed_room_stays_anonymous_and_exact(connect):
    first, _ = await connect("/chat/")
    second, _ = await connect("/chat/")
    await first.send_to(text_data=json.dumps({"message": "hi"}))
    assert await first.receive_json_from(5) == {"message": "hi"}
    assert await second.receive_json_from(5) == {"message": "hi"}
    await close_all(first, second)


async def test_the_rate_is_per_user_across_all_their_sockets(connect, alice, bob, settings):
    settings.CHAT_RATE_PER_SECOND = 0.001  # no refill while the test runs
    settings.CHAT_RATE_BURST = 4
    in_a, _ = await connect("/ws/chat/a/", token=alice.token)
    in_b, _ = await connect("/ws/chat/b/", token=alice.token)
    bobs, _ = await connect("/ws/chat/b/", token=bob.token)
    for _ in range(2):
        await in_a.send_json_to({"message": "a"})
        assert (await in_a.receive_json_from(5))["message"] == "a"
        await in_b.send_json_to({"message": "b"})
        assert (await in_b.receive_json_from(5))["message"] == "b"
        assert (await bobs.receive_json_from(5))["message"] == "b"
    for socket in (in_a, in_b):  # four sent in all: the fifth is refused on either socket
        await socket.send_json_to({"message": "one more"})
        assert (await socket.receive_json_from(5))["code"] == "rate_limited"
    await bobs.send_json_to({"message": "from bob"})  # bob has his own bucket
    assert (await bobs.receive_json_from(5))["sender"] == "bob"
    assert (await in_b.receive_json_from(5))["message"] == "from bob"
    await close_all(in_a, in_b, bobs)


async def test_anonymous_rate_is_per_address(connect, settings):
    settings.CHAT_RATE_PER_SECOND = 0.001
    settings.CHAT_RATE_BURST = 2
    first, _ = await connect("/chat/", client="10.0.0.1")
    second, _ = await connect("/chat/", client="10.0.0.1")
    other, _ = await connect("/chat/", client="10.0.0.2")
    for sender, text in ((first, "1"), (second, "2")):
        await sender.send_json_to({"message": text})
        for socket in (first, second, other):
            assert await socket.receive_json_from(5) == {"message": text}
    await second.send_json_to({"message": "3"})
    assert (await second.receive_json_from(5))["code"] == "rate_limited"
    await other.send_json_to({"message": "4"})
    assert await first.receive_json_from(5) == {"message": "4"}
    await close_all(first, second, other)


async def test_redis_trouble_falls_back_to_a_per_socket_limit(connect, alice, settings, monkeypatch):
    from basic.realtime import limits as ws_limits

    async def down(who):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(ws_limits, "chat_allowed", down)
    settings.CHAT_RATE_PER_SECOND = 0.001
    settings.CHAT_RATE_BURST = 1
    communicator, _ = await connect("/ws/chat/lobby/", token=alice.token)
    await communicator.send_json_to({"message": "first"})
    assert (await communicator.receive_json_from(5))["message"] == "first"
    await communicator.send_json_to({"message": "second"})
    assert (await communicator.receive_json_from(5))["code"] == "rate_limited"
    await close_all(communicator)
