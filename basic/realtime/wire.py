"""Writing frames to a Twisted transport cheaply: each group message framed once for all its
sockets, handed from the consumer to the protocol with no coroutine between, sent at once when
nothing is queued, and the unsent bytes counted for the slow-client bound. A socket in the common
case has an `Outlet`, and a group message goes out through it to thousands of sockets in one loop
(`send_group_message`)."""
import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

logger = logging.getLogger(__name__)


def unsent_bytes(transport: Any) -> int:
    """Bytes written to a Twisted transport that the kernel has not taken yet (a TLS wrapper is
    looked through to the TCP transport under it)."""
    while transport is not None and not hasattr(transport, "dataBuffer"):
        transport = getattr(transport, "transport", None)
    if transport is None:
        return 0
    return len(transport.dataBuffer) - getattr(transport, "offset", 0) + getattr(transport, "_tempDataLen", 0)


_prepared: "OrderedDict[int, tuple[str, Any]]" = OrderedDict()
PREPARED_CACHE_SIZE = 64


def prepared_frame(factory: Any, text: str) -> Any:
    """The WebSocket frame for `text`, built once for every socket it goes to: a group message is
    encoded once per process (basic.realtime.frames.encoded_once), so its sockets send the very same
    str, and the frame is looked up by that object's identity (the cache holds the str, so the
    identity cannot be reused while cached). Saves encoding and framing it per socket."""
    key = id(text)
    cached = _prepared.get(key)
    if cached is not None and cached[0] is text:
        _prepared.move_to_end(key)
        return cached[1]
    frame = factory.prepareMessage(text.encode("utf-8"), isBinary=False)
    _prepared[key] = (text, frame)
    if len(_prepared) > PREPARED_CACHE_SIZE:
        _prepared.popitem(last=False)
    return frame


def write_now(transport: Any, data: bytes, backlog: int | None = None) -> None:
    """Send on the socket at once when nothing is queued before the data, as asyncio's own
    transports do. Twisted's write() always queues and asks the loop to watch the socket for
    writability, which on the asyncio reactor is two epoll_ctl calls and a selector-key rebuild per
    message: 40% of Daphne's time fanning out to 1,000 sockets (py-spy, docs/benchmarks.md).
    `backlog`: the unsent bytes, if the caller has just counted them."""
    sock = getattr(transport, "socket", None)
    idle = (sock is not None and transport.connected and not transport.disconnecting
            and not getattr(transport, "_writeDisconnected", False) and not getattr(transport, "TLS", False)
            and (unsent_bytes(transport) if backlog is None else backlog) == 0)
    if not idle:
        transport.write(data)
        return
    send_to_idle(sock, transport, data)


def send_to_idle(sock: Any, transport: Any, data: bytes) -> None:
    """`data` to the kernel at once, on a socket with nothing queued before it; what the kernel
    does not take goes to Twisted's queue (which also finds out about a failed socket its own way)."""
    try:
        sent = sock.send(data)
    except OSError:  # full (BlockingIOError), interrupted, or failed: Twisted takes it from here
        sent = 0
    if sent < len(data):
        transport.write(data[sent:] if sent else data)


class Outlet:
    """One socket's way out for group messages in the common case, straight from the channel
    layer's loop to the kernel: no consumer, protocol or transport method in between.

    A fan-out to 10,000 sockets went through the consumer's dispatch, its handler, its send and the
    protocol's checks: about a dozen calls, each reading attributes of another large object per
    socket. At that size those objects no longer stay in the CPU's caches, and the Python around
    the one `send` cost as much as the kernel's work (docs/benchmarks.md, issue 18). An outlet
    holds only what a send needs, in slots.

    `ready` says the common case holds: the protocol is open (the protocol clears it as it leaves
    that state) and the consumer has nothing under way for the socket (it sets it, `open_if`).
    When it does not, or the message is not one this socket sends as is, the consumer's `handler`
    gets the message, as every message went before.
    """

    __slots__ = ("protocol", "transport", "sock", "text_of", "handler", "feed", "counter", "ready")

    def __init__(self, protocol: Any, text_of: Callable[[dict[str, Any]], str | None],
                 handler: Callable[[dict[str, Any]], Any], feed: Any = None) -> None:
        self.protocol, self.transport = protocol, protocol.transport
        self.sock = self.transport.socket
        # Shared by every socket of a kind (a plain function), so the loop computes a message's
        # text once per kind, not once per socket.
        self.text_of = text_of
        self.handler = handler
        self.feed = feed  # a numbered feed's JobFeed: only the next seq goes out directly
        self.counter: Any = None  # the socket route's frames-sent counter (socket_metrics.py)
        self.ready = False

    def open_if(self, wanted: bool) -> None:
        """Ready when the consumer `wanted` it and the protocol is still open and still sends
        through this outlet (it lets go of it if ever a frame waits in autobahn's own queue)."""
        protocol = self.protocol
        self.ready = wanted and protocol.outlet is self and protocol.state == protocol.STATE_OPEN


