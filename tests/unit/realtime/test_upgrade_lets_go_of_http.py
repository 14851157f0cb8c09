"""After the WebSocket upgrade the HTTP channel (and through it its request and headers) must not
stay tied to the connection: it did, as the transport's producer, ~3 KiB of every idle socket."""
from types import SimpleNamespace

from basic.realtime.socket_memory import let_go_of_http


class FakeTransport:
    def __init__(self) -> None:
        self.producer = None

    def registerProducer(self, producer, streaming) -> None:  # noqa: N802 (Twisted's name)
        self.producer = producer

    def unregisterProducer(self) -> None:  # noqa: N802
        self.producer = None


def test_the_channel_is_no_longer_the_transports_producer_and_its_timer_is_off():
    timeouts = []
    channel = SimpleNamespace(setTimeout=timeouts.append)
    transport = FakeTransport()
    transport.registerProducer(channel, True)
    let_go_of_http(channel, transport)
    assert transport.producer is None
    assert timeouts == [None]


def test_another_producer_is_left_alone():
    other = object()
    transport = FakeTransport()
    transport.registerProducer(other, True)
    let_go_of_http(SimpleNamespace(setTimeout=lambda value: None), transport)
    assert transport.producer is other
