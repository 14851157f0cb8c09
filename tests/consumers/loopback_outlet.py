"""Sockets' outlets (basic/realtime/wire.py) under Channels' test communicator: the frames the
channel layer's fan-out loop writes to a socket land in the communicator's output, in order with
the consumer's own sends, as they would reach a browser from Daphne. The consumer tests run both
ways (conftest.py `connect`), so every feed rule they check holds on the outlet path too."""
import asyncio
from typing import Any

from autobahn.twisted.websocket import WebSocketServerFactory

from basic.realtime.wire import Outlet

FACTORY = WebSocketServerFactory()


def frame_text(data: bytes) -> str:
    """The text of one unmasked WebSocket text frame, as a server writes it."""
    assert data[0] == 0x81, f"not a whole text frame: {data[:2]!r}"
    length, start = data[1] & 0x7F, 2
    if length == 126:
        length, start = int.from_bytes(data[2:4], "big"), 4
    elif length == 127:
        length, start = int.from_bytes(data[2:10], "big"), 10
    assert len(data) == start + length, "one frame per send"
    return data[start:].decode()


class FrameSocket:
    """What the outlet's loop calls `send` on: each frame becomes a `websocket.send` output."""

    def __init__(self, output: asyncio.Queue) -> None:
        self.output = output
        self.frames = 0

    def send(self, data: bytes) -> int:
        self.frames += 1
        self.output.put_nowait({"type": "websocket.send", "text": frame_text(data)})
        return len(data)


class Transport:
    dataBuffer = b""  # nothing ever waits here: the kernel took every frame
    _tempDataLen = 0

    def __init__(self, output: asyncio.Queue) -> None:
        self.socket = FrameSocket(output)

    def write(self, data: bytes) -> None:
        raise AssertionError("the loopback socket takes every frame whole")


class Protocol:
    """The few attributes of Daphne's protocol an outlet reads."""

    STATE_OPEN, STATE_CLOSED = 3, 0
    factory = FACTORY

    def __init__(self, output: asyncio.Queue) -> None:
        self.state = self.STATE_OPEN
        self.outlet: Outlet | None = None
        self.transport = Transport(output)
        self.output = output

    def send_text(self, text: str) -> None:
        raise AssertionError("only for a socket with a backlog")


class OutletSend:
    """The communicator's `send`, plus `outlet()` as the server's ReplySender offers it."""

    def __init__(self, output: asyncio.Queue) -> None:
        self.protocol = Protocol(output)
        self.output = output

    async def __call__(self, message: dict[str, Any]) -> None:
        if message["type"] == "websocket.close":  # the protocol leaves OPEN, as autobahn's does
            self.protocol.state = Protocol.STATE_CLOSED
            if self.protocol.outlet is not None:
                self.protocol.outlet.ready = False
        await self.output.put(message)

    def outlet(self, text_of: Any, handler: Any, feed: Any = None) -> Outlet:
        outlet = self.protocol.outlet = Outlet(self.protocol, text_of, handler, feed)
        return outlet


class WithOutlets:
    """`application`, with every socket's send offering an outlet."""

    def __init__(self, application: Any) -> None:
        self.application = application
        self.sends: list[OutletSend] = []

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        outlet_send = OutletSend(send.__self__)  # the communicator's output queue (its `put`)
        self.sends.append(outlet_send)
        return await self.application(scope, receive, outlet_send)

    @property
    def frames_through_outlets(self) -> int:
        return sum(send.protocol.transport.socket.frames for send in self.sends)
