"""How many WebSocket upgrades a web process parses at once; the rest wait, unparsed, in order.

A connect storm on one process is a parse storm first. With 10,000 sockets opening at once the
reactor found thousands of upgrade requests readable on each turn of the loop and parsed them all
(Twisted's HTTP parser, then autobahn's, then an application each), a second or more per turn,
while the handshakes already let in advanced one step per turn: none finished for seconds, the
handshake gate saw its line stand still and refused almost all 10,000 (docs/benchmarks.md,
storms). Here an upgrade request, once its head is in, is parsed only if fewer than `limit` are
between that and their socket's turn at the handshake gate. Otherwise its bytes are kept and the
connection is no longer read (its client's further bytes wait in the kernel) until one ends, in
the order the requests came. So the loop's turns stay short, handshakes finish at the rate the
process can take them, and no connection is held for its client's slowness.

- Plain HTTP requests (REST calls, health probes) take no place and are parsed at once: a socket
  storm does not hold up a liveness probe.
- A request asks for a place only once its head is whole, so a client sending its headers a byte
  at a time (slowloris) takes none meanwhile.
- A place held past SLOT_SECONDS without its socket's turn beginning goes to the next request.
"""
import re
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from basic.realtime.body_limit import BodyLimitedHTTPChannel

SLOT_SECONDS = 2.0


class ReadMeter:
    """One process's requests being parsed and handled (`parsing`, transport -> since when) and
    the connections whose request waits (`held`, in the order their bytes came)."""

    def __init__(self, limit: int, call_later: Callable[..., Any],
                 now: Callable[[], float] = time.monotonic) -> None:
        self.limit = max(1, limit)
        self.call_later, self.now = call_later, now
        self.parsing: dict[Any, float] = {}  # insertion order is the order their places were given
        self.held: deque[Any] = deque()  # channels (MeteredHTTPChannel)
        self._timer: Any = None

    def waiting(self) -> int:
        """Requests arrived and not parsed yet (some clients may have left meanwhile)."""
        return len(self.held)

    def take(self, transport: Any) -> bool:
        """A first request's bytes arrived: True if it may be parsed now (it holds a place until
        `done`), False if it must wait (the caller keeps its bytes and calls `hold`)."""
        self._expire()
        if self.held or len(self.parsing) >= self.limit:
            return False
        self.parsing[transport] = self.now()
        return True

    def hold(self, channel: Any) -> None:
        """`channel` waits for a place; it is given one with `channel.parse_held()`, called soon
        after, never from inside another connection's `done`."""
        self.held.append(channel)
        self._check_later()

    def done(self, transport: Any) -> None:
        """Its request was handled, its socket's turn began or was refused, or it closed."""
        if self.parsing.pop(transport, None) is not None:
            self._give_places()

    def _give_places(self) -> None:
        self._expire()
        while self.held and len(self.parsing) < self.limit:
            channel = self.held.popleft()
            transport = channel.transport
            if transport is None or getattr(transport, "disconnected", False):
                continue
            self.parsing[transport] = self.now()
            self.call_later(0, channel.parse_held)

    def _expire(self) -> None:
        cutoff = self.now() - SLOT_SECONDS
        while self.parsing:
            transport, since = next(iter(self.parsing.items()))
            if since > cutoff:
                return
            del self.parsing[transport]

    def _check_later(self) -> None:
        """While any wait, look again every half slot, so expired places are given out even if no
        request ends in between."""
        if self._timer is None:
            self._timer = self.call_later(SLOT_SECONDS / 2, self._check)

    def _check(self) -> None:
        self._timer = None
        self._give_places()
        if self.held:
            self._check_later()


# Past this, a request's head is handed to the parser whole or not (Twisted refuses heads over 16 KiB).
MAX_HEAD_BYTES = 16_384


WEBSOCKET_UPGRADE = re.compile(rb"\nupgrade:[ \t]*websocket", re.IGNORECASE)


def head_is_whole(data: bytes) -> bool:
    """Whether `data` holds a request's whole head: its empty line (CRLF, or LF alone as Twisted
    also accepts)."""
    return b"\n\r\n" in data or b"\n\n" in data


class MeteredHTTPChannel(BodyLimitedHTTPChannel):
    """A connection's first request is parsed when the process has a place for it (ReadMeter)."""

    _metered = False  # its first request got a place (or waits for one)
    _held: bytes | None = None
    _head = b""  # the first request's start, until its head is whole

    def dataReceived(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        if self._held is not None:  # waiting for a place: keep what comes (one read at most)
            self._held += data
            return
        if not self._metered:
            data = self._head + data
            if not head_is_whole(data) and len(data) <= MAX_HEAD_BYTES:
                self._head = data  # a client sending its head slowly takes no place meanwhile
                return
            self._head = b""
            self._metered = True
            if not WEBSOCKET_UPGRADE.search(data):  # a plain request (a REST call, a probe) is
                super().dataReceived(data)  # parsed at once, as before: a storm is of sockets
                return
            self.transport.request_at = time.monotonic()  # the request came: the server's clock runs
            if not meter().take(self.transport):
                self._held = data
                self.transport.pauseProducing()
                meter().hold(self)
                return
        super().dataReceived(data)

    def parse_held(self) -> None:
        held, self._held = self._held, None
        if self.transport is None:  # the client left meanwhile (and its place was given back)
            return
        self.transport.resumeProducing()
        if held:
            super().dataReceived(held)

    def connectionLost(self, reason: Any) -> None:  # noqa: N802 (Twisted's name)
        self._held = None
        if self.transport is not None:  # (None once handed to a WebSocket, which reports itself)
            meter().done(self.transport)
        super().connectionLost(reason)


_meter: ReadMeter | None = None


def meter() -> ReadMeter:
    """This process's meter (one reactor per web process): twice WS_HANDSHAKES_AT_ONCE requests
    are parsed ahead of the handshakes running."""
    global _meter
    if _meter is None:
        from django.conf import settings
        from twisted.internet import reactor

        _meter = ReadMeter(2 * settings.WS_HANDSHAKES_AT_ONCE, reactor.callLater)
    return _meter


def waiting_now() -> int:
    """Requests this process has received and not parsed yet (0 where nothing meters them)."""
    return _meter.waiting() if _meter is not None else 0
