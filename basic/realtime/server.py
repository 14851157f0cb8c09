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
import asyncio
import json
import logging
import socket
import time
from collections import deque
from functools import cache, partial
from http import HTTPStatus
from types import FunctionType
from typing import Any

from autobahn.websocket.types import ConnectionDeny
from daphne.cli import CommandLineInterface
from daphne.http_protocol import WebRequest
from daphne.server import Server
from daphne.ws_protocol import WebSocketProtocol

from basic.core import metrics
from basic.realtime import handshake_gate, lazy_format, read_meter
from basic.realtime.body_limit import BodyLimitedRequestMixin, protocol_factory
from basic.realtime.close_codes import CLOSE_INTERNAL_ERROR, CLOSE_SLOW_CONSUMER, CLOSE_TRY_AGAIN_LATER
from basic.realtime.open_files import FD_RESERVE, open_files_limit, raise_open_files_limit
from basic.realtime.slim_queue import SlimQueue
from basic.realtime.socket_memory import forget_the_handshake, let_go_of_http
from basic.realtime.wire import Outlet, ReplySender, prepared_frame, unsent_bytes, write_now

logger = logging.getLogger(__name__)

CLOSE_GRACE_SECONDS = 10


@cache  # read for every frame of every fan-out; settings do not change in a running server
def max_unsent_bytes() -> int:
    from django.conf import settings

    return settings.WS_MAX_UNSENT_BYTES


def max_body_bytes() -> int:
    from django.conf import settings

    return settings.REQUEST_MAX_BODY_BYTES


lazy_format.install()


# Close codes a server may send (IANA registry) that autobahn's sendClose() refuses, since it
# only allows 1000 and 3000-4999 from the application: 1011 "internal error" (a crashed consumer:
# refused, it became a second "Exception inside application"), 1012 "service restart", 1013 "try
# again later".
SERVER_CLOSE_CODES = frozenset({CLOSE_INTERNAL_ERROR, 1012, CLOSE_TRY_AGAIN_LATER})


class Refused(ConnectionDeny):
    """A socket refused before the upgrade, with a JSON body and `Retry-After` (autobahn's own
    refusal sends a status line only)."""

    def __init__(self, code: int, body: dict[str, Any], retry_after: int) -> None:
        super().__init__(code, body["detail"])
        self.body = body
        self.retry_after = retry_after


