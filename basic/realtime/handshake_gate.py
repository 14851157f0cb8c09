"""Admission for sockets being opened: a bounded number at once, in arrival order, and a clean early
"no" when the queue could not be served before the client gives up.

Without it a connect storm collapses rather than slows: the event loop is fair, so 2,000
handshakes arriving together all advance a step at a time and all finish late together, after
Daphne's connect timeout (5 s) has dropped every one of them; the clients retry, and the storm
repeats (docs/benchmarks.md, storms). With the gate, WS_HANDSHAKES_AT_ONCE handshakes run at a time
and finish in milliseconds, and the rest wait their turn. An arrival is refused when the line
stands still (its head has waited over WS_HANDSHAKE_MAX_WAIT_SECONDS), or when its own wait since
its request came plus the head's wait would pass `give_up` (twice the max wait, at most Daphne's
connect timeout less 2 s: 8 s). It is refused at once with a 503 before the upgrade, `Retry-After`
and a JSON reason: by Daphne itself when the socket arrives (basic/realtime/server.py, no
application is even started), by the middleware when a queued socket's wait runs out (ASGI's
denial-response extension, which our server offers). Under a server without that extension the
socket is accepted only to say so and closed with 1013 and the same reason. Clients back off with
full jitter and at least the hint (console: sockets.js; CLI: basic/cli/stream.py), so the
crowd spreads out and is let in over the next seconds.
"""
import asyncio
import logging
import math
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from basic.core import metrics
from basic.realtime import read_meter
from basic.realtime.refusals import refuse_before_upgrade

logger = logging.getLogger(__name__)

ARRIVED = "handshake_arrival"  # scope key: the socket's Arrival, stamped by our server

# How long a socket may take from its arrival to being accepted before Daphne and autobahn drop it
# without an answer (basic/realtime/server.py sets it; Daphne's own default is 5 s). Every socket
# is answered well before: let in, or refused with a 503 by 2 x WS_HANDSHAKE_MAX_WAIT_SECONDS.
CONNECT_TIMEOUT_SECONDS = 10


# The rate behind the retry hints: turns ended per second over this window, once there are this
# many, and never below PRIOR_RATE (sockets a second: a 2-core box opens about 600 once their
# requests are read). The longest hint: our clients honour up to 60 s (basic/cli/stream.py).
RATE_WINDOW_SECONDS = 5.0
RATE_MIN_TURNS = 20
PRIOR_RATE = 500.0
MAX_RETRY_AFTER = 60
CLIENT_JITTER_MEAN = 1.5  # our clients wait the hint times U(1, 2)


def overloaded_reason(retry_after: int) -> dict[str, Any]:
    """The JSON a refused client gets (HTTP 503 body, or the error frame before close 1013)."""
    return {"type": "error", "code": "overloaded", "retry_after": retry_after,
            "detail": f"The server is taking in too many sockets at once; reconnect in {retry_after} s or later."}


class Arrival:
    """A socket between its arrival at the server and its turn (or refusal): `at` when its whole
    request head had come (its client is waiting from then), `queued_at` when that request was
    parsed and it joined the line (basic/realtime/read_meter.py may hold a request unparsed in
    between); `on_end` is called once when it stops waiting."""

    __slots__ = ("at", "queued_at", "waiting", "on_end")

    def __init__(self, at: float, queued_at: float | None = None, on_end: Callable[[], None] | None = None) -> None:
        self.at = at
        self.queued_at = at if queued_at is None else queued_at
        self.waiting = True
        self.on_end = on_end

    def end(self) -> None:
        """Its turn began, it was refused, or its client left."""
        self.waiting = False
        on_end, self.on_end = self.on_end, None
        if on_end is not None:
            on_end()


