"""A fan-out's frames go from the consumer to the protocol with no coroutine chain between
(basic/realtime/wire.py ReplySender, ValidatingJsonConsumer.send_text); Daphne's rules still hold."""
import asyncio

from autobahn.exception import Disconnected

from basic.realtime.consumers.base import ValidatingJsonConsumer
from basic.realtime.wire import ReplySender


class FakeProtocol:
    def __init__(self) -> None:
        self.texts: list[str] = []

    def send_text(self, text: str) -> None:
        self.texts.append(text)


class FakeServer:
    def __init__(self, protocol: FakeProtocol, connection: dict) -> None:
        self.connections = {protocol: connection}
        self.replies: list = []

    async def handle_reply(self, protocol, message):
        self.replies.append((protocol, message))


def test_text_now_is_the_protocols_own_send_text():
    protocol = FakeProtocol()
    sender = ReplySender(FakeServer(protocol, {}), protocol)
    sender.text_now("one")
    assert protocol.texts == ["one"]
    assert ReplySender(FakeServer(object(), {}), object()).text_now is None  # an HTTP protocol


def test_every_other_message_still_goes_through_daphnes_reply():
    protocol = FakeProtocol()
    server = FakeServer(protocol, {})
    asyncio.run(ReplySender(server, protocol)({"type": "websocket.accept"}))
    assert server.replies == [(protocol, {"type": "websocket.accept"})]


def test_a_consumer_sends_text_frames_directly_and_notices_a_client_gone():
    consumer = ValidatingJsonConsumer()
    sent = []

    class Send:
        async def __call__(self, message):  # the slow path: must not be taken
            raise AssertionError(message)

        def text_now(self, text):
            if text == "gone":
                raise Disconnected("the client left")
            sent.append(text)

    consumer._outer_send = Send()
    asyncio.run(consumer.send_text("hello"))
    assert sent == ["hello"] and not consumer.closed
    asyncio.run(consumer.send_text("gone"))
    assert consumer.closed
    asyncio.run(consumer.send_text("after"))  # a closed socket sends nothing
    assert sent == ["hello"]


def test_the_middlewares_pass_the_direct_path_through_and_count_its_frames():
    from basic.core.metrics import WS_SENT
    from basic.realtime.handshake_gate import HandshakeGate, HeldTurn
    from basic.realtime.socket_metrics import CountedSocket, _frames_sent

    protocol = FakeProtocol()
    sender = ReplySender(FakeServer(protocol, {}), protocol)
    counted = CountedSocket("/ws/chat/", None, HeldTurn(HandshakeGate(1, 1.0), sender))
    before = WS_SENT.labels(route="/ws/chat/")._value.get()
    counted.text_now("hi")
    _frames_sent.flush()
    assert protocol.texts == ["hi"]
    assert WS_SENT.labels(route="/ws/chat/")._value.get() == before + 1

    async def plain_send(message):
        pass

    assert CountedSocket("/ws/chat/", None, HeldTurn(HandshakeGate(1, 1.0), plain_send)).text_now is None
