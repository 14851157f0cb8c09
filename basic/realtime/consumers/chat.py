"""`/ws/chat/{room}/` and the seed tutorial's `/chat/`: chat frames in, `chat.post_message` calls
out, published messages back to frames (basic/realtime/chat.py holds the rules)."""
import logging
import time
from typing import Any

from django.conf import settings
from redis.exceptions import RedisError

from basic.core import keys
from basic.core.repeated_log import RepeatedWarning
from basic.realtime import chat, close_codes
from basic.realtime import chat_history as group_history
from basic.realtime.auth import query_param
from basic.realtime.consumers.base import UNAVAILABLE, ValidatingJsonConsumer, client_address
from basic.realtime.frames import encoded_once

# The socket log lines keep the name they have always had, so operators' filters survive the move.
logger = logging.getLogger("basic.consumers")
POST_FAILED = RepeatedWarning(logger, "chat messages not sent (Redis is unreachable)")
NOT_SENT = "Not sent: the chat service is unavailable right now; send it again in a few seconds."


def room_text(payload: dict[str, Any]) -> str:
    """A chat message as a `/ws/chat/` frame, encoded once per process (frames.encoded_once)."""
    return encoded_once(payload, "chat", lambda: chat.room_frame(payload))


def seed_text(payload: dict[str, Any]) -> str:
    """A chat message as a seed room `/chat/` frame, encoded once per process."""
    return encoded_once(payload, "seed", lambda: chat.seed_frame(payload))


def room_outlet_text(message: dict[str, Any]) -> str | None:
    """`room_text` for a socket's outlet (basic/realtime/wire.py): None for any other message."""
    return room_text(message) if message.get("type") == chat.LAYER_CHAT_MESSAGE else None


def seed_outlet_text(message: dict[str, Any]) -> str | None:
    """`seed_text` for a socket's outlet: None for any other message."""
    return seed_text(message) if message.get("type") == chat.LAYER_CHAT_MESSAGE else None


