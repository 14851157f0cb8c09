"""The socket bases: frame checks, dispatch, 1013 when Redis is down, socket caps, sign-in.

Every frame is validated; a bad one gets an error frame and the socket stays open. Only a bad
connection request (unknown job, bad room name, flooding) closes it, with a 44xx code after an
error frame that says why. A consumer that fails anyway closes with 1011 after an error frame, and
like any other leaves its groups and frees its socket slot (`_clean_up`).
"""
import asyncio
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from channels.layers import get_channel_layer
from django.conf import settings
from redis.exceptions import RedisError

from basic.core import metrics, untrusted_json
from basic.jobs import events
from basic.realtime import chat, close_codes
from basic.realtime import limits as ws_limits
from basic.realtime.channel_layer import LAYER_RECONNECTED
from basic.realtime.consumers.outlet import GroupOutlet
from basic.realtime.refusals import INTERNAL_ERROR, OUTAGES, UNAVAILABLE, is_unreachable

try:  # what Daphne (autobahn) raises when the app sends on a socket the client already closed
    from autobahn.exception import Disconnected as ClientGone
except ImportError:  # pragma: no cover - another ASGI server
    class ClientGone(Exception):  # type: ignore[no-redef]
        pass

# The socket log lines keep the name they have always had, so operators' filters survive the move.
logger = logging.getLogger("basic.consumers")

MAX_CONTROL_FRAME_BYTES = 4096
# Group messages that reach a socket before its handshake is answered, held until it is: joining a
# group is a Redis round trip, queued behind every other join under a connect storm.
MAX_EARLY_GROUP_MESSAGES = 1000


def client_address(scope: dict[str, Any]) -> str:
    """The peer's address (Daphne behind a proxy needs --proxy-headers for the real one)."""
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


# Messages whose handlers reach the database only through database_sync_to_async or
# basic/realtime/db_reads.py (which close
# stale connections itself): dispatched without Channels' per-message thread hop to close them
# (docs/design.md trap 8: a third of the server's time with 1,000 sockets in one room).
# Connect and disconnect too: a hop per socket opened was most of a connect storm's thread traffic.
NO_THREAD_HOP = frozenset({"websocket.connect", "websocket.receive", "websocket.disconnect",
                           chat.LAYER_CHAT_MESSAGE, events.LAYER_JOB_EVENT, LAYER_RECONNECTED})
# The handler of each group message type dispatched with no thread hop (what dispatch() finds).
GROUP_HANDLERS = {kind: get_handler_name({"type": kind}) for kind in NO_THREAD_HOP}


