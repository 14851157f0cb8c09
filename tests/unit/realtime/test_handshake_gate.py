"""The handshake gate's bookkeeping: turns in arrival order, a bounded wait, an early "full"."""
import asyncio
import json
import math
import time

import pytest

from basic.realtime import handshake_gate
from basic.realtime.handshake_gate import HandshakeGate


@pytest.mark.asyncio
async def test_turns_are_given_in_arrival_order_and_never_more_than_at_once():
    gate = HandshakeGate(at_once=2, max_wait=5)
    assert await gate.enter(1) and await gate.enter(1)
    order: list[int] = []

    async def wait_turn(n: int) -> None:
        assert await gate.enter(5)
        order.append(n)

    waiting = [asyncio.create_task(wait_turn(n)) for n in range(3)]
    await asyncio.sleep(0.01)
    assert order == [] and gate.running == 2 and len(gate.waiters) == 3
    gate.leave()
    await asyncio.sleep(0.01)
    assert order == [0] and gate.running == 2
    gate.leave()
    gate.leave()
    await asyncio.gather(*waiting)
    assert order == [0, 1, 2]
    for _ in range(2):
        gate.leave()
    assert gate.running == 0 and not gate.waiters


@pytest.mark.asyncio
async def test_a_wait_that_runs_out_gives_up_and_leaves_no_trace():
    gate = HandshakeGate(at_once=1, max_wait=5)
    assert await gate.enter(1)
    assert await gate.enter(0.05) is False
    assert await gate.enter(0) is False
    assert not gate.waiters and gate.running == 1
    gate.leave()
    assert gate.running == 0
    assert await gate.enter(0)  # a free slot needs no waiting at all


def test_arrivals_are_refused_while_the_oldest_in_line_has_waited_too_long():
    gate = HandshakeGate(at_once=1, max_wait=1.0)
    now = time.monotonic()
    first, second = gate.arrive(now - 0.5), gate.arrive(now)
    assert not gate.full()
    first.queued_at = now - 3.5  # the head of the line has been in it 3.5 s
    assert gate.full()  # (when to come back: the tests of retry_after below)
    first.end()  # it got its turn: the next in line has only just arrived
    assert not gate.full()
    second.end()
    assert gate.oldest_wait() == 0 and not gate.arrivals


def test_a_socket_whose_request_waited_unread_is_refused_if_the_line_would_take_it_past_giving_up():
    """The line is counted from when each socket joined it; a socket's own wait before that (its
    request held unparsed under a storm, basic/realtime/read_meter.py) is added when it arrives:
    let in only if it can still have its turn before the server would give up on it."""
    gate = HandshakeGate(at_once=1, max_wait=1.0)  # gives up after 2 s
    head = gate.arrive(time.monotonic() - 5)  # its connection came 5 s ago, its request was parsed now
    head.queued_at = time.monotonic() - 0.5  # and it has been in line half a second
    assert not gate.full(waited=0.0) and not gate.full(waited=1.4)
    assert gate.full(waited=1.6)  # 1.6 s held + 0.5 s of line > 2 s
    head.end()
    assert not gate.full(waited=1.9) and gate.full(waited=2.1)


def test_an_arrival_says_once_that_it_stopped_waiting():
    ended = []
    arrival = HandshakeGate(at_once=1, max_wait=1.0).arrive(time.monotonic(), lambda: ended.append(1))
    arrival.end()
    arrival.end()
    assert ended == [1] and not arrival.waiting


def hints_spread(hints: list[int], rate: float) -> None:
    """Hints that give each refused client its own time: in order, from 1 s, and no hint given to
    more than the rate lets in over the time it stands for (our clients wait hint x U(1, 2))."""
    per_hint = handshake_gate.CLIENT_JITTER_MEAN * rate
    assert hints == sorted(hints) and hints[0] == 1
    assert max(hints.count(h) for h in set(hints)) <= per_hint + 1


