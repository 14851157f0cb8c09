"""Socket metrics: an ASGI middleware around every WebSocket (app/asgi.py) that counts sockets and
frames from the ASGI messages themselves, so every consumer is counted the same way.

The metric objects and the recording functions live in basic/core/metrics.py; this module only
watches the messages and calls them, cheaply enough for fan-out to thousands of sockets.
"""
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from basic.core.metrics import (
    WS_RECEIVED,
    WS_REFUSED,
    WS_SENT,
    never_raises,
    route_of,
    socket_closed,
    socket_opened,
)

logger = logging.getLogger(__name__)


@never_raises
def _frame_sent(route: str) -> None:
    WS_SENT.labels(route=route).inc()


@never_raises
def _frame_received(route: str) -> None:
    WS_RECEIVED.labels(route=route).inc()


@never_raises
def _handshake_refused(route: str) -> None:
    WS_REFUSED.labels(route=route).inc()


class FrameTally:
    """Frames sent, added to their counters once per event-loop step rather than once per frame:
    a group message to 3,000 sockets is one `inc(3000)`, not 3,000 locked increments (they were a
    tenth of Daphne's time fanning out, docs/benchmarks.md). The flush is queued before the first
    frame of a step goes out, so it runs before anything that frame wakes: a reader of /metrics
    never sees a frame that is not counted yet."""

    def __init__(self) -> None:
        self.pending: dict[Any, int] = {}

    def add(self, counter: Any) -> None:
        if not self.pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop in this thread: count it now
                counter.inc()
                return
        self.pending[counter] = self.pending.get(counter, 0) + 1

    def add_counts(self, counts: dict[Any, int]) -> None:
        """Several counters' frames at once (a fan-out's, basic/realtime/wire.py)."""
        for counter, count in counts.items():
            if not self.pending:
                try:
                    asyncio.get_running_loop().call_soon(self.flush)
                except RuntimeError:
                    counter.inc(count)
                    continue
            self.pending[counter] = self.pending.get(counter, 0) + count

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for counter, count in pending.items():
            try:
                counter.inc(count)
            except Exception:
                logger.warning("metrics: could not count %s sent frames", count, exc_info=True)


_frames_sent = FrameTally()
count_sent = _frames_sent.add_counts  # what the channel layer's fan-out loop counts its frames with


class SocketMetricsMiddleware:
    """Counts accepted, refused and closed sockets, open sockets, and frames in and out, from the
    ASGI messages themselves, so every consumer is counted the same way."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> Any:
        if scope.get("type") != "websocket":
            return await self.application(scope, receive, send)
        counted = CountedSocket(route_of(scope.get("path", "")), receive, send)
        try:
            return await self.application(scope, counted.receive, counted)
        finally:
            counted.closed(None)


class CountedSocket:
    """One socket's counting send and receive. An object with slots, not closures over a state
    dict: those were 1.8 KiB of every idle socket's memory (docs/benchmarks.md, memory)."""

    __slots__ = ("route", "sent", "is_open", "is_closed", "inner_receive", "inner_send", "inner_text_now")

    def __init__(self, route: str, receive: Callable, send: Callable) -> None:
        self.route, self.inner_receive, self.inner_send = route, receive, send
        self.sent = WS_SENT.labels(route=route)  # once per socket: a label lookup per frame adds up in fan-out
        self.is_open = self.is_closed = False

    def closed(self, code: int | None) -> None:
        if self.is_open and not self.is_closed:
            self.is_closed = True
            socket_closed(self.route, code)

    def send(self, message: dict) -> Awaitable[None]:
        # A plain method handing back the inner send's awaitable: one coroutine less per frame.
        kind = message.get("type")
        if kind == "websocket.send":
            _frames_sent.add(self.sent)
        elif kind == "websocket.accept" and not self.is_open:
            self.is_open = True
            socket_opened(self.route)
        elif kind == "websocket.close":
            if self.is_open:
                self.closed(message.get("code", 1000))
            else:
                _handshake_refused(self.route)
        elif kind == "websocket.http.response.start":  # refused with an HTTP answer instead
            _handshake_refused(self.route)
        return self.inner_send(message)

    __call__ = send  # the socket's send is this object, so `text_now` below can be found on it

    @property
    def text_now(self) -> Callable[[str], None] | None:
        """The server's direct text-frame path (basic/realtime/wire.py ReplySender), counted; None
        if the server below has none (the consumer then uses `send`)."""
        inner = getattr(self.inner_send, "text_now", None)
        if inner is None:
            return None
        self.inner_text_now = inner
        return self._counted_text_now

    def outlet(self, *args: Any) -> Any:
        """The server's `Outlet` for the socket (basic/realtime/wire.py), its frames counted on
        this socket's route (`count_sent`)."""
        make = getattr(self.inner_send, "outlet", None)
        outlet = make(*args) if make is not None else None
        if outlet is not None:
            outlet.counter = self.sent
        return outlet

    def _counted_text_now(self, text: str) -> None:
        _frames_sent.add(self.sent)
        self.inner_text_now(text)

    async def receive(self) -> dict:
        message = await self.inner_receive()
        kind = message.get("type")
        if kind == "websocket.receive":
            _frame_received(self.route)
        elif kind == "websocket.disconnect":
            self.closed(message.get("code"))
        return message
