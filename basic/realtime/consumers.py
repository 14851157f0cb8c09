"""WebSocket consumers: job progress, the user's event feed, and chat rooms.

Every frame is validated; a bad one gets an error frame and the socket stays open. Only a bad
connection request (unknown job, bad room name, flooding) closes it, with a 44xx code after an
error frame that says why.
"""
import asyncio
import json
import logging
import random
import re
import time
import uuid
from collections.abc import Callable
from typing import Any

from channels.consumer import get_handler_name
from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.utils import timezone
from redis.exceptions import RedisError

from basic.core import keys, metrics
from basic.core.rate_limit import TokenBucket
from basic.jobs import event_store, events, services
from basic.models import Job
from basic.realtime import chat, close_codes
from basic.realtime import chat_history as group_history
from basic.realtime import limits as ws_limits
from basic.realtime.auth import query_param, user_for_token
from basic.realtime.channel_layer import LAYER_RECONNECTED
from basic.realtime.shared_reads import SharedReads

try:  # what Daphne (autobahn) raises when the app sends on a socket the client already closed
    from autobahn.exception import Disconnected as ClientGone
except ImportError:  # pragma: no cover - another ASGI server
    class ClientGone(Exception):  # type: ignore[no-redef]
        pass

# The socket log lines keep the name they have always had, so operators' filters survive the move.
logger = logging.getLogger("basic.consumers")

ROOM_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_CONTROL_FRAME_BYTES = 4096