class BoundedWebSocketProtocol(WebSocketProtocol):
    refused: Refused | None = None
    made_at = 0.0
    metered: Any = None
    arrival: handshake_gate.Arrival | None = None
    outlet: Outlet | None = None  # the socket's direct way out for group messages (wire.py)
    _state: int | None = None

    @property
    def state(self) -> int | None:
        return self._state

    @state.setter
    def state(self, value: int) -> None:
        """autobahn's state, which also closes the socket's outlet as the protocol leaves OPEN
        (closing either way, or lost): the outlet's loop then reads no state of ours per frame."""
        self._state = value
        outlet = self.outlet
        if outlet is not None and value != self.STATE_OPEN:
            outlet.ready = False

    def _connectionMade(self) -> None:
        """autobahn copies its ~30 options from the factory onto every protocol it makes, unless
        the protocol already has them: this process has one factory, so they are put on the class
        once, and each socket's attribute dict is that much smaller."""
        cls = type(self)
        source = cls.__dict__.get("_options_from")
        if source is None:
            for name in self.CONFIG_ATTRS:
                value = getattr(self.factory, name)
                # A function on the class would be bound to each socket (perMessageCompressionAccept).
                setattr(cls, name, staticmethod(value) if isinstance(value, FunctionType) else value)
            cls._options_from = self.factory
        elif source is not self.factory:  # a second factory (tests): its own options, per socket
            for name in self.CONFIG_ATTRS:
                setattr(self, name, getattr(self.factory, name))
        super()._connectionMade()

    def onOpen(self) -> None:  # noqa: N802 (autobahn's name)
        super().onOpen()
        forget_the_handshake(self)

    def connectionMade(self) -> None:  # noqa: N802 (Twisted's name)
        # When its request came (basic/realtime/read_meter.py): under a storm it may wait there,
        # unparsed, and its client's clock runs.
        self.made_at = getattr(self.transport, "request_at", None) or time.monotonic()
        self.metered = self.transport
        super().connectionMade()

    def onConnect(self, request: Any) -> Any:  # noqa: N802 (autobahn's name)
        """503 before the upgrade when the process is taking in more sockets than it can open in
        time (basic/realtime/handshake_gate.py) or is at its open-file limit; cheap enough that a
        storm's refusals cost next to nothing."""
        turns = handshake_gate.gate()
        if turns.full(time.monotonic() - self.made_at):
            retry_after = turns.retry_after(read_meter.waiting_now())  # once: each refusal its own time
            refused = Refused(503, handshake_gate.overloaded_reason(retry_after), retry_after)
        elif self.factory.server_class.open_connections >= open_files_limit() - FD_RESERVE:
            refused = Refused(503, {"type": "error", "code": "too_many_open_files", "retry_after": 5,
                                    "detail": "This server is at its open-file limit; reconnect later."}, 5)
        else:  # in line until the middleware gives it a turn; then the next connection is read
            self.arrival = turns.arrive(self.made_at, partial(read_meter.meter().done, self.transport))
            return super().onConnect(request)
        read_meter.meter().done(self.transport)
        self.refused = refused
        metrics.socket_closed_over_limit(refused.body["code"])
        raise refused

    def failHandshake(self, reason: str, code: int = 400, responseHeaders: Any = None) -> None:  # noqa: N802, N803
        refused = self.refused
        if refused is None:
            super().failHandshake(reason, code, responseHeaders)
            return
        self.wasNotCleanReason = reason
        self.deny(refused.code, [(b"Content-Type", b"application/json"),
                                 (b"Retry-After", str(refused.retry_after).encode())],
                  json.dumps(refused.body).encode())

    def deny(self, status: int, headers: list[tuple[bytes, bytes]], body: bytes) -> None:
        """Answer the upgrade request with a plain HTTP response instead, and hang up."""
        lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}".encode()]
        lines += [name + b": " + value for name, value in headers
                  if name.lower() not in (b"content-length", b"connection")]
        lines += [f"Content-Length: {len(body)}".encode(), b"Connection: close", b"", b""]
        self.sendData(b"\r\n".join(lines) + body)
        self.dropConnection(abort=False)

    _denial: list[Any] | None = None

    def handle_reply(self, message: dict[str, Any]) -> None:
        kind = message.get("type")
        if kind == "websocket.http.response.start" and self.state == self.STATE_CONNECTING:
            # ASGI's denial-response extension (advertised in the scope by BoundedServer): the
            # handshake gate refuses with a 503, a JSON reason and Retry-After, without upgrading.
            self._denial = [message["status"], list(message.get("headers", [])), b""]
            return
        if kind == "websocket.http.response.body" and self._denial is not None:
            self._denial[2] += message.get("body", b"")
            if not message.get("more_body"):
                status, headers, body = self._denial
                self.deny(status, headers, body)
            return
        self._handle_bounded_reply(message)

    def onClose(self, wasClean: bool, code: int, reason: str) -> None:  # noqa: N802, N803
        if self.arrival is not None:
            self.arrival.end()  # a client that hung up is not in line any more
        if self.metered is not None:  # nor, if it never got that far, being read (read_meter.py)
            read_meter.meter().done(self.metered)
            self.metered = None
        if self.refused is None:  # a refused socket never reached Daphne's books
            super().onClose(wasClean, code, reason)

    _send_queue: deque | None = None

    @property
    def send_queue(self) -> deque:
        """autobahn's queue for chopped or synced sends, made the first time one is sent: every
        socket got an empty deque (0.7 KiB) for it, and ours send neither (`sendData`)."""
        if self._send_queue is None:
            self._send_queue = deque()
        return self._send_queue

    @send_queue.setter
    def send_queue(self, queue: deque) -> None:
        self._send_queue = queue or None

    def sendData(self, data: bytes, sync: bool = False, chopsize: int | None = None) -> None:  # noqa: N802
        if sync or chopsize or self._send_queue:
            if self.outlet is not None:  # frames may wait in autobahn's queue now: none may pass them
                self.outlet.ready = False
                self.outlet = None
            super().sendData(data, sync, chopsize)
            return
        write_now(self.transport, data)

    def serverClose(self, code: int | None = None) -> None:  # noqa: N802 (Daphne's name)
        if code in SERVER_CLOSE_CODES and self.state == self.STATE_OPEN:
            self.sendCloseFrame(code=code, isReply=False)
            return
        super().serverClose(code)

    def _handle_bounded_reply(self, message: dict[str, Any]) -> None:
        if message.get("type") == "websocket.send" and self.state == self.STATE_OPEN:
            text = message.get("text")
            if text is not None and not message.get("bytes"):
                self.send_text(text)
                return
            if self._closed_as_slow(unsent_bytes(self.transport)):
                return
        super().handle_reply(message)

    def send_text(self, text: str) -> None:
        """One text frame, framed once for all the sockets it goes to (`prepared_frame`); what
        `ReplySender.text_now` calls for every socket of a fan-out, with no coroutine in between."""
        if self.state != self.STATE_OPEN:  # Daphne's own answer (not accepted yet: ValueError)
            super().handle_reply({"type": "websocket.send", "text": text})
            return
        backlog = unsent_bytes(self.transport)  # once, for the bound and for write_now
        if self._closed_as_slow(backlog):
            return
        if self._perMessageCompress is not None:
            self.sendMessage(text.encode("utf-8"), False)
        elif self._send_queue:
            self.sendData(prepared_frame(self.factory, text).payloadHybi)
        else:  # what sendPreparedMessage and sendData do, three calls less
            write_now(self.transport, prepared_frame(self.factory, text).payloadHybi, backlog)

    def _closed_as_slow(self, backlog: int) -> bool:
        if backlog <= max_unsent_bytes():
            return False
        logger.warning("closing a WebSocket whose client stopped reading (%s bytes unsent) with %s",
                       backlog, CLOSE_SLOW_CONSUMER)
        metrics.socket_closed_over_limit("slow_consumer")
        self.closeHandshakeTimeout = CLOSE_GRACE_SECONDS
        self.serverClose(code=CLOSE_SLOW_CONSUMER)
        return True