def can_write_directly(transport: Any) -> bool:
    """Whether frames may go to `transport`'s socket, by-passing Twisted's write (plain TCP, not TLS)."""
    return (getattr(transport, "socket", None) is not None and not getattr(transport, "TLS", False)
            and hasattr(transport, "dataBuffer") and hasattr(transport, "_tempDataLen"))


def send_group_message(outlets: list[Outlet], message: dict[str, Any],
                       count: Callable[[dict[Any, int]], None] | None = None) -> list[Outlet]:
    """Send `message` through every ready outlet; return those whose consumer must handle it
    (not ready, not a message it sends as is, or seqs missing before it). `count` is given the
    frames sent per counter.

    Per socket this is what `write_now` does after the protocol's checks: the frame, built once
    per text (`prepared_frame`), goes to the kernel at once when nothing is queued; otherwise the
    protocol queues it behind the backlog or closes a client that stopped reading (4008)."""
    later: list[Outlet] = []
    counts: dict[Any, int] = {}
    text_of: Any = None
    text: str | None = None
    frame = b""
    now = time.monotonic()
    for outlet in outlets:
        if not outlet.ready:
            later.append(outlet)
            continue
        try:
            if outlet.text_of is not text_of:
                text_of, text = outlet.text_of, None  # None until both are built (if either fails)
                new_text = text_of(message)
                if new_text is not None:
                    frame = prepared_frame(outlet.protocol.factory, new_text).payloadHybi
                text = new_text
            if text is None:
                later.append(outlet)
                continue
            feed = outlet.feed
            if feed is not None:
                step = feed.take_next(message["event"], now)
                if not step:  # False: sent already; None: a gap the consumer fills from history first
                    if step is None:
                        later.append(outlet)
                    continue
            transport = outlet.transport
            if transport.dataBuffer or transport._tempDataLen:
                outlet.protocol.send_text(text)
            else:
                send_to_idle(outlet.sock, transport, frame)
            counter = outlet.counter
            if counter is not None:
                counts[counter] = counts.get(counter, 0) + 1
        except Exception:  # a bug: the consumer's own way fails the socket as any failed message does
            logger.exception("a group message could not go out directly")
            outlet.ready = False
            later.append(outlet)
    if counts and count is not None:
        count(counts)
    return later


class ReplySender:
    """The `send` Daphne gives a connection's application (its `handle_reply` for this protocol),
    plus `text_now`: a text frame handed to the socket at once. A fan-out sends one frame to
    thousands of sockets; through `send` each went down five coroutines (the consumer's send, the
    base send, Daphne's reply) before reaching the protocol: a quarter of the server's time at
    3,000 sockets (py-spy, docs/benchmarks.md). Slotted: one per connection."""

    __slots__ = ("server", "protocol")

    def __init__(self, server: Any, protocol: Any) -> None:
        self.server, self.protocol = server, protocol

    def __call__(self, message: dict[str, Any]) -> Any:
        return self.server.handle_reply(self.protocol, message)

    def outlet(self, text_of: Callable[[dict[str, Any]], str | None], handler: Callable[[dict[str, Any]], Any],
               feed: Any = None) -> Outlet | None:
        """The socket's `Outlet`, if frames can go to its socket directly (a TLS or compressed
        socket's cannot: each frame is its own there)."""
        protocol = self.protocol
        if getattr(protocol, "_perMessageCompress", None) is not None or not hasattr(protocol, "outlet"):
            return None
        if not can_write_directly(getattr(protocol, "transport", None)):
            return None
        outlet = protocol.outlet = Outlet(protocol, text_of, handler, feed)
        return outlet

    @property
    def text_now(self) -> Any:
        """The protocol's own `send_text`: it checks the socket is open (Daphne's connection book
        says no more than that), so a frame goes through no call of ours on the way."""
        return getattr(self.protocol, "send_text", None)