class ChatConsumer(ValidatingJsonConsumer):
    """`/ws/chat/{room}/`: `{"message": …}` goes to everyone in the room, with the sender's name.

    Signed-in users only (session cookie or `?token=`), unless CHAT_ALLOW_ANONYMOUS. The rate
    limit is per sender across all their sockets and web processes (per address when anonymous).
    """

    max_frame_bytes = settings.CHAT_MAX_MESSAGE_BYTES
    seed = False  # post and send the seed room's shapes (chat.SeedChatMessage, chat.SeedChatFrame)
    group: str | None = None
    room: str = ""
    sender: chat.Sender
    # While a resuming socket (`?after=<id>`) is sent what it missed, live messages wait here;
    # then the ids it was sent from the history are skipped if they also arrive live.
    _held: list[dict[str, Any]] | None = None
    _replayed: frozenset[str] = frozenset()
    _replayed_last: tuple[int, int] = (0, 0)  # the highest of those ids
    _replayed_at = 0.0  # time.monotonic() of the history read

    def room_from_scope(self) -> str:
        return self.scope["url_route"]["kwargs"]["room"]

    def anonymous_allowed(self) -> bool:
        return settings.CHAT_ALLOW_ANONYMOUS

    async def connect(self) -> None:
        self.room = self.room_from_scope()
        try:
            chat.check_room(self.room)
        except chat.ChatRefused as refused:
            await self.reject(close_codes.CLOSE_BAD_REQUEST, refused.code, refused.detail)
            return
        signed_in = bool(self.user and self.user.is_authenticated)
        if self.scope.get("token_rejected") or not (signed_in or self.anonymous_allowed()):
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized",
                              "Sign in to chat: the session cookie or ?token=<API token>.")
            return
        after = query_param(self.scope, "after")
        resume_from = group_history.parse_id(after) if after is not None else None
        if after is not None and resume_from is None:
            await self.reject(close_codes.CLOSE_BAD_REQUEST, "invalid_after",
                              "after= is the id of the last message you got, like 1732430000000-0.")
            return
        if not await self.claim_socket_slot():
            return
        self.sender = chat.sender_for(user=self.user, address=client_address(self.scope),
                                      channel_name=self.channel_name)
        self.group = chat.chat_group(self.room)
        if resume_from is not None:
            self._held = []
        await self.join_group(self.group)
        replay_group = getattr(self.channel_layer, "replay_group", None)
        if replay_group is not None:  # the project's layer (basic/realtime/channel_layer.py)
            replay_group(self.group, keys.chat_history_key(self.room))
        await self.accept()
        if resume_from is not None:
            await self.send_missed(resume_from)

    async def send_missed(self, after: tuple[int, int]) -> None:
        """A client back from a dropped connection (`?after=<the last id it got>`) is sent what
        the room said meanwhile from its recent history, then the live messages held meanwhile:
        each once, in order. What the history no longer holds is gone. If the history can't be read
        (Redis is down), the socket is told so and closed with 1013, so the client comes back with
        the same `?after=` instead of skipping what it missed."""
        try:
            missed = await group_history.read_from(keys.chat_history_key(self.room), group_history.next_id(after),
                                                   settings.CHAT_HISTORY_MAXLEN)
        except Exception:
            logger.warning("could not read the history of chat room %s", self.room, exc_info=True)
            self._held = None
            await self.send_error(UNAVAILABLE["code"], UNAVAILABLE["detail"])
            await self.close(code=close_codes.CLOSE_TRY_AGAIN_LATER)
            return
        for payload in missed:
            await self.send_chat(payload)
        self._replayed = frozenset(payload[group_history.ID] for payload in missed)
        if self._replayed:
            self._replayed_last = max(group_history.parse_id(entry) or (0, 0) for entry in self._replayed)
            self._replayed_at = time.monotonic()
        held, self._held = self._held or [], None
        for payload in held:
            if payload.get(group_history.ID) not in self._replayed:
                await self.send_chat(payload)
        self.refresh_outlet()  # open now if nothing was replayed (the ids to skip: `outlet_allowed`)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        try:
            await chat.post_message(room=self.room, sender=self.sender, text=content.get("message"),
                                    channel_layer=self.channel_layer, seed=self.seed)
        except chat.RateLimited as refused:
            await self.strike(settings.CHAT_RATE_STRIKES, refused.detail)
        except chat.ChatRefused as refused:
            await self.send_error(refused.code, refused.detail)
        except (RedisError, OSError) as error:  # an outage, not a bug: the sender is told to retry
            POST_FAILED.warning(error)
            await self.send_error(UNAVAILABLE["code"], NOT_SENT)

    outlet_text = staticmethod(room_outlet_text)

    def outlet_allowed(self) -> bool:
        """Live messages go out as they come (on the socket's outlet, base.py) unless the socket
        is resuming (they wait in `_held`) or has ids to skip that it was sent from the history."""
        return self._held is None and not self._replayed

    async def chat_message(self, payload: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(payload)
        elif not self._replayed:
            await self.send_chat(payload)
        elif payload.get(group_history.ID) not in self._replayed:
            await self.send_chat(payload)
            self._forget_replayed_past(payload.get(group_history.ID))

    def _forget_replayed_past(self, entry_id: str | None) -> None:
        """No live copy of a replayed message can come any more once a message stored after all of
        them has come live, and the slack for two senders publishing out of their storing order
        has passed (chat_history.REPLAY_SLACK_MS): the ids are dropped, and the socket's outlet
        opens. Without it, every socket that resumed after a restart kept the slower path."""
        entry = group_history.parse_id(entry_id) if isinstance(entry_id, str) else None
        if (entry is not None and entry > self._replayed_last
                and time.monotonic() - self._replayed_at >= group_history.REPLAY_SLACK_MS / 1000):
            self._replayed = frozenset()
            self.refresh_outlet()

    async def send_chat(self, payload: dict[str, Any]) -> None:
        await self.send_text(room_text(payload))


class SeedChatConsumer(ChatConsumer):
    """`/chat/`: the seed tutorial's room, whose frames are exactly `{"message": …}`."""

    seed = True

    def room_from_scope(self) -> str:
        return settings.SEED_CHAT_ROOM

    def anonymous_allowed(self) -> bool:
        return True

    outlet_text = staticmethod(seed_outlet_text)

    async def send_chat(self, payload: dict[str, Any]) -> None:
        await self.send_text(seed_text(payload))