class RawBodyWebRequest(BodyLimitedRequestMixin, WebRequest):
    """Daphne's request without Twisted's own parsing of form bodies into `request.args`, which
    Daphne never reads (Django parses the body it is given): Twisted answered a multipart body it
    could not parse (e.g. one with no parts) with a bare 400 before the app saw it, and parsed
    every upload in memory a second time. Its body counts against REQUEST_MAX_BODY_BYTES
    (basic/realtime/body_limit.py), and Daphne's own error answers under /api/ are JSON."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._parsePOSTFormSubmission = False

    def process(self) -> None:
        transport = self.transport
        super().process()
        if transport is not None and self.transport is None:  # Daphne handed it to a WebSocket
            let_go_of_http(self.channel, transport)
        elif transport is not None:  # answered over HTTP: a plain request (it holds no place, a
            # no-op) or an upgrade Daphne refused (a bad handshake): its place goes to the next one
            read_meter.meter().done(transport)

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


LISTEN_BACKLOG = 4096  # capped by net.core.somaxconn; Twisted's default of 50 drops a storm's SYNs


def with_backlog(endpoint: str) -> str:
    """A Twisted `tcp:`/`unix:` endpoint description with a listen backlog, unless it names one.
    An inherited socket (`fd:fileno=N`, `--fd`) starts listening here, with that backlog."""
    kind = endpoint.split(":", 1)[0]
    if kind in ("tcp", "tcp6", "unix") and "backlog=" not in endpoint:
        return f"{endpoint}:backlog={LISTEN_BACKLOG}"
    if kind == "fd":
        listen_on_inherited(int(endpoint.split("fileno=", 1)[1].split(":", 1)[0]))
    return endpoint


def listen_on_inherited(fileno: int) -> None:
    """Make an inherited bound socket listen, now that the application is loaded: a web pool
    (basic/ops/web_pool.py) binds a socket per process with SO_REUSEPORT, and the kernel gives
    connections only to sockets that listen, so none waits on a process that is still starting.
    (On a socket already listening, listen() only sets the backlog.)"""
    sock = socket.socket(fileno=fileno)
    try:
        sock.listen(LISTEN_BACKLOG)
    finally:
        sock.detach()  # the descriptor stays open for Twisted to adopt


class BoundedServer(Server):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        ready = kwargs.get("ready_callable")
        if kwargs.get("endpoints"):
            kwargs["endpoints"] = [with_backlog(endpoint) for endpoint in kwargs["endpoints"]]

        def use_bounded_protocol() -> None:
            # Server.run() builds its WebSocket factory and calls this just before serving.
            self.ws_factory.protocol = BoundedWebSocketProtocol
            build_http = self.http_factory.buildProtocol

            def build_raw_body_http(addr: Any) -> Any:
                protocol = build_http(addr)
                protocol.requestFactory = RawBodyWebRequest
                return protocol

            self.http_factory.buildProtocol = build_raw_body_http
            self.http_factory.protocol = protocol_factory(max_body_bytes(), read_meter.MeteredHTTPChannel)
            if ready:
                ready()

        kwargs["ready_callable"] = use_bounded_protocol
        super().__init__(*args, **kwargs)
        # Connections whose socket is still open. Daphne's `connections` keeps a closed one until
        # its application checker reaps it, once a second and only after the application ended,
        # so counting that dict refused sockets after others had closed (CI saw a 503 0.5 s after
        # 20 closes at the file limit).
        self.open_connections = 0

    def protocol_connected(self, protocol: Any) -> None:
        super().protocol_connected(protocol)
        self.open_connections += 1

    def protocol_disconnected(self, protocol: Any) -> None:
        connection = self.connections.get(protocol)
        if connection is not None and "disconnected" not in connection:  # Daphne's own guard: once
            self.open_connections -= 1
        super().protocol_disconnected(protocol)

    def create_application(self, protocol: Any, scope: dict[str, Any]) -> Any:
        if scope.get("type") == "websocket":
            arrival = getattr(protocol, "arrival", None)
            if arrival is not None:
                scope[handshake_gate.ARRIVED] = arrival
            scope["extensions"] = {**scope.get("extensions", {}), "websocket.http.response": {}}
        # Daphne's own, but the input queue is a SlimQueue (about 3 KiB less per socket).
        connection = self.connections.get(protocol)
        if connection is None:  # the client left already
            return None
        assert "application_instance" not in connection
        input_queue = SlimQueue()
        scope.setdefault("asgi", {"version": "3.0"})
        connection["application_instance"] = asyncio.ensure_future(self.application(
            scope=scope, receive=input_queue.get, send=ReplySender(self, protocol)))
        return input_queue

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

    def __init__(self) -> None:
        super().__init__()
        self.parser.set_defaults(websocket_connect_timeout=handshake_gate.CONNECT_TIMEOUT_SECONDS)


if __name__ == "__main__":
    raise_open_files_limit()
    BoundedCommandLineInterface.entrypoint()
