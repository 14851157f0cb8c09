"""The soak's load, as clients do it: jobs of every kind started over REST (each followed from its
first event by a socket), more sockets following running jobs, chat rooms that talk, and REST
reads. Every request, frame and message is noted for the invariants (tests/soak/invariants.py).

Sockets reconnect as the console does: `?after=<last seq>` on a job or batch, `?after=<last id>`
in a chat room, with full-jitter backoff and never sooner than a refusal's Retry-After."""
import asyncio
import contextlib
import io
import json
import random
import time
from collections.abc import AsyncIterator, Awaitable
from dataclasses import dataclass, field
from typing import Any

import httpx
import websockets
from PIL import Image

from tests.soak.config import SoakConfig

JOB_END = frozenset({"job.done", "job.failed", "job.cancelled"})
BATCH_END = frozenset({"batch.done", "batch.failed", "batch.cancelled"})
SNAPSHOTS = frozenset({"job.snapshot", "batch.snapshot"})
FINAL_STATUSES = frozenset({"done", "failed", "cancelled"})
# Close codes that mean "don't come back": not found, unauthorized, a bad request.
FATAL_CLOSES = frozenset({4400, 4401, 4404})
# Kinds started, by weight: test_steps (tests/job_kinds.py) is the long one that spans faults.
KIND_WEIGHTS = {"test_steps": 4.0, "students_by_age": 1.5, "thumbnails": 1.5, "page_fetch": 2.0, "batch": 1.0}
CHAT_ROOM_SIZE = 25
CHAT_ECHO_TIMEOUT = 5.0


def is_end(frame: dict[str, Any]) -> bool:
    """A terminal event, or a snapshot of a finished job or batch (sent when Redis lost the end)."""
    kind = frame.get("type", "")
    return kind in JOB_END or kind in BATCH_END or (kind in SNAPSHOTS and frame.get("status") in FINAL_STATUSES)


@dataclass
class HttpRecord:
    at: float  # time.monotonic() when sent
    took: float
    method: str
    route: str  # the path with ids as {id}
    status: int | None  # None: no answer (the error says why)
    error: str = ""
    json_detail: bool = True  # a 5xx carried a JSON {"detail": ...}
    body: str = ""  # the start of a 5xx's body


@dataclass
class Stream:
    """One socket following one job or batch from seq 1 to its end, across reconnects."""

    kind: str  # "jobs" or "batches"
    subject: str
    token: str
    primary: bool  # opened as the job was started (every started job has one)
    frames: list[dict[str, Any]] = field(default_factory=list)
    opens: int = 0
    refused: int = 0  # handshakes answered with an HTTP status (503 from the gate or nginx)
    drops: int = 0  # connections lost before the end
    errors: list[str] = field(default_factory=list)
    fatal: str = ""
    history: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), "open after=N" ...)

    @property
    def last_seq(self) -> int:
        return self.frames[-1]["seq"] if self.frames else 0

    @property
    def ended(self) -> bool:
        return bool(self.frames) and is_end(self.frames[-1])


@dataclass
class StartedJob:
    id: str
    kind: str
    owner: str
    at: float
    batch: str | None = None
    long: bool = False  # a test_steps job others may watch
    ends_at: float = 0.0  # about when (time.monotonic()), if it is long


@dataclass
class ChatMember:
    room: str
    user: str
    token: str
    received: list[tuple[str, str]] = field(default_factory=list)  # (entry id, text)
    opens: int = 0
    refused: int = 0
    drops: int = 0
    errors: list[str] = field(default_factory=list)
    socket: Any = None
    connected_at: float = 0.0
    history: list[tuple[float, str]] = field(default_factory=list)  # (time.monotonic(), "open after=ID" ...)
    waiting: dict[str, "asyncio.Future[None]"] = field(default_factory=dict)

    @property
    def last_id(self) -> str | None:
        return max((entry for entry, _ in self.received), key=entry_key, default=None)


@dataclass
class ChatSent:
    room: str
    text: str
    user: str
    at: float
    echoed: bool = False
    sender: int = -1  # the member that sent it


def entry_key(entry: str) -> tuple[int, int]:
    ms, _, seq = entry.partition("-")
    return int(ms), int(seq)


def retry_after(error: Exception) -> float:
    response = getattr(error, "response", None)
    value = response.headers.get("Retry-After", "") if response is not None else ""
    return float(value) if value.isdigit() else 0.0


def png(rng: random.Random) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (rng.randint(200, 600), rng.randint(200, 600)),
              (rng.randrange(256), rng.randrange(256), rng.randrange(256))).save(buffer, "PNG")
    return buffer.getvalue()


