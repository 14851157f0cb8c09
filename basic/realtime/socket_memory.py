"""What an open socket lets go of: the upgrade request and the HTTP channel it came through.

An idle socket is mostly bookkeeping, and thousands of them sit open in one process; these were
about 5 KiB of each one's memory (docs/benchmarks.md, memory per idle socket).
"""
from typing import Any

# What autobahn and Daphne keep of the upgrade request after the socket is open, and never read again.
HANDSHAKE_ONLY = ("http_request_data", "http_response_data", "http_headers", "http_status_line",
                  "http_request_uri", "http_request_path", "http_request_params", "http_request_host", "_wskey")


class RequestPath:
    """What Daphne reads of the upgrade request once a socket is open: its path (access log lines)."""

    __slots__ = ("path",)

    def __init__(self, path: str) -> None:
        self.path = path


def forget_the_handshake(protocol: Any) -> None:
    """Drop the upgrade request's raw bytes, headers and parsed parts from an open socket's protocol
    (about 2 KiB, kept for the socket's life), and compact its attribute dict, which never shrinks
    by itself."""
    attributes = protocol.__dict__
    for name in HANDSHAKE_ONLY:
        attributes.pop(name, None)
    request = attributes.get("request")
    if request is not None:
        attributes["request"] = RequestPath(request.path)
    protocol.__dict__ = dict(attributes)


def let_go_of_http(channel: Any, transport: Any) -> None:
    """After the upgrade, drop what tied the connection to its HTTP channel. Daphne hands the TCP
    transport to the WebSocket protocol but leaves the channel registered as the transport's
    producer (and its idle timer running), so the channel and its request, headers and all,
    lived as long as the socket: about 3 KiB of every idle socket (docs/benchmarks.md, memory).
    The channel only paused reading when the client was slow to read; a socket whose client
    stops reading is closed by its own bound (`max_unsent_bytes`)."""
    if getattr(transport, "producer", None) is channel:
        transport.unregisterProducer()
    set_timeout = getattr(channel, "setTimeout", None)
    if set_timeout is not None:
        set_timeout(None)
