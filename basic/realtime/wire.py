"""Writing frames to a Twisted transport cheaply: each group message framed once for all its
sockets, sent at once when nothing is queued, and the unsent bytes counted for the slow-client bound."""
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


def write_now(transport: Any, data: bytes) -> None:
    """Send on the socket at once when nothing is queued before the data, as asyncio's own
    transports do. Twisted's write() always queues and asks the loop to watch the socket for
    writability, which on the asyncio reactor is two epoll_ctl calls and a selector-key rebuild per
    message: 40% of Daphne's time fanning out to 1,000 sockets (py-spy, docs/benchmarks.md)."""
    sock = getattr(transport, "socket", None)
    idle = (sock is not None and transport.connected and not transport.disconnecting
            and not getattr(transport, "_writeDisconnected", False) and not getattr(transport, "TLS", False)
            and unsent_bytes(transport) == 0)
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
