"""Posting a chat message without a socket (basic/realtime/chat.py): what is refused and why,
the sender's shared rate and its per-socket stand-in, what is stored and what is published, room
names and senders. Uses the session's real Redis; each test its own room and bucket."""
import uuid
from types import SimpleNamespace

import pytest
from django.contrib.auth.models import AnonymousUser

from basic.core import keys
from basic.core.rate_limit import TokenBucket
from basic.core.redis_clients import sync_redis
from basic.realtime import chat, limits
from basic.realtime.frames import check_frame


class Layer:
    """Records group_send, as the channel layer would deliver it."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, dict]] = []

    async def group_send(self, group: str, message: dict) -> None:
        self.sent.append((group, message))


@pytest.fixture
def room() -> str:
    return f"unit-{uuid.uuid4().hex[:12]}"


def sender(name: str = "alice", burst: int = 100) -> chat.Sender:
    return chat.Sender(name=name, rate_key=f"test:{uuid.uuid4().hex}",
                       fallback=TokenBucket(rate=0.001, burst=burst))


def stored(room: str) -> list:
    return sync_redis().xrange(keys.chat_history_key(room))


async def test_a_message_is_stored_then_published_to_the_room_with_the_servers_sender(room):
    layer = Layer()
    payload = await chat.post_message(room=room, sender=sender("alice"), text="hello", channel_layer=layer)
    assert layer.sent == [(chat.chat_group(room), payload)]
    frame = chat.room_frame(payload)
    assert (frame["type"], frame["room"], frame["message"], frame["sender"]) == ("chat.message", room, "hello", "alice")
    check_frame(frame, chat.ChatFrame)
    assert set(frame) == {"type", "room", "message", "sender", "ts", "id"}  # nothing internal reaches a socket
    [(entry_id, _)] = stored(room)
    assert entry_id.decode() == frame["id"]


async def test_the_seed_room_posts_and_sends_only_the_message(room):
    layer = Layer()
    payload = await chat.post_message(room=room, sender=sender("guest-abcd"), text="hi", channel_layer=layer,
                                      seed=True)
    assert {key for key in payload if not key.startswith("_")} == {"type", "message", "id"}
    assert chat.seed_frame(payload) == {"message": "hi"}
    check_frame(chat.seed_frame(payload), chat.SeedChatFrame)
    assert len(layer.sent) == 1 and len(stored(room)) == 1


@pytest.mark.parametrize("text", [None, "", "   \n\t", 42, {"nested": 1}, ["hi"], True,
                                  "\ud800", "hi \udfff", "\udc00\ud83d"])
async def test_anything_but_non_blank_text_is_refused_and_nothing_is_stored_or_sent(room, text):
    layer = Layer()
    with pytest.raises(chat.ChatRefused) as refused:
        await chat.post_message(room=room, sender=sender(), text=text, channel_layer=layer)
    assert (refused.value.code, refused.value.detail) == ("invalid_message", 'Send {"message": "<text>"}.')
    assert not isinstance(refused.value, chat.RateLimited)
    assert layer.sent == [] and stored(room) == []


async def test_past_the_senders_burst_a_message_is_rate_limited_and_not_sent(room, settings):
    settings.CHAT_RATE_BURST, settings.CHAT_RATE_PER_SECOND = 3, 0.01
    layer, alice = Layer(), sender()
    for _ in range(3):
        await chat.post_message(room=room, sender=alice, text="ok", channel_layer=layer)
    with pytest.raises(chat.RateLimited) as limited:
        await chat.post_message(room=room, sender=alice, text="one too many", channel_layer=layer)
    assert (limited.value.code, limited.value.detail) == ("rate_limited", "Too many messages")
    assert len(layer.sent) == 3 and len(stored(room)) == 3
    # The bucket is the sender's, not the socket's: another socket of the same sender is limited too.
    twin = chat.Sender(name="alice", rate_key=alice.rate_key, fallback=TokenBucket(rate=1, burst=100))
    with pytest.raises(chat.RateLimited):
        await chat.post_message(room=room, sender=twin, text="from another tab", channel_layer=layer)
    await chat.post_message(room=room, sender=sender(), text="someone else", channel_layer=layer)


async def test_with_the_shared_limit_unreachable_the_sockets_own_bucket_limits(room, monkeypatch):
    async def down(who):
        raise ConnectionError("redis is down")

    monkeypatch.setattr(limits, "chat_allowed", down)
    layer, alice = Layer(), sender(burst=2)
    await chat.post_message(room=room, sender=alice, text="one", channel_layer=layer)
    await chat.post_message(room=room, sender=alice, text="two", channel_layer=layer)
    with pytest.raises(chat.RateLimited):
        await chat.post_message(room=room, sender=alice, text="three", channel_layer=layer)
    assert [message["message"] for _, message in layer.sent] == ["one", "two"]


@pytest.mark.parametrize("name", ["lobby", "a", "x" * 64, "Room_1.test-2"])
def test_room_names_that_are_allowed(name):
    chat.check_room(name)


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "semi;colon", "%00", "a/b", "é", "lobby\n", "\nlobby"])
def test_room_names_that_are_refused(name):
    with pytest.raises(chat.ChatRefused) as refused:
        chat.check_room(name)
    assert refused.value.code == "invalid_room"


def test_a_signed_in_sender_speaks_and_is_limited_as_themselves():
    user = SimpleNamespace(is_authenticated=True, pk=7, get_username=lambda: "alice")
    alice = chat.sender_for(user=user, address="10.0.0.1", channel_name="specific..inmemory!abcdWXYZ")
    assert (alice.name, alice.rate_key) == ("alice", "user:7")


def test_an_anonymous_sender_is_a_guest_limited_by_address():
    guest = chat.sender_for(user=AnonymousUser(), address="10.0.0.1", channel_name="specific..inmemory!abcdWXYZ")
    assert (guest.name, guest.rate_key) == ("guest-WXYZ", "ip:10.0.0.1")
    assert chat.sender_for(user=None, address="10.0.0.2", channel_name="x!1234").rate_key == "ip:10.0.0.2"