class HandshakeGate:
    """One event loop's (one server process's) sockets being opened.

    Overload is read from the queue itself, not from a model of it: while the oldest socket still
    waiting for its turn has waited longer than `max_wait`, the queue is draining too slowly and
    new arrivals are refused. (A model of the rate failed here: under a storm the loop spends
    seconds reading requests between two handshakes ending, and any rate measured then is wrong.)
    Refusing is not free in this stack, the request is read and answered, so it is kept for a
    queue that really cannot be served in time: refused clients come back, and a retry costs
    about what an accept does."""

    def __init__(self, at_once: int, max_wait: float) -> None:
        self.at_once = max(1, at_once)
        self.max_wait = max_wait
        # A socket let in waits for its turn at most this long, then is refused: well before the
        # server's own connect timeout would drop it without an answer.
        self.give_up = min(2 * max_wait, CONNECT_TIMEOUT_SECONDS - 2)
        self.running = 0
        self.waiters: deque[asyncio.Future] = deque()
        self.arrivals: deque[Arrival] = deque()  # in arrival order; done ones dropped from the left
        self.ended: deque[float] = deque()  # when recent turns ended: the drain rate
        self.promised_until = 0.0  # the latest time a refused client was told to come back

    def arrive(self, at: float, on_end: Callable[[], None] | None = None) -> Arrival:
        """A socket whose connection was taken in at `at` joins the line now."""
        arrival = Arrival(at, time.monotonic(), on_end)
        self.arrivals.append(arrival)
        return arrival

    def oldest_wait(self) -> float:
        """How long the socket longest in line has been in it, waiting for its turn (0 if none is)."""
        while self.arrivals and not self.arrivals[0].waiting:
            self.arrivals.popleft()
        if self.arrivals:
            return time.monotonic() - self.arrivals[0].queued_at
        return time.monotonic() - self.waiters[0].started if self.waiters else 0.0  # type: ignore[attr-defined]

    def full(self, waited: float = 0.0) -> bool:
        """Whether a socket about to join the line is refused: the line stands still (its head has
        been in it over `max_wait`), or this socket, which has waited `waited` since its request
        came, would wait in line past `give_up` on top of that."""
        line = self.oldest_wait()
        return line > self.max_wait or waited + line > self.give_up

    def drain_rate(self, now: float) -> float | None:
        """Turns ended per second over the last RATE_WINDOW_SECONDS (None before RATE_MIN_TURNS):
        counted up to `now`, so a loop that stalls lowers it at once."""
        self._forget_ended_before(now - RATE_WINDOW_SECONDS)
        if len(self.ended) < RATE_MIN_TURNS:
            return None
        return len(self.ended) / max(now - self.ended[0], 0.5)

    def _forget_ended_before(self, cutoff: float) -> None:
        while self.ended and self.ended[0] < cutoff:
            self.ended.popleft()

    def retry_after(self, unread: int = 0) -> int:
        """When a refused client should come back (1-60 s): a time of its own in a line of the
        clients refused before it, each 1/rate after the last, behind the sockets waiting now.

        Why each its own time: a hint shared by a whole refused crowd (how long the head of the
        line had waited, as it was) sent the crowd back together as the next storm, refused in
        turn: 10,000 sockets opening at once took 85 s that way, for 17 s of work. Our clients
        wait between the hint and twice it (full jitter above the hint, basic/cli/stream.py and
        sockets.js), so the hint is the time over CLIENT_JITTER_MEAN: they come back around their
        time on average, not up to twice as late.

        The rate: the one measured, but at least PRIOR_RATE. Neither alone will do: at a storm's
        start the loop is reading requests and few turns end, and later, while refused clients
        trickle back, turns end as fast as they come; both measure less than the process can
        take, and hints from them left it idle (100 s for 10,000). A rate too high costs less:
        a client back too early is refused again, with a later time.

        `unread`: connections taken in and not read yet (basic/realtime/read_meter.py), also ahead."""
        now = time.monotonic()
        rate = max(self.drain_rate(now) or 0.0, PRIOR_RATE)
        slot = max(now + (len(self.waiters) + unread) / rate, self.promised_until) + 1 / rate
        self.promised_until = min(slot, now + MAX_RETRY_AFTER * CLIENT_JITTER_MEAN)
        return max(1, min(MAX_RETRY_AFTER, math.ceil((slot - now) / CLIENT_JITTER_MEAN)))

    async def enter(self, timeout: float) -> bool:
        """Wait for a turn; False if none came within `timeout` (the caller refuses the socket)."""
        if self.running < self.at_once and not self.waiters:
            self.running += 1
            return True
        if timeout <= 0:
            return False
        waiter = asyncio.get_running_loop().create_future()
        waiter.started = time.monotonic()  # type: ignore[attr-defined]
        self.waiters.append(waiter)
        try:
            await asyncio.wait_for(asyncio.shield(waiter), timeout)
            return True
        except TimeoutError:
            if waiter.done() and not waiter.cancelled():  # the turn came just as time ran out
                self.leave()
            return False
        finally:
            if not waiter.done():
                waiter.cancel()
            try:
                self.waiters.remove(waiter)
            except ValueError:
                pass

    def leave(self) -> None:
        """A turn is over (the socket was accepted, refused, or failed): the next waiter's turn."""
        now = time.monotonic()
        self.ended.append(now)
        self._forget_ended_before(now - RATE_WINDOW_SECONDS)  # bounded: only the window is kept
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
    """A 503 with the JSON reason and `Retry-After`, without upgrading (basic/realtime/refusals.py)."""
    await refuse_before_upgrade(scope, receive, send, overloaded_reason(retry_after), retry_after)


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
        arrival = scope.get(ARRIVED)
        if arrival is None:  # another ASGI server: refused here if the line is too slow already
            let_in = not turns.full() and await turns.enter(turns.give_up)
        else:  # let in by our server, which put it in line: it waits out what is left of its time
            try:
                let_in = await turns.enter(turns.give_up - (time.monotonic() - arrival.at))
            finally:
                arrival.end()
        if not let_in:
            metrics.socket_closed_over_limit("overloaded")
            logger.info("socket refused: %s handshakes waiting", len(turns.waiters))
            return await refuse_overloaded(scope, receive, send, turns.retry_after(read_meter.waiting_now()))
        turn = HeldTurn(turns, send)
        try:
            return await self.application(scope, receive, turn)
        finally:
            turn.release()


class HeldTurn:
    """A socket's turn at the gate, given back when the application accepts or closes it (or
    returns). An object with slots rather than two closures and a cell: it wraps the socket's
    send for its whole life."""

    __slots__ = ("turns", "inner_send", "holding")

    def __init__(self, turns: HandshakeGate, send: Any) -> None:
        self.turns, self.inner_send, self.holding = turns, send, True

    def release(self) -> None:
        if self.holding:
            self.holding = False
            self.turns.leave()

    def send(self, message: dict) -> Any:
        # A plain method handing back the inner send's awaitable: this wraps every frame the
        # socket ever sends, and a coroutine per frame showed in fan-out to 3,000 sockets.
        if self.holding and message.get("type") in ("websocket.accept", "websocket.close"):
            self.release()
        return self.inner_send(message)

    __call__ = send  # the socket's send is this object, so `text_now` below can be found on it

    @property
    def text_now(self) -> Any:
        """The server's direct text-frame path (basic/realtime/wire.py ReplySender), if it has one:
        a text frame neither accepts nor closes, so the turn has nothing to do with it."""
        return getattr(self.inner_send, "text_now", None)

    def outlet(self, *args: Any) -> Any:
        """The server's `Outlet` for the socket (basic/realtime/wire.py), if it has one."""
        make = getattr(self.inner_send, "outlet", None)
        return make(*args) if make is not None else None
