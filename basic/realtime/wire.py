"""Writing frames to a Twisted transport cheaply: each group message framed once for all its
sockets, handed from the consumer to the protocol with no coroutine between, sent at once when
nothing is queued, and the unsent bytes counted for the slow-client bound."""
from collections import OrderedDict
from typing import Any


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
    try:
        sent = sock.send(data)
    except (BlockingIOError, InterruptedError):
        sent = 0
    except OSError:  # let Twisted find out and close the connection its own way
        transport.write(data)
        return
    if sent < len(data):
        transport.write(data[sent:])


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

    @property
    def text_now(self) -> Any:
        """The protocol's own `send_text`: it checks the socket is open (Daphne's connection book
        says no more than that), so a frame goes through no call of ours on the way."""
        return getattr(self.protocol, "send_text", None)
