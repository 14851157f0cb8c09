"""A web process parses a bounded number of new requests at once; the rest wait unparsed, in the
order they came, and a connection that sends nothing, or too slowly, holds no place for long
(basic/realtime/read_meter.py)."""
import pytest
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.web import http

from basic.realtime import read_meter
from basic.realtime.read_meter import SLOT_SECONDS, MeteredHTTPChannel, ReadMeter


class Waiting:
    """A connection whose request waits for a place."""

    def __init__(self, name: str, parsed: list[str]) -> None:
        self.name, self.parsed, self.transport = name, parsed, StringTransport()

    def parse_held(self) -> None:
        self.parsed.append(self.name)


@pytest.fixture
def clock() -> Clock:
    return Clock()


def meter_on(clock: Clock, limit: int) -> ReadMeter:
    return ReadMeter(limit, clock.callLater, clock.seconds)


def test_requests_past_the_limit_wait_and_are_parsed_in_the_order_they_came(clock):
    meter = meter_on(clock, limit=2)
    first, second = StringTransport(), StringTransport()
    assert meter.take(first) and meter.take(second)
    parsed: list[str] = []
    waiting = [Waiting(name, parsed) for name in "abc"]
    for channel in waiting:
        assert not meter.take(channel.transport)
        meter.hold(channel)
    assert meter.waiting() == 3
    meter.done(first)
    clock.advance(0)  # places are given on the next turn of the loop, never inside `done`
    assert parsed == ["a"] and meter.waiting() == 2
    meter.done(second)
    meter.done(second)  # twice is once
    clock.advance(0)
    assert parsed == ["a", "b"]
    assert not meter.take(StringTransport())  # one still waits: a newcomer goes behind it
    meter.done(waiting[0].transport)
    clock.advance(0)
    assert parsed == ["a", "b", "c"]


def test_a_place_held_too_long_is_given_to_the_next_even_if_nothing_ends(clock):
    meter = meter_on(clock, limit=1)
    assert meter.take(StringTransport())  # a client that sends its headers a byte a minute
    parsed: list[str] = []
    meter.hold(Waiting("next", parsed))
    clock.advance(SLOT_SECONDS / 2)
    assert parsed == []
    clock.advance(SLOT_SECONDS / 2 + 0.01)
    clock.advance(0)
    assert parsed == ["next"]


def test_a_client_that_left_while_waiting_is_skipped(clock):
    meter = meter_on(clock, limit=1)
    busy = StringTransport()
    assert meter.take(busy)
    parsed: list[str] = []
    gone, next_one = Waiting("gone", parsed), Waiting("next", parsed)
    gone.transport.disconnected = True
    meter.hold(gone)
    meter.hold(next_one)
    meter.done(busy)
    clock.advance(0)
    assert parsed == ["next"]


class Recorded(http.Request):
    seen: list[bytes] = []

    def process(self) -> None:
        Recorded.seen.append(self.uri)
        self.setResponseCode(204)
        self.finish()


def upgrade(path: bytes) -> bytes:
    """A WebSocket upgrade request's head (a plain GET as far as Recorded is concerned)."""
    return b"GET %s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" % path


def connected_channel(clock: Clock) -> tuple[MeteredHTTPChannel, StringTransport]:
    channel = MeteredHTTPChannel()
    channel.requestFactory = Recorded
    channel.callLater = clock.callLater
    transport = StringTransport()
    channel.makeConnection(transport)
    return channel, transport


def test_a_request_over_the_limit_is_kept_unparsed_and_its_connection_not_read_until_a_place_frees(
        clock, monkeypatch):
    monkeypatch.setattr(read_meter, "_meter", meter_on(clock, limit=1))
    Recorded.seen = []
    idle, idle_transport = connected_channel(clock)  # connected, sent nothing: takes no place
    first, first_transport = connected_channel(clock)
    second, second_transport = connected_channel(clock)
    first.dataReceived(upgrade(b"/first"))
    assert Recorded.seen == [b"/first"]
    second.dataReceived(upgrade(b"/second"))
    assert Recorded.seen == [b"/first"]  # the one place is taken (nothing said the request ended)
    assert second_transport.producerState == "paused" and read_meter.waiting_now() == 1
    read_meter.meter().done(first_transport)  # e.g. its socket's turn at the gate began
    clock.advance(0)
    assert Recorded.seen == [b"/first", b"/second"]
    assert second_transport.producerState == "producing" and read_meter.waiting_now() == 0
    assert idle_transport.producerState == "producing"
    second.connectionLost(None)
    assert not read_meter.meter().parsing


def test_a_client_sending_its_head_slowly_takes_no_place_until_the_head_is_whole(clock, monkeypatch):
    monkeypatch.setattr(read_meter, "_meter", meter_on(clock, limit=1))
    Recorded.seen = []
    slow, slow_transport = connected_channel(clock)
    for byte in upgrade(b"/slow")[:-2]:
        slow.dataReceived(bytes([byte]))  # a byte at a time (slowloris)
    assert not read_meter.meter().parsing
    quick, _ = connected_channel(clock)
    quick.dataReceived(upgrade(b"/quick"))
    assert Recorded.seen == [b"/quick"]  # the one place was free for it
    read_meter.meter().done(quick.transport)
    slow.dataReceived(b"\r\n")
    assert Recorded.seen == [b"/quick", b"/slow"]  # whole now: parsed as any other


def test_a_head_that_never_ends_is_left_to_the_parser_past_its_size_limit(clock, monkeypatch):
    monkeypatch.setattr(read_meter, "_meter", meter_on(clock, limit=1))
    channel, transport = connected_channel(clock)
    channel.dataReceived(b"GET / HTTP/1.1\r\nX-Long: " + b"a" * read_meter.MAX_HEAD_BYTES)
    assert transport.disconnecting  # Twisted hangs up on a header line over its limit


def test_a_plain_request_takes_no_place_and_is_parsed_at_once_even_while_sockets_wait(clock, monkeypatch):
    """A socket storm does not hold up REST calls or a liveness probe."""
    monkeypatch.setattr(read_meter, "_meter", meter_on(clock, limit=1))
    Recorded.seen = []
    first, _ = connected_channel(clock)
    first.dataReceived(upgrade(b"/ws/first/"))
    waiting, _ = connected_channel(clock)
    waiting.dataReceived(upgrade(b"/ws/waiting/"))
    assert read_meter.waiting_now() == 1
    probe, probe_transport = connected_channel(clock)
    probe.dataReceived(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    assert Recorded.seen == [b"/ws/first/", b"/healthz"]
    assert probe_transport not in read_meter.meter().parsing
