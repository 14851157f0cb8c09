"""The body cap in Twisted's HTTP channel, fed bytes directly (basic/realtime/body_limit.py); the
real server is in tests/integration/test_body_limit.py. And its setting, parsed strictly."""
import json

import pytest
from django.core.exceptions import ImproperlyConfigured
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http

from app.settings import env_bytes
from basic.realtime.body_limit import LINGER_SECONDS, BodyLimitedHTTPChannel, BodyLimitedRequestMixin

CAP = 1000


class RecordingRequest(BodyLimitedRequestMixin, http.Request):
    """Records what reaches the application instead of answering."""

    received: list = []

    def process(self) -> None:
        self.content.seek(0)
        RecordingRequest.received.append(self.content.read())
        self.setResponseCode(200)
        self.finish()


class HalfClosingTransport(StringTransport):
    write_closed = False

    def loseWriteConnection(self) -> None:  # noqa: N802
        self.write_closed = True


@pytest.fixture
def channel():
    RecordingRequest.received = []
    clock = Clock()
    made = type("Capped", (BodyLimitedHTTPChannel,), {"max_body_bytes": CAP})()
    made.requestFactory = RecordingRequest
    made.callLater = clock.callLater
    made.clock = clock
    made.makeConnection(HalfClosingTransport())
    return made


def answer_of(channel) -> tuple[bytes, dict]:
    head, _, body = channel.transport.value().partition(b"\r\n\r\n")
    return head.split(b"\r\n")[0], json.loads(body)


def test_a_declared_length_over_the_cap_is_answered_at_the_headers(channel):
    channel.dataReceived(b"POST /api/students/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n"
                         b"Expect: 100-continue\r\n\r\n")
    status, body = answer_of(channel)
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert body == {"detail": f"Request body too large: at most {CAP} bytes."}
    assert b"100 Continue" not in channel.transport.value()
    assert b"Connection: close" in channel.transport.value()
    assert channel.transport.write_closed
    written = len(channel.transport.value())
    channel.dataReceived(b"x" * 5000 + b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # dropped, not parsed
    assert len(channel.transport.value()) == written and RecordingRequest.received == []
    channel.clock.advance(LINGER_SECONDS)
    assert channel.transport.disconnecting  # cut off once the linger is over


def test_a_chunked_body_is_answered_once_past_the_cap_and_never_handed_on(channel):
    channel.dataReceived(b"POST /api/students/ HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n")
    channel.dataReceived(b"258\r\n" + b"a" * 600 + b"\r\n")  # 600 bytes: under the cap
    assert channel.transport.value() == b""
    # Past the cap, with the body's end in the same read: still no request reaches the application.
    channel.dataReceived(b"258\r\n" + b"b" * 600 + b"\r\n0\r\n\r\n")
    status, _ = answer_of(channel)
    assert status == b"HTTP/1.1 413 Request Entity Too Large"
    assert RecordingRequest.received == []


@pytest.mark.parametrize("framing", [b"Content-Length: 1000\r\n\r\n" + b"c" * 1000,
                                     b"Transfer-Encoding: chunked\r\n\r\n3e8\r\n" + b"c" * 1000 + b"\r\n0\r\n\r\n"])
def test_a_body_at_the_cap_is_handed_on_whole(channel, framing):
    channel.dataReceived(b"POST /api/students/ HTTP/1.1\r\nHost: x\r\n" + framing)
    assert RecordingRequest.received == [b"c" * 1000]
    assert channel.transport.value().startswith(b"HTTP/1.1 200 OK")


def test_malformed_http_is_a_json_400(channel):
    channel.dataReceived(b"GET / HTTP/1.1\r\nno colon\r\n\r\n")
    status, body = answer_of(channel)
    assert status == b"HTTP/1.1 400 Bad Request" and "not valid HTTP" in body["detail"]


@pytest.mark.parametrize("value", ["20M", "0", "-5", "1e6", " 12 x", "٣"])
def test_the_setting_is_a_positive_whole_number_of_bytes(monkeypatch, value):
    monkeypatch.setenv("REQUEST_MAX_BODY_BYTES", value)
    with pytest.raises(ImproperlyConfigured, match="REQUEST_MAX_BODY_BYTES"):
        env_bytes("REQUEST_MAX_BODY_BYTES", 5)


def test_the_setting_defaults_when_unset_or_empty(monkeypatch):
    monkeypatch.setenv("REQUEST_MAX_BODY_BYTES", "")
    assert env_bytes("REQUEST_MAX_BODY_BYTES", 5) == 5
    monkeypatch.setenv("REQUEST_MAX_BODY_BYTES", " 2048 ")
    assert env_bytes("REQUEST_MAX_BODY_BYTES", 5) == 2048
