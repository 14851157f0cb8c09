"""Admission for sockets being opened: a bounded number at once, in arrival order, and a clean early
"no" when the queue could not be served before the client gives up.

Without it a connect storm collapses rather than slows: the event loop is fair, so 2,000
handshakes arriving together all advance a step at a time and all finish late together, after
Daphne's connect timeout (5 s) has dropped every one of them; the clients retry, and the storm
repeats (docs/benchmarks.md, storms). With the gate, WS_HANDSHAKES_AT_ONCE handshakes run at a time
and finish in milliseconds, and the rest wait their turn. An arrival that would wait longer than
WS_HANDSHAKE_MAX_WAIT_SECONDS (estimated from how long handshakes take right now) is refused at
once with a 503 before the upgrade, `Retry-After` and a JSON reason: by Daphne itself when the
socket arrives (basic/realtime/server.py, no application is even started), by the middleware
when a queued socket's wait runs out (ASGI's denial-response extension, which our server offers).
Under a server without that extension the socket is accepted only to say so and closed with 1013
and the same reason. Clients back off
with full jitter and at least the hint (console: sockets.js; CLI: basic/cli/stream.py), so the
crowd spreads out and is let in over the next seconds.
"""
import asyncio
import json
import logging
import math
import time
from collections import deque
from typing import Any

from basic.core import metrics
from basic.realtime.close_codes import CLOSE_TRY_AGAIN_LATER

logger = logging.getLogger(__name__)

ARRIVED = "handshake_arrived"  # scope key: time.monotonic() when the server got the upgrade request

RATE_WINDOW = 256  # the last this many handshakes give the current rate
PRIOR_RATE = 400.0  # handshakes/s assumed until measured (what one process did on a 2-core box)


def overloaded_reason(retry_after: int) -> dict[str, Any]:
    """The JSON a refused client gets (HTTP 503 body, or the error frame before close 1013)."""
    return {"type": "error", "code": "overloaded", "retry_after": retry_after,
            "detail": f"The server is taking in too many sockets at once; reconnect in {retry_after} s or later."}


class HandshakeGate:
    """One event loop's (one server process's) sockets being opened.

    How long an arrival would wait is the queue ahead of it over the rate handshakes have been
    ending at lately: under a storm the process is CPU-bound, and that rate (not the number let in
    at once) is what drains the queue."""

    def __init__(self, at_once: int, max_wait: float) -> None:
        self.at_once = max(1, at_once)
        self.max_wait = max_wait
        self.running = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.ended: deque[float] = deque(maxlen=RATE_WINDOW)  # when recent handshakes ended
        # Let in by the server (basic/realtime/server.py) and not yet given a turn or refused: under
        # a storm most of them have not even reached the middleware, so the waiters undercount.
        self.arrived = 0

    def rate(self) -> float:
        """Handshakes ended per second lately (PRIOR_RATE before there is a measure)."""
        if len(self.ended) < 16 or time.monotonic() - self.ended[-1] > 1.0:
            return PRIOR_RATE
        span = self.ended[-1] - self.ended[0]
        return (len(self.ended) - 1) / span if span > 0 else PRIOR_RATE

    def expected_wait(self) -> float:
        """How long an arrival now would wait for its turn."""
        ahead = max(self.arrived, len(self.waiters))
        if self.running < self.at_once and not ahead:
            return 0.0
        return (ahead + 1) / self.rate()

    def retry_after(self) -> int:
        """Seconds after which the queue ahead of a refused client will have been served."""
        return max(1, math.ceil((max(self.arrived, len(self.waiters)) + self.running) / self.rate()))

    def full(self, already_waited: float = 0.0) -> bool:
        """Would an arrival that has waited `already_waited` seconds so far miss its deadline?"""
        return already_waited + self.expected_wait() > self.max_wait

    async def enter(self, timeout: float) -> bool:
        """Wait for a turn; False if none came within `timeout` (the caller refuses the socket)."""
        if self.running < self.at_once and not self.waiters:
            self.running += 1
            return True
        if timeout <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # the turn came just as time ran out
                self.leave(ended=False)
            return False
        finally:
            if not waiter.done():
                waiter.cancel()
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass

    def leave(self, ended: bool = True) -> None:
        """A turn is over (the socket was accepted, refused, or failed): the next waiter's turn."""
        if ended:
            self.ended.append(time.monotonic())
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)  # the turn passes straight to it: `running` stays the same
                return
        self.running -= 1


_gates: dict[int, HandshakeGate] = {}


def gate() -> HandshakeGate:
    """This event loop's gate, sized by WS_HANDSHAKES_AT_ONCE and WS_HANDSHAKE_MAX_WAIT_SECONDS."""
    from django.conf import settings

    key = id(asyncio.get_running_loop())
    found = _gates.get(key)
    if found is None:
        if len(_gates) > 64:  # one per test's loop: forget old ones
            _gates.clear()
        found = _gates[key] = HandshakeGate(settings.WS_HANDSHAKES_AT_ONCE, settings.WS_HANDSHAKE_MAX_WAIT_SECONDS)
    return found


async def refuse_overloaded(scope: dict[str, Any], receive: Any, send: Any, retry_after: int) -> None:
    """A 503 with the JSON reason and `Retry-After`, without upgrading, where the server offers ASGI's
    denial responses (ours does: basic/realtime/server.py); elsewhere accept only to say why, then
    close 1013 (a refused handshake would hide the reason)."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    reason = json.dumps(overloaded_reason(retry_after)).encode()
    if "websocket.http.response" in scope.get("extensions", {}):
        await send({"type": "websocket.http.response.start", "status": 503,
                    "headers": [(b"content-type", b"application/json"),
                                (b"retry-after", str(retry_after).encode())]})
        await send({"type": "websocket.http.response.body", "body": reason})
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": reason.decode()})
    await send({"type": "websocket.close", "code": CLOSE_TRY_AGAIN_LATER})


class HandshakeGateMiddleware:
    """Runs each socket's connect in its turn (HandshakeGate); the turn ends when the application
    accepts or closes the socket, or returns."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Any, send: Any) -> Any:
        if scope.get("type") != "websocket":
            return await self.application(scope, receive, send)
        turns = gate()
        # Daphne stamps when the socket arrived (basic/realtime/server.py): under a storm the
        # application may start well after that, and the client's clock started then.
        arrived = scope.get(ARRIVED)
        if arrived is None:  # another ASGI server: refused here if the queue is too long already
            let_in = not turns.full() and await turns.enter(turns.max_wait)
        else:  # let in by our server, which counted it: it waits out what is left of its time
            try:
                let_in = await turns.enter(turns.max_wait - (time.monotonic() - arrived))
            finally:
                turns.arrived = max(0, turns.arrived - 1)
        if not let_in:
            metrics.socket_closed_over_limit("overloaded")
            logger.info("socket refused: %s handshakes waiting", len(turns.waiters))
            return await refuse_overloaded(scope, receive, send, turns.retry_after())
        holding = True

        def release() -> None:
            nonlocal holding
            if holding:
                holding = False
                turns.leave()

        async def send_releasing(message: dict) -> None:
            if message.get("type") in ("websocket.accept", "websocket.close"):
                release()
            await send(message)

        try:
            return await self.application(scope, receive, send_releasing)
        finally:
            release()
