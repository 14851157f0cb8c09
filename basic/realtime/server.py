"""Daphne, plus a bound on what a socket may owe its client: `python -m basic.realtime.server`
takes the same arguments as `daphne` (basic/ops/stack.py, the Dockerfile and docker-compose use it).

A client that stops reading makes every message for it pile up in the server's write buffer,
without limit: Twisted keeps whatever the kernel will not take, and ASGI has no way to tell the
application (its `send` returns at once, and neither Daphne nor autobahn bound or report the
buffer). So the bound lives here, in the WebSocket protocol: when more than WS_MAX_UNSENT_BYTES
are still unsent, the message is dropped and the socket is closed with 4008. The close frame
queues behind the backlog, so a slow client that catches up within CLOSE_GRACE_SECONDS reads
4008; one that never reads is cut off then, and its buffer freed.

Request bodies are capped here too, before they are read (REQUEST_MAX_BODY_BYTES,
basic/realtime/body_limit.py).
"""
import json
import logging
from collections import OrderedDict
from typing import Any

from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from basic.core import metrics
from basic.realtime.body_limit import BodyLimitedRequestMixin, protocol_factory
from basic.realtime.close_codes import CLOSE_SLOW_CONSUMER

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 10


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
    encoded once per process (basic.realtime.consumers.encoded_once), so its sockets send the very same
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


def max_unsent_bytes() -> int:
    from django.conf import settings

    return settings.WS_MAX_UNSENT_BYTES


def max_body_bytes() -> int:
    from django.conf import settings

    return settings.REQUEST_MAX_BODY_BYTES


# Close codes a server may send (IANA registry) that autobahn's sendClose() refuses, since it
# only allows 1000 and 3000-4999 from the application: 1013 is "try again later".
SERVER_CLOSE_CODES = frozenset({1012, 1013})


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


class BoundedWebSocketProtocol(WebSocketProtocol):
    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:  # noqa: N802
        if sync or chopsize or self.send_queue:
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)

    def serverClose(self, code: int | None = None) -> None:  # noqa: N802 (Daphne's name)
        if code in SERVER_CLOSE_CODES and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, isReply=False)
            return
        super().serverClose(code)

    def handle_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.send" and self.state == self.STATE_OPEN:
            backlog = unsent_bytes(self.transport)
            if backlog > max_unsent_bytes():
                logger.warning("closing a WebSocket whose client stopped reading (%s bytes unsent) with %s",
                               backlog, CLOSE_SLOW_CONSUMER)
                metrics.socket_closed_over_limit("slow_consumer")
                self.closeHandshakeTimeout = CLOSE_GRACE_SECONDS
                self.serverClose(code=CLOSE_SLOW_CONSUMER)
                return
            text = message.get("text")
            if text is not None and not message.get("bytes") and self._perMessageCompress is None:
                self.sendPreparedMessage(prepared_frame(self.factory, text))
                return
        super().handle_reply(message)


class RawBodyWebRequest(BodyLimitedRequestMixin, WebRequest):
    """Daphne's request without Twisted's own parsing of form bodies into `request.args`, which
    Daphne never reads (Django parses the body it is given): Twisted answered a multipart body it
    could not parse (e.g. one with no parts) with a bare 400 before the app saw it, and parsed
    every upload in memory a second time. Its body counts against REQUEST_MAX_BODY_BYTES
    (basic/realtime/body_limit.py), and Daphne's own error answers under /api/ are JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False

    def basic_error(self, status: int, status_text: bytes, body: str) -> None:
        """Daphne's HTML error page (a header value it refuses, an application that failed or timed
        out) as `{"detail": …}` under /api/, whose every answer is JSON."""
        if not (self.uri or b"").startswith(b"/api/"):
            super().basic_error(status, status_text, body)
            return
        detail = json.dumps({"detail": body if body.endswith(".") else f"{body}."}).encode()
        self.handle_reply({"type": "http.response.start", "status": status,
                           "headers": [(b"Content-Type", b"application/json"),
                                       (b"Content-Length", str(len(detail)).encode())]})
        self.handle_reply({"type": "http.response.body", "body": detail})


class BoundedServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ready = kwargs.get("ready_callable")

        def use_bounded_protocol() -> None:
            # Server.run() builds its WebSocket factory and calls this just before serving.
            self.ws_factory.protocol = BoundedWebSocketProtocol
            build_http = self.http_factory.buildProtocol

            def build_raw_body_http(addr: Any) -> Any:
                protocol = build_http(addr)
                protocol.requestFactory = RawBodyWebRequest
                return protocol

            self.http_factory.buildProtocol = build_raw_body_http
            self.http_factory.protocol = protocol_factory(max_body_bytes())
            if ready:
                ready()

        kwargs["ready_callable"] = use_bounded_protocol
        super().__init__(*args, **kwargs)

    async def handle_reply(self, protocol: Any, message: dict[str, Any]) -> None:
        """Daphne's, with one connection lookup instead of two and no header check for a frame
        (it has no headers): this runs for every frame of every fan-out."""
        if message.get("type") != "websocket.send":
            await super().handle_reply(protocol, message)
            return
        connection = self.connections.get(protocol)
        if connection is not None and not connection.get("disconnected", None):
            protocol.handle_reply(message)


class BoundedCommandLineInterface(CommandLineInterface):
    server_class = BoundedServer


if __name__ == "__main__":
    BoundedCommandLineInterface.entrypoint()
