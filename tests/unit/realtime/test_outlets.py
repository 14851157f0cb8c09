"""The fan-out loop on sockets' outlets (basic/realtime/wire.py): what goes to the kernel at once,
what waits behind a backlog, and what is handed back to the socket's consumer."""
import socket
from types import SimpleNamespace

import pytest
from autobahn.twisted.websocket import WebSocketServerFactory

from basic.realtime.job_feed import JobFeed
from basic.realtime.wire import Outlet, ReplySender, send_group_message

FACTORY = WebSocketServerFactory()


def frame_of(text: str) -> bytes:
    return b"\x81" + bytes([len(text)]) + text.encode()


class Transport:
    def __init__(self, sock) -> None:
        self.socket, self.dataBuffer, self._tempDataLen, self.written = sock, b"", 0, []

    def write(self, data: bytes) -> None:
        self.written.append(data)


class Protocol:
    STATE_OPEN, STATE_CLOSING = 3, 2

    def __init__(self, sock) -> None:
        self.state, self.factory, self.outlet = self.STATE_OPEN, FACTORY, None
        self.transport = Transport(sock)
        self.texts: list[str] = []

    def send_text(self, text: str) -> None:
        self.texts.append(text)


@pytest.fixture
def pairs():
    made = []

    def make():
        ours, theirs = socket.socketpair()
        ours.setblocking(False)
        theirs.settimeout(1)
        made.append((ours, theirs))
        return ours, theirs

    yield make
    for ours, theirs in made:
        ours.close()
        theirs.close()


def text_of(message):
    return message.get("text")


def outlet_on(sock, feed=None, text=text_of) -> Outlet:
    protocol = Protocol(sock)
    outlet = protocol.outlet = Outlet(protocol, text, handler=lambda message: None, feed=feed)
    outlet.open_if(True)
    return outlet


def test_each_ready_socket_gets_the_frame_and_the_frames_are_counted(pairs):
    sockets = [pairs() for _ in range(3)]
    outlets = [outlet_on(ours) for ours, _ in sockets]
    for outlet in outlets:
        outlet.counter = "route"
    counted = []
    later = send_group_message(outlets, {"text": "hello"}, counted.append)
    assert later == []
    assert [theirs.recv(100) for _, theirs in sockets] == [frame_of("hello")] * 3
    assert counted == [{"route": 3}]


def test_what_an_outlet_cannot_send_goes_back_to_its_consumer(pairs):
    (ready_sock, ready_peer), (idle_sock, idle_peer), (other_sock, other_peer) = pairs(), pairs(), pairs()
    ready, not_ready = outlet_on(ready_sock), outlet_on(idle_sock)
    not_ready.open_if(False)  # e.g. a resume under way
    not_its_kind = outlet_on(other_sock, text=lambda message: None)
    later = send_group_message([ready, not_ready, not_its_kind], {"text": "hi"})
    assert later == [not_ready, not_its_kind]
    assert ready_peer.recv(100) == frame_of("hi")
    for peer in (idle_peer, other_peer):
        peer.setblocking(False)
        with pytest.raises(BlockingIOError):
            peer.recv(100)


def test_a_socket_with_a_backlog_queues_behind_it_through_the_protocol(pairs):
    ours, theirs = pairs()
    outlet = outlet_on(ours)
    outlet.transport.dataBuffer = b"older bytes not yet sent"
    send_group_message([outlet], {"text": "next"})
    assert outlet.protocol.texts == ["next"]  # where the slow-client bound (4008) is kept
    theirs.setblocking(False)
    with pytest.raises(BlockingIOError):
        theirs.recv(100)


def test_what_the_kernel_does_not_take_is_left_to_twisted():
    class Partial:
        def __init__(self, takes):
            self.takes = takes

        def send(self, data):
            if self.takes is None:
                raise BlockingIOError
            return self.takes

    frame = frame_of("abcdef")
    some, none = outlet_on(Partial(3)), outlet_on(Partial(None))
    send_group_message([some, none], {"text": "abcdef"})
    assert some.transport.written == [frame[3:]]
    assert none.transport.written == [frame]


def test_a_numbered_feed_sends_only_its_next_seq(pairs):
    ours, theirs = pairs()
    feed = JobFeed()
    feed.last_seq = 4
    outlet = outlet_on(ours, feed=feed, text=lambda message: f"seq {message['event']['seq']}")

    def event(seq, kind="job.progress"):
        return {"event": {"seq": seq, "type": kind}}

    assert send_group_message([outlet], event(4)) == []  # sent already: dropped
    assert send_group_message([outlet], event(6)) == [outlet]  # seq 5 missing: the consumer fills it
    assert feed.last_seq == 4
    assert send_group_message([outlet], event(5, "job.done")) == []
    assert (feed.last_seq, feed.ended) == (5, True)
    assert theirs.recv(100) == frame_of("seq 5")


def test_a_text_that_fails_to_build_hands_the_message_to_every_consumer_of_that_kind(pairs):
    def broken(message):
        raise ValueError("a bug")

    first, second, fine = outlet_on(pairs()[0], text=broken), outlet_on(pairs()[0], text=broken), outlet_on(pairs()[0])
    later = send_group_message([first, second, fine], {"text": "x"})
    assert later == [first, second]
    assert not first.ready and fine.ready  # the text is built once a message: the second is not tried again


def test_the_protocol_closes_its_outlet_as_it_leaves_open():
    from basic.realtime.server import BoundedWebSocketProtocol

    protocol = BoundedWebSocketProtocol.__new__(BoundedWebSocketProtocol)
    protocol.state = protocol.STATE_OPEN
    outlet = protocol.outlet = Outlet(SimpleNamespace(transport=SimpleNamespace(socket=None)), text_of, print)
    outlet.protocol = protocol
    outlet.open_if(True)
    assert outlet.ready
    protocol.state = protocol.STATE_CLOSING
    assert not outlet.ready and protocol.state == protocol.STATE_CLOSING
    outlet.open_if(True)  # the consumer cannot open it again
    assert not outlet.ready


def test_an_outlet_the_protocol_let_go_of_stays_closed(pairs):
    outlet = outlet_on(pairs()[0])
    outlet.protocol.outlet = None  # a frame waits in autobahn's own queue (server.py sendData)
    outlet.open_if(True)
    assert not outlet.ready


def test_no_outlet_where_frames_cannot_go_to_the_socket_directly(pairs):
    ours, _ = pairs()

    def sender(**protocol_fields):
        protocol = Protocol(ours)
        for name, value in protocol_fields.items():
            setattr(protocol, name, value)
        return ReplySender(server=None, protocol=protocol)

    assert isinstance(sender().outlet(text_of, print), Outlet)
    assert sender(_perMessageCompress=object()).outlet(text_of, print) is None  # each frame compressed
    tls = Transport(ours)
    tls.TLS = True
    assert sender(transport=tls).outlet(text_of, print) is None
    assert sender(transport=SimpleNamespace(dataBuffer=b"", _tempDataLen=0)).outlet(text_of, print) is None