def client_address(scope: dict[str, Any]) -> str:
    """The peer's address (Daphne behind a proxy needs --proxy-headers for the real one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# Messages whose handlers reach the database only through database_sync_to_async (which closes
# stale connections itself): dispatched without Channels' per-message thread hop to close them
# (docs/design.md trap 8: a third of the server's time with 1,000 sockets in one room).
NO_THREAD_HOP = frozenset({"websocket.receive", chat.LAYER_CHAT_MESSAGE, events.LAYER_JOB_EVENT,
                           LAYER_RECONNECTED})
ENCODED = "_encoded"


def encoded_once(message: dict[str, Any], key: str, content: Callable[[], Any]) -> str:
    """The JSON text of `content()`, computed by the first socket that sends it and reused by the
    other sockets of this process that got the same group message: the channel layer hands them
    one shared dict (basic/realtime/channel_layer.py). With the stock layer each socket has its own dict
    and this is just json.dumps."""
    cache = message.get(ENCODED)
    if cache is None:
        cache = message[ENCODED] = {}
    text = cache.get(key)
    if text is None:
        text = cache[key] = json.dumps(content())
    return text


UNAVAILABLE = {"type": "error", "code": "unavailable",
               "detail": "The live service is unavailable right now; reconnect in a few seconds."}


class ValidatingJsonConsumer(AsyncJsonWebsocketConsumer):
    """Parses and size-checks frames itself, so no client input can crash the consumer.

    A client that hangs up while we answer costs nothing: once it is gone (its disconnect arrived,
    we closed, or Daphne says the protocol is closed) every further send is a silent no-op instead
    of `Disconnected: Attempt to send on a closed protocol` and "Exception inside application".
    """

    max_frame_bytes = MAX_CONTROL_FRAME_BYTES
    closed = False
    strikes = 0
    _slot: tuple[str, str] | None = None
    _opened_at: float | None = None
    _close_code: int | None = None

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        async def send_unless_gone(message: dict[str, Any]) -> None:
            if self.closed:
                return
            if message["type"] == "websocket.close":
                self.closed = True
                self._close_code = message.get("code", 1000)
            elif message["type"] == "websocket.accept" and self._opened_at is None:
                self._opened_at = time.monotonic()
                logger.info("socket open", extra=self._log_fields(scope))
            try:
                await send(message)
            except ClientGone:
                self.closed = True

        try:
            await super().__call__(scope, receive, send_unless_gone)
        except (RedisError, OSError) as exc:
            # The channel layer could not even give this socket a channel: Redis is unreachable.
            logger.warning("%s refused a socket: Redis is unreachable (%s)", type(self).__name__, exc)
            if not self.accepted:
                if (await receive())["type"] != "websocket.connect":
                    return
                self.accepted = True
                await send_unless_gone({"type": "websocket.accept"})
            await send_unless_gone({"type": "websocket.send", "text": json.dumps(UNAVAILABLE)})
            await send_unless_gone({"type": "websocket.close", "code": close_codes.CLOSE_TRY_AGAIN_LATER})
        finally:
            self.closed = True
            self._take_group_messages(None)
            await self.release_socket_slot()
            if self._opened_at is not None:
                logger.info("socket closed", extra={
                    **self._log_fields(scope), "close_code": self._close_code,
                    "duration_s": round(time.monotonic() - self._opened_at, 3)})

    def _log_fields(self, scope: dict[str, Any]) -> dict[str, Any]:
        """What the socket connect and close log lines carry (JSON with LOG_FORMAT=json)."""
        user = self.scope.get("user") if getattr(self, "scope", None) else scope.get("user")
        return {"route": scope.get("path", ""), "client": client_address(scope),
                "user": user.get_username() if user is not None and user.is_authenticated else None}

    def _take_group_messages(self, handler: Callable[[dict[str, Any]], Any] | None) -> None:
        """Group messages straight from the channel layer, not through this socket's queue
        (basic/realtime/channel_layer.py); a layer without that path keeps using the queue."""
        take = getattr(self.channel_layer, "take_group_messages_directly", None) if self.channel_layer else None
        if take is not None and getattr(self, "channel_name", None):
            take(self.channel_name, handler)

    async def dispatch_group_message(self, message: dict[str, Any]) -> None:
        if not self.closed:
            await self.dispatch(message)

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """A socket that cannot join its groups because Redis is unreachable is told so and closed
        with 1013 (try again later), never failed with an HTTP 500 (docs/design.md trap 6)."""
        self._take_group_messages(self.dispatch_group_message)
        try:
            await super().websocket_connect(message)
        except (RedisError, OSError) as exc:
            logger.warning("%s refused a socket: Redis is unreachable (%s)", type(self).__name__, exc)
            await self.reject(close_codes.CLOSE_TRY_AGAIN_LATER, UNAVAILABLE["code"], UNAVAILABLE["detail"])

    async def dispatch(self, message: dict[str, Any]) -> None:
        if message["type"] in NO_THREAD_HOP:
            handler = getattr(self, get_handler_name(message), None)
            if handler is not None:
                await handler(message)
                return
        await super().dispatch(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        self.closed = True
        if self._close_code is None:
            self._close_code = message.get("code")
        await super().websocket_disconnect(message)

    async def layer_reconnected(self, message: dict[str, Any]) -> None:
        """The channel layer's subscriber is back after a Redis outage (basic/realtime/channel_layer.py).
        The socket stays open: its subscriptions were restored; what was published meanwhile is
        gone unless a subclass can fetch it again."""

    async def claim_socket_slot(self) -> bool:
        """Count this socket against its user's (or anonymous address's) cap, WS_MAX_PER_USER or
        WS_MAX_ANONYMOUS_PER_IP. Past it: an error frame, close 4429 and False."""
        if self.user and self.user.is_authenticated:
            who, cap, per = f"user:{self.user.pk}", settings.WS_MAX_PER_USER, "user"
        else:
            who, cap, per = f"ip:{client_address(self.scope)}", settings.WS_MAX_ANONYMOUS_PER_IP, "address"
        try:
            claimed = await ws_limits.claim_slot(who, self.channel_name, cap)
        except Exception:  # Redis is down (so is the channel layer): don't add a second failure
            logger.warning("socket cap unavailable; socket let in", exc_info=True)
            return True
        if not claimed:
            await self.reject(close_codes.CLOSE_TOO_MANY_REQUESTS, "too_many_sockets",
                              f"At most {cap} open sockets per {per}; close one first.")
            return False
        self._slot = (who, self.channel_name)
        ws_limits.slot_keeper().keep(who, self.channel_name)
        return True

    async def release_socket_slot(self) -> None:
        if self._slot:
            slot, self._slot = self._slot, None
            ws_limits.slot_keeper().drop(slot[1])
            try:
                await ws_limits.release_slot(*slot)
            except Exception:  # the claim lapses by itself within ws_limits.SLOT_TTL_SECONDS
                logger.warning("could not release the socket slot of %s", slot[0], exc_info=True)

    async def strike(self, limit: int, detail: str) -> None:
        """A frame refused for its rate: an error frame; past `limit` of them, close 4429."""
        self.strikes += 1
        if self.strikes > limit:
            await self.send_error("rate_limited", f"{detail}; closing.")
            await self.close(code=close_codes.CLOSE_TOO_MANY_REQUESTS)
        else:
            await self.send_error("rate_limited", f"{detail}; slow down.")

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None, **kwargs: Any) -> None:
        if self.closed:  # frames that arrive after we closed the socket (or refused it) are ignored
            return
        if text_data is None:
            await self.bad_frame("binary_frame", "Send JSON text frames, not binary.")
            return
        if len(text_data.encode("utf-8")) > self.max_frame_bytes:
            await self.bad_frame("too_large", f"Frames are limited to {self.max_frame_bytes} bytes.")
            return
        try:
            content = json.loads(text_data)
        except ValueError:
            await self.bad_frame("invalid_json", "The frame is not valid JSON.")
            return
        if not isinstance(content, dict):
            await self.bad_frame("invalid_frame", "Send a JSON object.")
            return
        try:
            await self.receive_json(content)
        except Exception:
            logger.exception("%s failed on a frame", type(self).__name__)
            await self.send_error("internal_error", "The server could not handle that frame.")

    async def bad_frame(self, code: str, detail: str) -> None:
        """A frame we could not read: say why; the socket stays open."""
        await self.send_error(code, detail)

    async def send_error(self, code: str, detail: str) -> None:
        await self.send_json({"type": "error", "code": code, "detail": detail})

    accepted = False

    async def accept(self, subprotocol: str | None = None, headers: Any = None) -> None:
        if not self.accepted:
            self.accepted = True
            await super().accept(subprotocol, headers)

    async def reject(self, close_code: int, code: str, detail: str) -> None:
        """Accept only to say why, then close: a refused handshake would hide the close code."""
        if close_code == close_codes.CLOSE_TOO_MANY_REQUESTS:
            metrics.socket_closed_over_limit(code)
        await self.accept()
        await self.send_error(code, detail)
        await self.close(code=close_code)

    @property
    def user(self) -> Any:
        return self.scope.get("user")


MAX_SEQ = 10**15  # far past any real job, well inside a Redis stream id


def _parse_after(value: object) -> int | None:
    """A resume point: a whole number 0..MAX_SEQ (or its decimal string); None if it is not one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_SEQ else None


