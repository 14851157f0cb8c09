"""How much a socket owes its client, read from Twisted's transport (basic/realtime/server.py)."""
from types import SimpleNamespace

from twisted.internet.abstract import FileDescriptor

from basic.realtime.server import unsent_bytes


def test_unsent_bytes_counts_both_twisted_buffers():
    transport = FileDescriptor.__new__(FileDescriptor)
    transport.dataBuffer, transport.offset, transport._tempDataBuffer, transport._tempDataLen = b"x" * 100, 40, [], 0
    assert unsent_bytes(transport) == 60
    transport._tempDataBuffer, transport._tempDataLen = [b"y" * 25], 25
    assert unsent_bytes(transport) == 85


def test_a_wrapper_is_looked_through_and_no_transport_owes_nothing():
    tcp = SimpleNamespace(dataBuffer=b"z" * 10, offset=0, _tempDataLen=5)
    assert unsent_bytes(SimpleNamespace(transport=tcp)) == 15  # e.g. TLS over TCP
    assert unsent_bytes(None) == 0
    assert unsent_bytes(SimpleNamespace()) == 0


def test_a_text_sent_to_many_sockets_is_framed_once():
    from autobahn.twisted.websocket import WebSocketServerFactory

    from basic.realtime.server import prepared_frame

    factory = WebSocketServerFactory()
    text = '{"type": "chat.message", "message": "hi"}'
    frame = prepared_frame(factory, text)
    assert prepared_frame(factory, text) is frame
    assert frame.payloadHybi == b"\x81" + bytes([len(text)]) + text.encode()  # FIN + text opcode, unmasked
    equal_but_another_object = (text + " ")[:-1]
    assert prepared_frame(factory, equal_but_another_object) is not frame
