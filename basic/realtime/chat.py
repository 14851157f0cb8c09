"""Chat rooms: room names, the frames a room sends, and `post_message`, the one way a message is
said (the chat sockets only turn frames into calls to it and its refusals into error frames)."""
import logging
import re
from dataclasses import dataclass
from typing import Any, Literal, TypedDict

from django.conf import settings
from django.utils import timezone

from basic.core import keys, untrusted_json
from basic.core.rate_limit import TokenBucket
from basic.realtime import chat_history, limits
from basic.realtime.frames import check_frame

# This warning kept the socket log name it had inside the consumer, so operators' filters still match.
logger = logging.getLogger("basic.consumers")

# The channel-layer message type that carries a chat message; consumers handle it in `chat_message`.
LAYER_CHAT_MESSAGE = "chat.message"

ROOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


class ChatMessage(TypedDict):
    """A room's message as stored in its history and published to its group."""

    type: Literal["chat.message"]
    room: str
    message: str
    sender: str
    ts: str


class ChatFrame(ChatMessage):
    """What a `/ws/chat/{room}/` socket is sent: the message and its history entry id."""

    id: str


class SeedChatMessage(TypedDict):
    """The seed room's message as stored and published: no sender, no time."""

    type: Literal["chat.message"]
    message: str


class SeedChatFrame(TypedDict):
    """What a `/chat/` socket is sent: exactly the tutorial's frame."""

    message: str


class ChatRefused(Exception):
    """A request the room will not take; `code` and `detail` go into the error frame."""

    def __init__(self, code: str, detail: str) -> None:
        super().__init__(f"{code}: {detail}")
        self.code = code
        self.detail = detail


class RateLimited(ChatRefused):
    """The sender is over CHAT_RATE_PER_SECOND; the socket counts a strike (and closes past them)."""


@dataclass(frozen=True, slots=True)
class Sender:
    name: str  # shown to the room, set by the server whatever the frame says
    rate_key: str  # whose shared bucket a message takes from: "user:<pk>" or "ip:<address>"
    fallback: TokenBucket  # this socket's own bucket, used only while Redis is unreachable


def chat_group(room: str) -> str:
    return f"chat.{room}"


def check_room(room: str) -> None:
    """Raise ChatRefused("invalid_room") unless `room` is a valid room name."""
    if not ROOM_NAME.fullmatch(room):  # `$` alone would let "lobby\n" through
        raise ChatRefused("invalid_room", "Room names are 1-64 letters, digits, '.', '_' or '-'.")


def sender_for(*, user: Any, address: str, channel_name: str) -> Sender:
    """A signed-in user speaks and is limited under their name, across all their sockets; an
    anonymous socket is `guest-XXXX` and is limited per address."""
    bucket = TokenBucket(rate=settings.CHAT_RATE_PER_SECOND, burst=settings.CHAT_RATE_BURST)
    if user and user.is_authenticated:
        return Sender(name=user.get_username(), rate_key=f"user:{user.pk}", fallback=bucket)
    return Sender(name=f"guest-{channel_name[-4:]}", rate_key=f"ip:{address}", fallback=bucket)


def room_frame(payload: dict[str, Any]) -> ChatFrame:
    """The frame a room socket sends for a published message: all but the server's "_" keys."""
    return {key: value for key, value in payload.items() if not key.startswith("_")}  # type: ignore[return-value]


def seed_frame(payload: dict[str, Any]) -> SeedChatFrame:
    return {"message": payload["message"]}


async def post_message(*, room: str, sender: Sender, text: object, channel_layer: Any,
                       seed: bool = False) -> dict[str, Any]:
    """Say `text` in `room`: check it, take a token from the sender's bucket, keep it in the room's
    history and publish it to the room's group. Returns the published message (with its `id`).

    Raises ChatRefused("invalid_message") for text that is not a non-blank string UTF-8 can encode
    and RateLimited past the sender's rate; nothing is stored or sent then. `seed` posts the seed
    room's shape.
    """
    # A lone surrogate ("\ud800") was stored in the room's history, then failed every live send.
    if not isinstance(text, str) or not text.strip() or not untrusted_json.encodable(text):
        raise ChatRefused("invalid_message", 'Send {"message": "<text>"}.')
    if not await _allowed(sender):
        raise RateLimited("rate_limited", "Too many messages")
    message: ChatMessage | SeedChatMessage
    if seed:
        message = {"type": LAYER_CHAT_MESSAGE, "message": text}
        check_frame(message, SeedChatMessage)
    else:
        message = {"type": LAYER_CHAT_MESSAGE, "room": room, "message": text, "sender": sender.name,
                   "ts": timezone.now().isoformat(timespec="milliseconds")}
        check_frame(message, ChatMessage)
    # Kept briefly, so a web process whose subscriber was reconnecting still delivers it; stored and
    # published in one step when the layer reads Redis's msgpack (basic/realtime/chat_history.py).
    stream, group = keys.chat_history_key(room), chat_group(room)
    if await chat_history.one_trip(channel_layer):
        return await chat_history.append_and_publish(
            stream, message, settings.CHAT_HISTORY_MAXLEN, settings.CHAT_HISTORY_TTL_SECONDS,
            [keys.group_channel(group)])
    payload = await chat_history.append(stream, message, settings.CHAT_HISTORY_MAXLEN,
                                        settings.CHAT_HISTORY_TTL_SECONDS)
    await channel_layer.group_send(group, payload)
    return payload



async def _allowed(sender: Sender) -> bool:
    try:
        return await limits.chat_allowed(sender.rate_key)
    except Exception:
        logger.warning("shared chat rate limit unavailable; limiting per socket", exc_info=True)
        return sender.fallback.allow()
