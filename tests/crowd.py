"""A crowd of reconnecting socket clients in one asyncio process, for restart tests and
bench/bench_restart.py: each client reconnects as the browser console does
(basic/static/basic/js/sockets.js) or as the CLI does (basic/cli/stream.py), and job watchers
resume with `?after=<last seq>`, so what a restart costs the crowd can be measured and every job
stream checked for gaps and repeats."""
import asyncio
import json
import random
import statistics
import time
from dataclasses import dataclass, field
from typing import Any

import websockets
from websockets.exceptions import InvalidStatus

from basic.cli.stream import backoff_seconds, retry_hint

TERMINAL = {"job.done", "job.failed", "job.cancelled"}
FINAL_CLOSES = {4400, 4401, 4403, 4404}  # the server refused the request itself: never retried
# The console's backoff (sockets.js RETRY_BASE_MS, RETRY_MAX_MS).
CONSOLE_BASE_SECONDS, CONSOLE_MAX_SECONDS = 0.5, 8.0


def console_backoff(attempts: int, hint: float | None) -> float:
    """sockets.js `scheduleRetry`: full jitter up to a ceiling doubling from 0.5 s to 8 s, never sooner
    than a 1013's `retry_after` (times 1-2). A browser cannot read a refused handshake's 503 (it sees
    only close 1006), so a 503's Retry-After never reaches it."""
    ceiling = min(CONSOLE_MAX_SECONDS, CONSOLE_BASE_SECONDS * 2 ** attempts)
    return max(random.uniform(0, ceiling), (hint or 0.0) * random.uniform(1, 2))


@dataclass
class Client:
    """One socket's life across drops. `path` has no query; job watchers add `after=`."""

    path: str
    token: str
    style: str  # "console" or "cli"
    job: bool = False
    since: float | None = None  # set at a disruption: `resumed_at` is then the first frame after it
    new_connection: bool = True  # ... and on a connection opened after it (a restarted web process)
    resumed_at: float | None = None
    frames: list[tuple[int, str]] = field(default_factory=list)  # (seq, type) of a job watcher's frames
    opened_at: list[float] = field(default_factory=list)  # every accepted (not then refused) open
    dropped_at: list[float] = field(default_factory=list)
    refused_503: int = 0
    refused_1013: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    final: int | None = None  # a close code the client does not retry
    is_open: bool = False
    last_frame_at: float = 0.0

    @property
    def last_seq(self) -> int:
        return self.frames[-1][0] if self.frames else 0

    @property
    def done(self) -> bool:
        return bool(self.frames) and self.frames[-1][1] in TERMINAL

    def url(self, ws_url: str) -> str:
        after = f"&after={self.last_seq}" if self.job and self.frames else ""
        return f"{ws_url}{self.path}?token={self.token}{after}"

    def note(self, error: BaseException) -> None:
        name = type(error).__name__
        self.errors[name] = self.errors.get(name, 0) + 1

    def stream_problems(self) -> tuple[int, int]:
        """(missing, repeated) seqs in a job watcher's stream: a snapshot may only come first (one on a
        resume would stand for events never seen), then every seq exactly once, in order."""
        missing = repeated = 0
        for (seq, kind), (previous, _) in zip(self.frames[1:], self.frames, strict=False):
            if kind == "job.snapshot":
                missing += 1
            elif seq <= previous:
                repeated += 1
            else:
                missing += seq - previous - 1
        return missing, repeated


async def follow(client: Client, ws_url: str, stop: asyncio.Event) -> None:
    """Keep `client` connected until `stop` (or its job's end, or a final close), backing off as its style does."""
    attempts = 0
    while not stop.is_set() and not client.done and client.final is None:
        hint: float | None = None
        try:
            async with websockets.connect(client.url(ws_url), open_timeout=30, ping_interval=None,
                                          compression=None, max_queue=None) as socket:
                opened = time.monotonic()
                client.opened_at.append(opened)
                client.is_open = True
                attempts = 0
                closing = asyncio.ensure_future(stop.wait())
                try:
                    hint = await read(client, socket, closing, opened)
                finally:
                    closing.cancel()
                    client.is_open = False
                if socket.close_code in FINAL_CLOSES:
                    client.final = socket.close_code
        except InvalidStatus as refused:
            if refused.response.status_code == 503:
                client.refused_503 += 1
                hint = retry_hint(refused) if client.style == "cli" else None
            else:
                client.note(refused)
        except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
            client.note(error)
        if stop.is_set() or client.done or client.final is not None:
            return
        client.dropped_at.append(time.monotonic())
        attempts += 1
        delay = backoff_seconds(attempts, hint) if client.style == "cli" else console_backoff(attempts - 1, hint)
        try:
            await asyncio.wait_for(stop.wait(), delay)
        except TimeoutError:
            pass


async def read(client: Client, socket: Any, closing: asyncio.Future, opened: float) -> float | None:
    """Frames until the socket closes, `closing` fires or the job ends; a 1013's retry hint, if refused."""
    while True:
        receiving = asyncio.ensure_future(socket.recv())
        await asyncio.wait({receiving, closing}, return_when=asyncio.FIRST_COMPLETED)
        if not receiving.done():
            receiving.cancel()
            return None
        try:
            frame = json.loads(receiving.result())
        except websockets.ConnectionClosed:
            return None
        now = client.last_frame_at = time.monotonic()
        if frame.get("type") == "error" and frame.get("code") == "overloaded":
            client.refused_1013 += 1
            client.opened_at.pop()  # not in: the server turned it away
            await socket.close()
            return retry_hint(error=frame)
        if client.since is not None and client.resumed_at is None and now >= client.since and (
                opened >= client.since or not client.new_connection):
            client.resumed_at = now
        if client.job and "seq" in frame:
            client.frames.append((frame["seq"], frame["type"]))
            if client.done:
                return None


@dataclass
class Crowd:
    clients: list[Client]
    ws_url: str
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    tasks: list[asyncio.Task] = field(default_factory=list)

    def start(self) -> None:
        self.tasks = [asyncio.ensure_future(follow(c, self.ws_url, self.stop)) for c in self.clients]

    def open_count(self) -> int:
        return sum(c.is_open for c in self.clients)

    def live(self) -> list[Client]:
        """Clients still meant to be connected (not ended by their job or a final close)."""
        return [c for c in self.clients if not c.done and c.final is None]

    async def wait(self, predicate: Any, timeout: float, poll: float = 0.1) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return True
            await asyncio.sleep(poll)
        return predicate()

    async def close(self) -> None:
        self.stop.set()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def reconnected_within(clients: list[Client], since: float) -> list[float]:
    """Seconds from `since` to each client's first accepted open after it (clients that never dropped
    after `since` are left out)."""
    waits = []
    for client in clients:
        if any(t >= since for t in client.dropped_at):
            later = [t for t in client.opened_at if t >= since]
            waits.append(later[0] - since if later else float("inf"))
    return waits


def summary(seconds: list[float]) -> dict[str, float]:
    finite = sorted(s for s in seconds if s != float("inf"))
    if not finite:
        return {"count": 0, "never": len(seconds)}
    return {"count": len(finite), "never": len(seconds) - len(finite), "p50": statistics.median(finite),
            "p99": finite[min(len(finite) - 1, int(0.99 * len(finite)))], "max": finite[-1]}