class ValidatingJsonConsumer(GroupOutlet, AsyncJsonWebsocketConsumer):
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
    _groups: frozenset[str] | None = None  # joined through join_group(); left by _clean_up()
    _disconnect_ran = False
    _tasks: list[asyncio.Task] | None = None  # started through start_task(); cancelled by _clean_up()
    _early: deque[dict[str, Any]] | None = None  # group messages held until the accept is sent
    _taking_group_messages = False  # set once the accept is sent and what was held is handed over
    _cleaning_up = False  # set as _clean_up() starts: no task may start after it
    _text_now: Any = False  # the server's direct text-frame path, None if it has none (send_text)

    async def _send_unless_gone(self, message: dict[str, Any]) -> None:
        """The socket's send: a no-op once the client is gone (a method, not a closure per socket)."""
        if self.closed:
            return
        if message["type"] == "websocket.close":
            self.closed = True
            self._close_code = message.get("code", 1000)
            self.refresh_outlet()
        elif message["type"] == "websocket.accept" and self._opened_at is None:
            self._opened_at = time.monotonic()
            logger.info("socket open", extra=self._log_fields(self._outer_scope))
        try:
            await self._outer_send(message)
        except ClientGone:
            self.closed = True

    async def send_text(self, text: str) -> None:
        """A text frame. Under our server it goes straight to the protocol (`ReplySender.text_now`,
        basic/realtime/wire.py), not down Channels' and Daphne's chain of coroutines: this runs for
        every socket of every fan-out. Elsewhere (a test's communicator) it is `send`."""
        text_now = self._text_now
        if text_now is False:  # looked up once per socket: this runs for every frame it is sent
            text_now = self._text_now = getattr(self._outer_send, "text_now", None)
        if text_now is None:
            await self.send(text_data=text)
        elif not self.closed:
            try:
                text_now(text)
            except ClientGone:
                self.closed = True

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        self._outer_scope, self._outer_send = scope, send
        send_unless_gone = self._send_unless_gone
        try:
            await self._run(scope, receive, send_unless_gone)
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
        except Exception:
            await self._fail()
        finally:
            self.closed = True
            await self._clean_up()
            if self._opened_at is not None:
                logger.info("socket closed", extra={
                    **self._log_fields(scope), "close_code": self._close_code,
                    "duration_s": round(time.monotonic() - self._opened_at, 3)})

    async def _fail(self) -> None:
        """A bug in a handler (connect, a frame, a message, disconnect): logged, cleaned up as after
        a normal close (first, so a client that reconnects at once finds its slot free), then the
        client is told: an error frame and close 1011."""
        logger.exception("%s failed; closing the socket", type(self).__name__)
        await self._clean_up()
        if not self.accepted:  # it failed in connect(): accept only to say so, as reject() does
            self.accepted = True
            await self._send_unless_gone({"type": "websocket.accept"})
        await self._send_unless_gone({"type": "websocket.send", "text": json.dumps(INTERNAL_ERROR)})
        await self._send_unless_gone({"type": "websocket.close", "code": close_codes.CLOSE_INTERNAL_ERROR})

    async def _run(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Channels' AsyncConsumer.__call__, but when the layer hands this consumer its messages
        directly (its groups' and its own channel's: basic/realtime/channel_layer.py) the socket's
        loop only reads the client. Channels parks a second task on the channel's queue and makes
        a task per receive (await_many_dispatch): about 2 KiB of every idle socket."""
        layer = get_channel_layer(self.channel_layer_alias)
        if layer is None or not hasattr(layer, "forget_channel"):
            await super().__call__(scope, receive, send)
            return
        self.scope, self.channel_layer, self.base_send = scope, layer, send
        self.channel_name = await layer.new_channel()
        try:
            while True:
                await self.dispatch(await receive())
        except StopConsumer:
            pass
        finally:
            layer.forget_channel(self.channel_name)

    async def _clean_up(self) -> None:
        """However the consumer ended (a close, a crash, Redis down): it takes no more group
        messages, its `disconnect()` hook has run, the tasks it started are cancelled, it has left
        every group it joined and its socket slot is free; each step even if one before it failed.
        Idempotent (the crash path runs it, then `finally` again). Before it, a crashed socket stayed
        in its groups until restart: after 300 crashes a room's message went to 301 members."""
        self._cleaning_up = True
        self.refresh_outlet()  # and then closed by the layer, with the handler
        self._take_group_messages(None)
        if not self._disconnect_ran:
            self._disconnect_ran = True
            try:
                await self.disconnect(self._close_code or close_codes.CLOSE_INTERNAL_ERROR)
            except Exception:
                logger.exception("%s failed to disconnect", type(self).__name__)
        tasks, self._tasks = self._tasks or [], []
        for task in tasks:
            task.cancel()
        await self.leave_groups()
        await self.release_socket_slot()

    def start_task(self, coroutine: Coroutine[Any, Any, None]) -> asyncio.Task:
        """Run `coroutine` alongside the socket; the base cancels it however the socket ends, even
        if `disconnect()` fails (a job socket's resync loop otherwise outlived a crash)."""
        task = asyncio.create_task(coroutine)
        if self._cleaning_up:  # it ended while connect() was still on its way here (a failed message)
            task.cancel()
            return task
        self._tasks = [*(t for t in self._tasks or [] if not t.done()), task]
        return task

    async def join_group(self, group: str) -> None:
        """Join `group` on the channel layer; the base leaves it however the socket ends. The one
        way a consumer joins a group (tests/consumers/test_crash_cleanup.py checks none calls
        group_add itself)."""
        self._groups = (self._groups or frozenset()) | {group}
        await self.channel_layer.group_add(group, self.channel_name)

    async def leave_groups(self) -> None:
        groups, self._groups = self._groups or frozenset(), frozenset()
        for group in groups:
            try:
                await self.channel_layer.group_discard(group, self.channel_name)
            except Exception:  # Redis is down: the pub/sub layers drop the local member before they
                # unsubscribe, so only the process's subscription may linger, and Redis restarting ends it
                logger.warning("could not leave group %s", group, exc_info=True)

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
        """A consumer is a member of its groups from the moment it joins, before its accept: a
        message sent then reached Daphne as a frame on an unaccepted socket ("Socket has not been
        accepted"), logged with a traceback and lost (hundreds of times when a crowd reconnected
        to a restarted process). Such messages wait, in order, until the accept has gone out."""
        if self.closed:
            return
        if not self._taking_group_messages:
            if self._early is None:
                self._early = deque(maxlen=MAX_EARLY_GROUP_MESSAGES)
            self._early.append(message)  # full: the oldest goes (a job socket fills a gap from history)
            return
        try:  # _dispatch_or_fail and dispatch inlined: this runs for every socket of every fan-out
            handler = getattr(self, GROUP_HANDLERS.get(message["type"], ""), None)
            await (handler(message) if handler is not None else self.dispatch(message))
        except Exception:
            await self._fail()

    async def _dispatch_or_fail(self, message: dict[str, Any]) -> None:
        """A message from the layer (a group's, or one sent to this socket's channel) that fails
        its handler ends the socket as a failed frame does."""
        try:
            await self.dispatch(message)
        except Exception:
            await self._fail()

    async def _hand_over_early_messages(self) -> None:
        """Dispatch what was held, then take messages directly. In a task of its own: a handler may
        wait for the consumer's connect to finish (a job socket's lock, held over its accept)."""
        early = self._early
        while early:
            message = early.popleft()
            if not self.closed:
                await self._dispatch_or_fail(message)
        self._early = None
        self._start_taking_group_messages()

    async def websocket_connect(self, message: dict[str, Any]) -> None:
        """A socket that cannot open because Redis or the database is unreachable (its groups, the
        job it names) is told so and closed with 1013 (try again later), never failed as a crash
        (docs/design.md trap 6). The chaos soak's PostgreSQL restart crashed job sockets here."""
        self._take_group_messages(self.dispatch_group_message)
        try:
            await super().websocket_connect(message)
        except OUTAGES as exc:
            if not is_unreachable(exc):
                raise  # a bug (a statement the database refused): 1011 and a traceback, as any other
            logger.warning("%s refused a socket: %s is unreachable (%s)", type(self).__name__,
                           "Redis" if isinstance(exc, (RedisError, OSError)) else "the database", exc)
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
        self.refresh_outlet()
        if self._close_code is None:
            self._close_code = message.get("code")
        self._disconnect_ran = True  # even if disconnect() raises: __call__ cleans up the rest
        # Channels' own, less its closing `aclose_old_connections()`: a hop to the one
        # thread-sensitive thread on every close, to tidy database connections no socket opens
        # there (their reads run on threads of their own, basic/realtime/db_reads.py). It was 18%
        # of Daphne's CPU while 2,000 sockets closed. Groups are left in `_clean_up`.
        await self.disconnect(message["code"])
        raise StopConsumer()

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
        # "surrogatepass": a str holding a lone surrogate is measured here and refused just below.
        if len(text_data.encode("utf-8", "surrogatepass")) > self.max_frame_bytes:
            await self.bad_frame("too_large", f"Frames are limited to {self.max_frame_bytes} bytes.")
            return
        try:  # too deep, not valid Unicode (`"\ud800"`), not JSON: refused like any bad frame
            content = untrusted_json.loads(text_data)
        except untrusted_json.Unreadable as refused:
            await self.bad_frame(refused.code, refused.about("frame"))
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
            if self._early:
                self.start_task(self._hand_over_early_messages())
            else:
                self._start_taking_group_messages()

    async def reject(self, close_code: int, code: str, detail: str) -> None:
        """Accept only to say why, then close: a refused handshake would hide the close code."""
        if close_code == close_codes.CLOSE_TOO_MANY_REQUESTS:
            metrics.socket_closed_over_limit(code)
        self._refusing = True  # no outlet opens; an open one closes with the close below
        await self.accept()
        await self.send_error(code, detail)
        await self.close(code=close_code)

    @property
    def user(self) -> Any:
        return self.scope.get("user")