def job_snapshot(job: Job, seq: int) -> dict[str, Any]:
    snapshot = {
        "type": events.JOB_SNAPSHOT,
        "job": str(job.id),
        "seq": seq,
        "kind": job.kind,
        "owner": job.owner.get_username() if job.owner_id else None,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "params": job.params,
        "result": job.result,
        "created": job.created.isoformat(),
        "started": job.started.isoformat() if job.started else None,
        "finished": job.finished.isoformat() if job.finished else None,
        "ts": timezone.now().isoformat(timespec="milliseconds"),
    }
    if job.status == Job.Status.DONE:
        snapshot["result_url"] = services.download_url(job)
    return snapshot


class AuthenticatedConsumer(ValidatingJsonConsumer):
    """A socket for signed-in users: the session cookie, `?token=`, or a first frame
    `{"type": "auth", "token": …}` within AUTH_TIMEOUT seconds. Subclasses implement `start()`
    (join groups, accept, send the first frames) and `handle_frame()`."""

    AUTH_TIMEOUT = 10.0
    awaiting_auth = False
    _auth_timer: asyncio.Task | None = None

    async def connect(self) -> None:
        if self.scope.get("token_rejected"):
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized", "That token is not valid.")
        elif self.user and self.user.is_authenticated:
            await self.start()
        elif await self.claim_socket_slot():  # until it authenticates, it counts as anonymous
            self.awaiting_auth = True
            await self.accept()
            self._auth_timer = asyncio.create_task(self._close_if_still_anonymous())

    async def _close_if_still_anonymous(self) -> None:
        await asyncio.sleep(self.AUTH_TIMEOUT)
        if self.awaiting_auth:
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized", "No credentials in time.")

    async def bad_frame(self, code: str, detail: str) -> None:
        if self.awaiting_auth:
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized", f"{detail} Authenticate first.")
        else:
            await super().bad_frame(code, detail)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if not self.awaiting_auth:
            await self.handle_frame(content)
            return
        token = content.get("token") if content.get("type") == "auth" else None
        user = await user_for_token(token) if isinstance(token, str) else None
        if user is None:
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized",
                              'Sign in, or send {"type": "auth", "token": "<API token>"} first.')
            return
        self.awaiting_auth = False
        if self._auth_timer:
            self._auth_timer.cancel()
        self.scope["user"] = user
        await self.release_socket_slot()  # start() claims one of the user's slots instead
        await self.start()

    async def disconnect(self, code: int) -> None:
        if self._auth_timer:
            self._auth_timer.cancel()

    async def start(self) -> None:
        """Check the request, `claim_socket_slot()`, join groups, accept and send the first frames."""
        raise NotImplementedError

    async def handle_frame(self, content: dict[str, Any]) -> None:
        raise NotImplementedError


