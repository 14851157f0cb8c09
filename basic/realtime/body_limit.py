"""A cap on request bodies, kept by the HTTP server before it reads them (REQUEST_MAX_BODY_BYTES).

Daphne reads a whole body before the application sees any of it, and hands it over as messages
queued at once: a 400 MB POST, signed in or not, grew the web process by 400 MB (which it kept),
long before Django's DATA_UPLOAD_MAX_MEMORY_SIZE could refuse it. So the cap is kept in Twisted's
HTTP channel, under Daphne: a Content-Length over it is answered 413 as soon as the headers are
in, before a byte of the body is read (and before any `100 Continue`); a chunked body is counted
as it arrives and answered 413 once it passes the cap (what came before went to a temporary file,
as Twisted spools every chunked body, not to memory). The answer is JSON like every other
(`{"detail": …}`), says `Connection: close`, and ends the connection: what the client still sends
is read and thrown away for LINGER_SECONDS, so it reads the answer instead of a reset, then the
connection is cut. A request Twisted finds malformed (a bad request line, header or chunk) gets a
JSON 400 the same way instead of Twisted's bare one.
"""
import json
import logging
from typing import Any

from twisted.internet import reactor
from twisted.web import http

logger = logging.getLogger(__name__)

LINGER_SECONDS = 2.0
MALFORMED_REQUEST = "The request is not valid HTTP (its request line, a header or the body's chunks)."


def too_large_detail(limit: int) -> str:
    return f"Request body too large: at most {limit} bytes."


def json_answer(status: int, reason: bytes, detail: str) -> bytes:
    """A whole HTTP/1.1 answer with a JSON `{"detail": …}` body that closes the connection."""
    body = json.dumps({"detail": detail}).encode()
    head = (b"HTTP/1.1 %d %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
            b"Connection: close\r\n\r\n") % (status, reason, len(body))
    return head + body


class BodyLimitedHTTPChannel(http.HTTPChannel):
    """Twisted's HTTP/1.1 channel, refusing bodies over `max_body_bytes` before reading them."""

    max_body_bytes = 0  # set by `protocol_factory` from the settings; 0 is no cap
    _refused = False
    _linger_call: Any = None
    _body_bytes = 0

    def allHeadersReceived(self) -> None:  # noqa: N802 (Twisted's name)
        self._body_bytes = 0
        if self.max_body_bytes and self.length is not None and self.length > self.max_body_bytes:
            self.refuse_body(f"declares {self.length} bytes")
            return  # no gotLength(), no 100 Continue: nothing of the body is asked for or kept
        super().allHeadersReceived()

    def body_chunk_allowed(self, size: int) -> bool:
        """Called by the request for each piece of its body (the decoded chunks of a chunked one):
        False, after answering 413, once the body passes the cap."""
        if self._refused:
            return False
        self._body_bytes += size
        if self.max_body_bytes and self._body_bytes > self.max_body_bytes:
            self.refuse_body(f"chunked, passed {self.max_body_bytes} bytes")
            return False
        return True

    def refuse_body(self, why: str) -> None:
        logger.warning("refused a request body over REQUEST_MAX_BODY_BYTES (%s): %s %s from %s", why,
                       getattr(self, "_command", b"?").decode("ascii", "replace"),
                       getattr(self, "_path", b"?")[:200].decode("ascii", "replace"), self._peer())
        self.answer_and_close(json_answer(413, b"Request Entity Too Large", too_large_detail(self.max_body_bytes)))

    def _respondToBadRequestAndDisconnect(self) -> None:  # noqa: N802 (Twisted's name)
        self.answer_and_close(json_answer(400, b"Bad Request", MALFORMED_REQUEST))

    def answer_and_close(self, answer: bytes) -> None:
        """Write `answer`, end our side of the connection, and from now on read nothing into
        anything: what arrives is dropped until the client closes or LINGER_SECONDS pass."""
        if self._refused or self.transport is None:
            return
        self._refused = True
        self.setTimeout(None)
        self.transport.write(answer)
        close_writes = getattr(self.transport, "loseWriteConnection", None)
        if close_writes is not None:
            close_writes()  # FIN once the answer is out; reading goes on, to drop what still comes
        call_later = getattr(self, "callLater", None) or reactor.callLater
        self._linger_call = call_later(LINGER_SECONDS, self._end_linger)

    def _end_linger(self) -> None:
        self._linger_call = None
        if self.transport is None:
            return
        abort = getattr(self.transport, "abortConnection", None)
        if abort is not None:
            abort()
        else:
            self.transport.loseConnection()

    def _peer(self) -> str:
        try:
            peer = self.transport.getPeer()
            return f"{peer.host}:{peer.port}"
        except Exception:  # noqa: BLE001 (a log detail; no transport kind may break the answer)
            return "?"

    # Once answered, nothing the client sends is parsed, stored or handed to the application.
    def dataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self._refused:
            super().dataReceived(data)

    def lineReceived(self, line: bytes) -> None:  # noqa: N802
        if not self._refused:
            super().lineReceived(line)

    def rawDataReceived(self, data: bytes) -> None:  # noqa: N802
        if not self._refused:
            super().rawDataReceived(data)

    def allContentReceived(self) -> None:  # noqa: N802
        if not self._refused:
            super().allContentReceived()

    def connectionLost(self, reason: Any) -> None:  # noqa: N802
        if self._linger_call is not None and self._linger_call.active():
            self._linger_call.cancel()
        self._linger_call = None
        super().connectionLost(reason)


class BodyLimitedRequestMixin:
    """For the channel's request class: each piece of the body is counted before it is kept."""

    channel: Any

    def handleContentChunk(self, data: bytes) -> None:  # noqa: N802 (Twisted's name)
        allowed = getattr(self.channel, "body_chunk_allowed", None)
        if allowed is not None and not allowed(len(data)):
            return
        super().handleContentChunk(data)  # type: ignore[misc]


def protocol_factory(max_body_bytes: int, base: type[BodyLimitedHTTPChannel] = BodyLimitedHTTPChannel) -> Any:
    """What HTTPFactory.protocol builds (Twisted's own wraps an HTTPChannel the same way, so the
    factory can switch to HTTP/2 after TLS ALPN; that path has no cap here: Daphne serves h2 only
    with TLS, which we leave to the proxy). `base`: the channel class (a subclass adds to it)."""
    channel_class = type(base.__name__, (base,), {"max_body_bytes": max_body_bytes})

    def build() -> Any:
        return http._GenericHTTPChannelProtocol(channel_class())

    return build