class Load:
    """Starts and follows the load; `stopping` ends new work, `closing` every socket."""

    def __init__(self, proxy_http: str, proxy_ws: str, tokens: dict[str, str], page_host: str,
                 config: SoakConfig, rng: random.Random) -> None:
        self.http_url, self.ws_url, self.tokens, self.page_host = proxy_http, proxy_ws, tokens, page_host
        self.config, self.rng = config, rng
        self.users = sorted(tokens)
        self.started = self.deadline = self.stopped = self.drained = 0.0
        self.open_sockets = 0
        self.records: list[HttpRecord] = []
        self.jobs: dict[str, StartedJob] = {}
        self.batches: dict[str, list[str]] = {}
        self.streams: list[Stream] = []
        self.members: list[ChatMember] = []
        self.sent: list[ChatSent] = []
        self.done_jobs: list[str] = []
        self.running: dict[str, StartedJob] = {}  # long jobs whose end no socket has seen yet
        self.stopping = asyncio.Event()
        self.closing = asyncio.Event()
        self.tasks: set[asyncio.Task] = set()
        self.follow_tasks: list[asyncio.Task] = []
        self.http = httpx.AsyncClient(base_url=proxy_http, timeout=30,
                                      limits=httpx.Limits(max_connections=64, max_keepalive_connections=32))
        chat_sockets = round(config.sockets * config.chat_share)
        self.rooms = [f"soak-{n}" for n in range(max(2, chat_sockets // CHAT_ROOM_SIZE))]
        self.members = [ChatMember(self.rooms[i % len(self.rooms)], self.users[i % len(self.users)],
                                   tokens[self.users[i % len(self.users)]]) for i in range(chat_sockets)]
        # Job sockets beyond the one per started job: about 30 jobs run at once at the default rate.
        self.extra_watchers = max(0, config.sockets - chat_sockets - 30)

    def spawn(self, coroutine: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    # --- REST -----------------------------------------------------------------------------

    async def request(self, method: str, route: str, path: str, user: str | None = None,
                      **kwargs: Any) -> httpx.Response | None:
        headers = {"Authorization": f"Token {self.tokens[user]}"} if user else {}
        started = time.monotonic()
        try:
            answer = await self.http.request(method, path, headers=headers, **kwargs)
        except httpx.HTTPError as error:
            self.records.append(HttpRecord(started, time.monotonic() - started, method, route, None,
                                           f"{type(error).__name__}: {error}"[:160]))
            return None
        record = HttpRecord(started, time.monotonic() - started, method, route, answer.status_code)
        if answer.status_code >= 500:
            record.body = answer.text[:200]
            try:
                record.json_detail = bool(answer.json().get("detail"))
            except (ValueError, AttributeError):
                record.json_detail = False
        self.records.append(record)
        return answer

    async def start_jobs(self) -> None:
        kinds, weights = list(KIND_WEIGHTS), list(KIND_WEIGHTS.values())
        while not self.stopping.is_set():
            await asyncio.sleep(self.rng.expovariate(self.config.job_starts_per_second))
            if not self.stopping.is_set():
                self.spawn(self.start_one(self.rng.choices(kinds, weights)[0], self.rng.choice(self.users)))

    def page_url(self) -> str:
        return f"http://{self.page_host}/page?n={self.rng.randrange(10**6)}&delay={self.rng.uniform(0, 2):.2f}"

    def steps_params(self, most: float, marathon: bool = False) -> dict[str, Any]:
        """A test_steps job of 2-36 s, or as a `marathon` 30-125 s (what the extra job sockets
        watch, so they are not all reconnecting all the time), never running past `most` seconds."""
        delay = round(self.rng.uniform(0.3, 0.5) if marathon else self.rng.uniform(0.2, 0.6), 2)
        steps = self.rng.randint(100, 250) if marathon else self.rng.randint(10, 60)
        return {"steps": max(1, min(steps, int(most / delay))), "delay": delay}

    async def start_one(self, kind: str, owner: str) -> None:
        # A job ends before the load stops, and even one whose worker is killed at its very end (it
        # runs again from the start) ends within the drain: a recovery (15 s) and one more run.
        remaining = max(2.0, min(self.deadline - time.monotonic() - 5, self.config.drain_timeout - 20))
        if kind == "batch":
            members = [{"kind": "test_steps", "params": self.steps_params(min(remaining, 8))},
                       {"kind": "page_fetch", "params": {"url": self.page_url()}},
                       {"kind": "students_by_age", "params": {}}]
            answer = await self.request("POST", "/api/batches/", "/api/batches/", owner, json={"jobs": members})
        elif kind == "thumbnails":
            answer = await self.request("POST", "/api/thumbnails/", "/api/thumbnails/", owner,
                                        data={"sizes": "64x64,128x128"},
                                        files={"image": ("soak.png", png(self.rng), "image/png")})
        elif kind == "page_fetch":
            answer = await self.request("POST", "/api/pages/", "/api/pages/", owner,
                                        json={"url": self.page_url(), "refresh": self.rng.random() < 0.5})
        else:
            params = self.steps_params(remaining, self.rng.random() < 0.25) if kind == "test_steps" else {}
            answer = await self.request("POST", "/api/jobs/", "/api/jobs/", owner,
                                        json={"kind": kind, "params": params})
        if answer is None or answer.status_code != 202:
            return
        body = answer.json()
        now = time.monotonic()
        if kind == "batch":
            started = [(m["id"], m["kind"]) for m in body["members"]]
            self.batches[body["id"]] = [job_id for job_id, _ in started]
            self.follow(Stream("batches", body["id"], self.tokens[owner], primary=True))
        else:
            started = [(body["id"], kind)]
        for job_id, job_kind in started:
            long = kind == "test_steps"  # not a batch's: those are short
            job = StartedJob(job_id, job_kind, owner, now, body["id"] if kind == "batch" else None, long,
                             now + params["steps"] * params["delay"] if long else 0.0)
            self.jobs[job_id] = job
            if long:
                self.running[job_id] = job
            self.follow(Stream("jobs", job_id, self.tokens[owner], primary=True))
            if long and self.rng.random() < 0.05:  # a few are cancelled mid-run
                self.spawn(self.cancel_later(job))

    async def cancel_later(self, job: StartedJob) -> None:
        await asyncio.sleep(self.rng.uniform(1, 4))
        await self.request("POST", "/api/jobs/{id}/cancel/", f"/api/jobs/{job.id}/cancel/", job.owner)

    async def read_rest(self) -> None:
        while not self.stopping.is_set():
            await asyncio.sleep(self.rng.expovariate(self.config.rest_reads_per_second))
            user = self.rng.choice(self.users)
            choice = self.rng.random()
            job = self.jobs[self.rng.choice(list(self.jobs))] if self.jobs else None
            if choice < 0.25:
                self.spawn(self.request("GET", "/api/jobs/", "/api/jobs/?limit=20", user))
            elif choice < 0.5 and job:
                self.spawn(self.request("GET", "/api/jobs/{id}/", f"/api/jobs/{job.id}/", job.owner))
            elif choice < 0.6:
                self.spawn(self.request("GET", "/api/kinds/", "/api/kinds/", user))
            elif choice < 0.7:
                self.spawn(self.request("GET", "/api/batches/", "/api/batches/?limit=10", user))
            elif choice < 0.85 and self.done_jobs:
                done = self.jobs[self.rng.choice(self.done_jobs)]
                self.spawn(self.request("GET", "/api/jobs/{id}/download/", f"/api/jobs/{done.id}/download/",
                                        done.owner))
            else:
                self.spawn(self.request("GET", "/healthz", "/healthz"))

    # --- job and batch sockets --------------------------------------------------------------

    def follow(self, stream: Stream) -> None:
        self.streams.append(stream)
        self.follow_tasks.append(asyncio.ensure_future(self.follow_stream(stream)))

    async def follow_stream(self, stream: Stream) -> None:
        attempt = 0
        while not stream.ended and not self.closing.is_set():
            url = f"{self.ws_url}/ws/{stream.kind}/{stream.subject}/?after={stream.last_seq}&token={stream.token}"
            hint, code = 0.0, None
            try:
                async with websockets.connect(url, open_timeout=15, max_size=2**22, close_timeout=2) as socket, \
                        self.holding():
                    stream.opens += 1
                    stream.history.append((time.monotonic(), f"open after={stream.last_seq}"))
                    attempt = 0
                    async for raw in socket:
                        frame = json.loads(raw)
                        if "seq" in frame:
                            stream.frames.append(frame)
                            if stream.ended:
                                self.ended(stream, frame)
                                return
                        elif frame.get("type") == "error":
                            stream.errors.append(str(frame.get("code")))
                    code = socket.close_code
            except websockets.InvalidStatus as error:
                stream.refused += 1
                hint = retry_after(error)
            except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as error:
                stream.errors.append(type(error).__name__)
                code = getattr(getattr(error, "rcvd", None), "code", None)
            if code in FATAL_CLOSES:
                stream.fatal = f"closed {code}"
                return
            if stream.opens:
                stream.drops += 1
            stream.history.append((time.monotonic(), f"closed {code} {stream.errors[-1:] if stream.errors else ''}"))
            attempt += 1
            await asyncio.sleep(hint + self.rng.uniform(0, max(hint, min(2.0, 0.25 * 2**attempt))))

    def ended(self, stream: Stream, frame: dict[str, Any]) -> None:
        self.running.pop(stream.subject, None)
        if stream.kind == "jobs" and "done" in (frame["type"][4:], frame.get("status")) and stream.primary:
            self.done_jobs.append(stream.subject)

    async def watch_running_jobs(self, slot: int) -> None:
        """One more socket on jobs: follow a running long job from seq 1 to its end, then another."""
        await asyncio.sleep(slot / 60)  # open about 60 a second, not all at once
        while not self.stopping.is_set():
            if not self.running:
                await asyncio.sleep(0.5)
                continue
            running = list(self.running.values())  # the longest-lived of three: fewer reconnects
            job = max(self.rng.sample(running, min(3, len(running))), key=lambda j: j.ends_at)
            stream = Stream("jobs", job.id, self.tokens[job.owner], primary=False)
            self.streams.append(stream)
            await self.follow_stream(stream)

    # --- chat -----------------------------------------------------------------------------

    async def chat_member(self, member: ChatMember, slot: int) -> None:
        await asyncio.sleep(slot / 60)
        attempt = 0
        while not self.closing.is_set():
            after = f"&after={member.last_id}" if member.last_id else ""
            url = f"{self.ws_url}/ws/chat/{member.room}/?token={member.token}{after}"
            hint = 0.0
            try:
                async with websockets.connect(url, open_timeout=15, close_timeout=2) as socket, self.holding():
                    member.opens += 1
                    member.socket, member.connected_at = socket, time.monotonic()
                    member.history.append((member.connected_at, f"open after={member.last_id}"))
                    attempt = 0
                    async for raw in socket:
                        frame = json.loads(raw)
                        if frame.get("type") == "chat.message":
                            member.received.append((frame["id"], frame["message"]))
                            waiter = member.waiting.pop(frame["message"], None)
                            if waiter is not None and not waiter.done():
                                waiter.set_result(None)
                        elif frame.get("type") == "error":
                            member.errors.append(str(frame.get("code")))
            except websockets.InvalidStatus as error:
                member.refused += 1
                hint = retry_after(error)
            except (OSError, TimeoutError, websockets.ConnectionClosed, websockets.InvalidHandshake) as error:
                member.errors.append(type(error).__name__)
            finally:
                member.socket = None
            if self.closing.is_set():
                return
            member.history.append((time.monotonic(), f"closed {member.errors[-1:] if member.errors else ''}"))
            if member.opens:
                member.drops += 1
            attempt += 1
            await asyncio.sleep(hint + self.rng.uniform(0, max(hint, min(2.0, 0.25 * 2**attempt))))

    async def talk(self, room: str) -> None:
        """Say a numbered message in `room` about once a second, from a member connected now, and
        wait for its echo (so one room's messages never overlap)."""
        members = [m for m in self.members if m.room == room]
        number = 0
        while not self.stopping.is_set():
            await asyncio.sleep(self.rng.uniform(0.5, 1.5))
            connected = [m for m in members if m.socket is not None]
            if not connected or self.stopping.is_set():
                continue
            sender = self.rng.choice(connected)
            number += 1
            sent = ChatSent(room, f"{room} #{number}", sender.user, time.monotonic(), sender=self.members.index(sender))
            self.sent.append(sent)
            echo: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            sender.waiting[sent.text] = echo
            try:
                await sender.socket.send(json.dumps({"message": sent.text}))
                await asyncio.wait_for(echo, CHAT_ECHO_TIMEOUT)
                sent.echoed = True
            except (AttributeError, TimeoutError, websockets.ConnectionClosed):
                pass  # unconfirmed: counted as accepted only if some member got it
            finally:
                sender.waiting.pop(sent.text, None)

    # --- the whole load --------------------------------------------------------------------

    def start(self) -> None:
        self.spawn(self.start_jobs())
        self.spawn(self.read_rest())
        for room in self.rooms:
            self.spawn(self.talk(room))
        for slot, member in enumerate(self.members):
            self.spawn(self.chat_member(member, slot))
        for slot in range(self.extra_watchers):
            self.spawn(self.watch_running_jobs(len(self.members) + slot))

    @contextlib.asynccontextmanager
    async def holding(self) -> AsyncIterator[None]:
        """Counts the sockets open now (`open_sockets`)."""
        self.open_sockets += 1
        try:
            yield
        finally:
            self.open_sockets -= 1

    async def close(self) -> None:
        self.closing.set()
        await asyncio.gather(*(m.socket.close() for m in self.members if m.socket is not None), return_exceptions=True)
        for task in [*self.tasks, *self.follow_tasks]:
            task.cancel()
        await asyncio.gather(*self.tasks, *self.follow_tasks, return_exceptions=True)
        await self.http.aclose()