# One history read and one row read per job per round in this process, whatever the sockets.
RESYNC_READS = SharedReads(ttl=1.0)


class JobEventsConsumer(AuthenticatedConsumer):
    """`/ws/jobs/{id}/`: a snapshot (or the missed events after `?after=SEQ`), then live events.

    Each event is sent once and in `seq` order: live events at or below the last sent seq are
    dropped, and a jump in seq (a message the live layer lost) is filled from the job's stream.
    While the job runs, the stream is also checked every few seconds, so even a lost *last*
    event (or one Redis never stored because it was down) reaches the client.
    """

    job_id: str = ""
    last_seq: int = 0
    last_event_at = 0.0
    ended = False
    _resync: asyncio.Task | None = None

    async def start(self) -> None:
        # Any spelling of the id (upper case, no dashes, {braces}, urn:uuid:) names the same job;
        # groups and Redis keys use the canonical one, which is where events are published.
        try:
            job_id = str(uuid.UUID(self.scope["url_route"]["kwargs"]["job_id"]))
        except ValueError:
            job_id = None
        job = job_id and await database_sync_to_async(services.job_visible_to)(user=self.user, job_id=job_id)
        if not job:
            await self.reject(close_codes.CLOSE_NOT_FOUND, "not_found", "No such job.")
            return
        raw_after = query_param(self.scope, "after")
        after = _parse_after(raw_after) if raw_after is not None else None
        if raw_after is not None and after is None:
            await self.reject(close_codes.CLOSE_BAD_REQUEST, "invalid_after", "`after` must be a whole number >= 0.")
            return
        if not await self.claim_socket_slot():
            return
        self.job_id = job_id
        self.resume_limiter = TokenBucket(rate=settings.WS_RESUME_RATE_PER_SECOND, burst=settings.WS_RESUME_BURST)
        self.lock = asyncio.Lock()
        # Join the group before reading history, so nothing falls between the two.
        await self.channel_layer.group_add(events.job_group(self.job_id), self.channel_name)
        await self.accept()
        async with self.lock:
            if after is None:
                await self.send_snapshot()
            else:
                await self.replay(after)
        self._resync = asyncio.create_task(self._resync_until_ended())

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if self._resync:
            self._resync.cancel()
        if self.job_id:
            await self.channel_layer.group_discard(events.job_group(self.job_id), self.channel_name)

    async def _resync_until_ended(self) -> None:
        interval = settings.JOB_SOCKET_RESYNC_SECONDS
        await asyncio.sleep(random.uniform(0, interval))  # sockets of one job don't all wake at once
        while not self.ended:
            await asyncio.sleep(interval)
            try:
                last = await RESYNC_READS.get(("last", self.job_id), lambda: event_store.last_event(self.job_id))
                async with self.lock:
                    if last is not None and last["seq"] > self.last_seq:
                        await self.catch_up()  # this socket missed something: read it for itself
                    # Only a quiet job can have ended unseen; a busy one costs no database query.
                    if time.monotonic() - self.last_event_at > interval:
                        await self.settle_if_finished()
            except Exception:  # Redis or the database is down: try again next round
                logger.warning("resync of job %s failed", self.job_id, exc_info=True)

    async def layer_reconnected(self, message: dict[str, Any]) -> None:
        """Events published while the layer was reconnecting are in the job's stream: send them."""
        if self.job_id and not self.ended:
            async with self.lock:
                await self.catch_up()

    async def send_snapshot(self) -> None:
        last = await event_store.last_event(self.job_id)
        job = await database_sync_to_async(Job.objects.select_related("owner").get)(id=self.job_id)
        self.last_seq = last["seq"] if last else 0
        await self.send_job_snapshot(job)

    async def send_job_snapshot(self, job: Job) -> None:
        self.ended = job.is_terminal
        await self.send_json(job_snapshot(job, self.last_seq))

    async def replay(self, after: int) -> None:
        missed = await event_store.read_events_after(self.job_id, after)
        if after > 0 and (not missed or missed[0]["seq"] != after + 1):
            last = await event_store.last_event(self.job_id)
            if last is None or last["seq"] > after:
                # History was trimmed or expired: the snapshot is the best we can do.
                await self.send_snapshot()
                return
        self.last_seq = after
        for event in missed:
            await self.send_event(event)
        if not missed:
            last = await event_store.last_event(self.job_id)
            self.ended = bool(last and last["seq"] <= after and last["type"] in events.TERMINAL_EVENTS)
        await self.settle_if_finished()

    async def catch_up(self, upto: int | None = None) -> None:
        for event in await event_store.read_events_after(self.job_id, self.last_seq, upto=upto):
            await self.send_event(event)

    async def settle_if_finished(self) -> None:
        """A job that ended without its terminal event in the history (Redis was down for all of
        the pusher's retries) is reported by a terminal snapshot instead."""
        if self.ended:
            return
        job = await RESYNC_READS.get(("row", self.job_id), database_sync_to_async(
            lambda: Job.objects.select_related("owner").get(id=self.job_id)))
        grace = timezone.timedelta(seconds=settings.JOB_TERMINAL_EVENT_GRACE_SECONDS)
        if job.is_terminal and job.finished and timezone.now() - job.finished > grace:
            await self.send_job_snapshot(job)

    async def send_event(self, event: dict[str, Any], text: str | None = None) -> None:
        if event["seq"] <= self.last_seq:
            return
        self.last_seq = event["seq"]
        self.last_event_at = time.monotonic()
        self.ended = event["type"] in events.TERMINAL_EVENTS
        await self.send(text_data=text if text is not None else json.dumps(event))

    async def job_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        async with self.lock:
            if event["seq"] > self.last_seq + 1:
                await self.catch_up(upto=event["seq"] - 1)
            await self.send_event(event, encoded_once(message, "event", lambda: event))

    async def handle_frame(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if kind == "resume":
            if not self.resume_limiter.allow():
                await self.strike(settings.WS_RESUME_STRIKES, "Too many resume frames")
                return
            after = _parse_after(content.get("after"))
            if after is None:
                await self.send_error("invalid_after", "`after` must be a whole number >= 0.")
                return
            async with self.lock:
                self.last_seq = min(self.last_seq, after)
                await self.replay(after)
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", "Known frame types: resume, ping.")


class UserEventsConsumer(AuthenticatedConsumer):
    """`/ws/events/`: every event of the signed-in user's jobs, and nobody else's."""

    group: str | None = None

    async def start(self) -> None:
        if not await self.claim_socket_slot():
            return
        self.group = events.user_group(self.user.id)
        await self.channel_layer.group_add(self.group, self.channel_name)
        await self.accept()

    async def disconnect(self, code: int) -> None:
        await super().disconnect(code)
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def job_event(self, message: dict[str, Any]) -> None:
        await self.send(text_data=encoded_once(message, "event", lambda: message["event"]))

    async def handle_frame(self, content: dict[str, Any]) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", "Known frame types: ping.")


class ChatConsumer(ValidatingJsonConsumer):
    """`/ws/chat/{room}/`: `{"message": …}` goes to everyone in the room, with the sender's name.

    Signed-in users only (session cookie or `?token=`), unless CHAT_ALLOW_ANONYMOUS. The rate
    limit is per sender across all their sockets and web processes (per address when anonymous).
    """

    max_frame_bytes = settings.CHAT_MAX_MESSAGE_BYTES
    group: str | None = None
    room: str = ""
    # While a resuming socket (`?after=<id>`) is sent what it missed, live messages wait here;
    # then the ids it was sent from the history are skipped if they also arrive live.
    _held: list[dict[str, Any]] | None = None
    _replayed: frozenset[str] = frozenset()

    def room_from_scope(self) -> str:
        return self.scope["url_route"]["kwargs"]["room"]

    def anonymous_allowed(self) -> bool:
        return settings.CHAT_ALLOW_ANONYMOUS

    async def connect(self) -> None:
        self.room = self.room_from_scope()
        if not ROOM_NAME.match(self.room):
            await self.reject(close_codes.CLOSE_BAD_REQUEST, "invalid_room",
                              "Room names are 1-64 letters, digits, '.', '_' or '-'.")
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
        # Redis holds the shared bucket; this one stands in only while Redis is unreachable.
        self.limiter = TokenBucket(rate=settings.CHAT_RATE_PER_SECOND, burst=settings.CHAT_RATE_BURST)
        self.rate_key = f"user:{self.user.pk}" if signed_in else f"ip:{client_address(self.scope)}"
        self.sender = self.sender_name()
        self.group = chat.chat_group(self.room)
        if resume_from is not None:
            self._held = []
        await self.channel_layer.group_add(self.group, self.channel_name)
        replay_group = getattr(self.channel_layer, "replay_group", None)
        if replay_group is not None:  # the project's layer (basic/realtime/channel_layer.py)
            replay_group(self.group, keys.chat_history_key(self.room))
        await self.accept()
        if resume_from is not None:
            await self.send_missed(resume_from)

    async def send_missed(self, after: tuple[int, int]) -> None:
        """A client back from a dropped connection (`?after=<the last id it got>`) is sent what
        the room said meanwhile from its recent history, then the live messages held meanwhile:
        each once, in order. What the history no longer holds is gone."""
        try:
            missed = await group_history.read_from(keys.chat_history_key(self.room), group_history.next_id(after),
                                                   settings.CHAT_HISTORY_MAXLEN)
        except Exception:
            logger.warning("could not read the history of chat room %s", self.room, exc_info=True)
            missed = []
        for payload in missed:
            await self.send_chat(payload)
        self._replayed = frozenset(payload[group_history.ID] for payload in missed)
        held, self._held = self._held or [], None
        for payload in held:
            if payload.get(group_history.ID) not in self._replayed:
                await self.send_chat(payload)

    def sender_name(self) -> str:
        if self.user and self.user.is_authenticated:
            return self.user.get_username()
        return f"guest-{self.channel_name[-4:]}"

    async def disconnect(self, code: int) -> None:
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        message = content.get("message")
        if not isinstance(message, str) or not message.strip():
            await self.send_error("invalid_message", 'Send {"message": "<text>"}.')
            return
        if not await self.message_allowed():
            await self.strike(settings.CHAT_RATE_STRIKES, "Too many messages")
            return
        # Kept briefly, so a web process whose subscriber was reconnecting still delivers it.
        payload = await group_history.append(keys.chat_history_key(self.room), self.chat_payload(message),
                                             settings.CHAT_HISTORY_MAXLEN, settings.CHAT_HISTORY_TTL_SECONDS)
        await self.channel_layer.group_send(self.group, payload)

    async def message_allowed(self) -> bool:
        try:
            return await ws_limits.chat_allowed(self.rate_key)
        except Exception:
            logger.warning("shared chat rate limit unavailable; limiting per socket", exc_info=True)
            return self.limiter.allow()

    def chat_payload(self, message: str) -> dict[str, Any]:
        return {
            "type": chat.LAYER_CHAT_MESSAGE,
            "room": self.room,
            "message": message,
            "sender": self.sender,
            "ts": timezone.now().isoformat(timespec="milliseconds"),
        }

    async def chat_message(self, payload: dict[str, Any]) -> None:
        if self._held is not None:
            self._held.append(payload)
        elif not self._replayed or payload.get(group_history.ID) not in self._replayed:
            await self.send_chat(payload)

    async def send_chat(self, payload: dict[str, Any]) -> None:
        # Keys starting with "_" are the server's own (the encoded text, the history stream).
        await self.send(text_data=encoded_once(
            payload, "chat", lambda: {key: value for key, value in payload.items() if not key.startswith("_")}))


class SeedChatConsumer(ChatConsumer):
    """`/chat/`: the seed tutorial's room, whose frames are exactly `{"message": …}`."""

    def room_from_scope(self) -> str:
        return settings.SEED_CHAT_ROOM

    def anonymous_allowed(self) -> bool:
        return True

    def chat_payload(self, message: str) -> dict[str, Any]:
        return {"type": chat.LAYER_CHAT_MESSAGE, "message": message}

    async def send_chat(self, payload: dict[str, Any]) -> None:
        await self.send(text_data=encoded_once(payload, "seed", lambda: {"message": payload["message"]}))


class UnknownPathConsumer(ValidatingJsonConsumer):
    async def connect(self) -> None:
        await self.reject(close_codes.CLOSE_NOT_FOUND, "not_found",
                          "No socket here; see /ws/jobs/{id}/, /ws/events/, /ws/chat/{room}/, /chat/.")
