"""How much a socket owes its client, read from Twisted's transport (basic/realtime/server.py)."""
from types import SimpleNamespace

from twisted.internet.abstract import FileDescriptor

from basic.realtime.wire import unsent_bytes


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

    from basic.realtime.wire import prepared_frame

    factory = WebSocketServerFactory()
    text = '{"type": "chat.message", "message": "hi"}'
    frame = prepared_frame(factory, text)
    assert prepared_frame(factory, text) is frame
    assert frame.payloadHybi == b"\x81" + bytes([len(text)]) + text.encode()  # FIN + text opcode, unmasked
    equal_but_another_object = (text + " ")[:-1]
    assert prepared_frame(factory, equal_but_another_object) is not frame


def test_the_file_limit_counts_open_connections_not_those_waiting_to_be_reaped():
    """Daphne keeps a closed connection in `connections` until its checker reaps it (once a second,
    after the application ended): counted there, closed sockets kept new ones out at the limit."""
    from basic.realtime.server import BoundedServer

    server = BoundedServer(application=None, endpoints=["tcp:port=0:interface=127.0.0.1"], signal_handlers=False)
    server.connections = {}  # as run() starts it
    sockets = [object() for _ in range(3)]
    for socket in sockets:
        server.protocol_connected(socket)
    assert server.open_connections == 3
    server.protocol_disconnected(sockets[0])
    server.protocol_disconnected(sockets[0])  # Daphne may say it twice (an HTTP request's lost and finish)
    assert server.open_connections == 2 and len(server.connections) == 3  # not reaped yet
    server.protocol_disconnected(sockets[1])
    del server.connections[sockets[0]]  # reaped
    server.protocol_disconnected(sockets[2])
    assert server.open_connections == 0


def test_the_server_sends_the_registry_close_codes_autobahn_refuses_to_applications():
    """autobahn's sendClose() takes only 1000 and 3000-4999: a crashed consumer's 1011 raised a
    second "Exception inside application" (seen in the chaos soak) instead of reaching the client."""
    from basic.realtime import close_codes
    from basic.realtime.server import BoundedWebSocketProtocol

    for code in (close_codes.CLOSE_INTERNAL_ERROR, close_codes.CLOSE_TRY_AGAIN_LATER):
        sent: list[tuple[int, bool]] = []
        protocol = SimpleNamespace(state="open", STATE_OPEN="open",
                                   sendCloseFrame=lambda code, isReply, into=sent: into.append((code, isReply)))
        BoundedWebSocketProtocol.serverClose(protocol, code=code)
        assert sent == [(code, False)]