def test_a_refused_crowd_is_told_to_come_back_spread_out_at_the_rate_the_line_drains(monkeypatch):
    """One hint for a whole refused crowd sent it back as the next storm (10,000 sockets took 85 s
    for 17 s of work): each refusal gets its own time, 1/rate after the last one, behind the
    sockets still waiting, and a hint that brings our clients back around it."""
    clock = [1000.0]
    monkeypatch.setattr(handshake_gate.time, "monotonic", lambda: clock[0])
    gate = HandshakeGate(at_once=1, max_wait=1.0)
    rate = 2 * handshake_gate.PRIOR_RATE  # measured above the prior: the measure counts
    for _ in range(int(rate)):  # over one second
        gate.running = 1
        gate.leave()
        clock[0] += 1 / rate
    gate.arrive(clock[0] - 5)  # the head of the line has waited 5 s
    hints = [gate.retry_after() for _ in range(int(rate * 11.5))]  # 11.5 s of what the line takes
    hints_spread(hints, rate)
    assert hints[-1] == math.ceil(11.5 / handshake_gate.CLIENT_JITTER_MEAN)
    clock[0] += 30  # the promised times have passed: the next refused comes back soon
    assert gate.retry_after() == 1


def test_before_a_rate_is_measured_a_refused_crowd_is_spread_at_the_prior_rate():
    """At a storm's start no turn has ended yet (the loop is still reading requests): the crowd is
    spread all the same, as if the process took PRIOR_RATE a second, up to the longest hint."""
    gate = HandshakeGate(at_once=1, max_wait=1.0)
    gate.arrive(time.monotonic() - 6.5)
    hints = [gate.retry_after() for _ in range(int(handshake_gate.PRIOR_RATE * 14.5))]
    hints_spread(hints, handshake_gate.PRIOR_RATE)
    assert hints[-1] == math.ceil(14.5 / handshake_gate.CLIENT_JITTER_MEAN)
    more = [gate.retry_after() for _ in range(int(handshake_gate.PRIOR_RATE * 100))]
    assert max(more) == handshake_gate.MAX_RETRY_AFTER


def test_a_socket_let_in_gives_up_its_turn_before_the_server_would_drop_it():
    assert HandshakeGate(at_once=1, max_wait=2).give_up == 4
    assert HandshakeGate(at_once=1, max_wait=30).give_up == handshake_gate.CONNECT_TIMEOUT_SECONDS - 2


def test_the_refusal_says_why_and_when_to_come_back():
    reason = handshake_gate.overloaded_reason(3)
    assert reason["code"] == "overloaded" and reason["retry_after"] == 3 and "3 s" in reason["detail"]


async def drive(app, scope: dict) -> list[dict]:  # type: ignore[no-untyped-def]
    """Run an ASGI WebSocket app through its handshake; what it sent."""
    inbox: asyncio.Queue = asyncio.Queue()
    await inbox.put({"type": "websocket.connect"})
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await asyncio.wait_for(app(scope, inbox.get, send), 5)
    return sent


async def accept_everyone(scope, receive, send):  # type: ignore[no-untyped-def]
    await receive()
    await send({"type": "websocket.accept"})


@pytest.mark.asyncio
@pytest.mark.parametrize("denial_extension", [True, False])
async def test_a_socket_whose_wait_runs_out_is_refused_with_the_reason(settings, denial_extension):
    settings.WS_HANDSHAKES_AT_ONCE, settings.WS_HANDSHAKE_MAX_WAIT_SECONDS = 1, 0.025
    handshake_gate._gates.clear()
    app = handshake_gate.HandshakeGateMiddleware(accept_everyone)
    scope = {"type": "websocket", "path": "/chat/",
             "extensions": {"websocket.http.response": {}} if denial_extension else {}}
    assert await handshake_gate.gate().enter(1)  # the one turn is taken
    sent = await drive(app, scope)
    if denial_extension:  # a 503 with the reason and Retry-After, no upgrade
        start, body = sent
        assert start["type"] == "websocket.http.response.start" and start["status"] == 503
        assert dict(start["headers"])[b"retry-after"] == b"1"
        assert json.loads(body["body"])["code"] == "overloaded"
    else:  # accepted only to say why, then 1013
        assert [m["type"] for m in sent] == ["websocket.accept", "websocket.send", "websocket.close"]
        assert json.loads(sent[1]["text"])["retry_after"] >= 1 and sent[2]["code"] == 1013
    handshake_gate.gate().leave()
    assert [m["type"] for m in await drive(app, scope)] == ["websocket.accept"]  # a free turn: let in
    assert handshake_gate.gate().running == 0  # and the turn ended with the accept
