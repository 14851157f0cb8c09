"""One soak from start to end: the stack up, students to report on, a warm-up, the load with the
fault injector beside it, the drain, then what the invariants need: samples, the database's
rows, the Redis streams and chat history."""
import asyncio
import itertools
import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from tests.soak.config import SoakConfig
from tests.soak.faults import Fault, Injector
from tests.soak.invariants import Check, Observed, accepted_messages, all_checks, missed_messages, stream_problems
from tests.soak.load import Load
from tests.soak.resources import KeySample, Sample, sample_keys, sample_processes
from tests.soak.stack import SoakStack, soak_stack

STUDENTS_PER_USER = 2000
SETTLE_SECONDS = 3.0  # after every client closed, before the last sample


@dataclass
class SoakResult:
    config: SoakConfig
    checks: list[Check]
    faults: list[Fault]
    numbers: dict[str, Any]
    timings: dict[str, float]
    workdir: Path
    samples: dict[str, Sample] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(check.ok for check in self.checks)

    def check(self, name: str) -> Check:
        return next(check for check in self.checks if check.name == name)


def run_soak(config: SoakConfig, workdir: Path | None = None, say: Callable[[str], object] = print) -> SoakResult:
    """Run a soak; keeps its folder (logs) when an invariant failed, else removes it unless given."""
    root = workdir or Path(tempfile.mkdtemp(prefix="jobs-soak-"))
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request otherwise
    began = time.monotonic()
    say(f"soak: {config.seconds:.0f}s, {config.sockets} sockets, seed {config.seed}, in {root}")
    with soak_stack(root, config.sockets, say) as stack:
        timings = {"setup_s": time.monotonic() - began}
        say(f"stack up in {timings['setup_s']:.0f}s")
        with httpx.Client(base_url=stack.proxy_http, timeout=60) as client:
            for token in stack.tokens.values():
                answer = client.post("/api/students/generate/", json={"count": STUDENTS_PER_USER},
                                     headers={"Authorization": f"Token {token}"})
                answer.raise_for_status()
        samples = {"idle": sample_processes(stack)}
        load, injector, keys = asyncio.run(drive(stack, config, samples, say))
        timings |= {"load_s": load.stopped - load.started, "drain_s": load.drained - load.stopped}
        seen = Observed(load, injector.faults, *read_database(stack), read_stream_ends(stack, list(load.jobs)),
                        read_chat_history(stack, load.rooms), samples, keys)
        checks = all_checks(seen)
        numbers = summary(seen)
        evidence = broken_streams(stack, load)
        failed = {job_id: {"kind": kind, "error": error, "log": log_lines(root, job_id)}
                  for job_id, (kind, status, error) in seen.db_jobs.items() if status == "failed"}
        chat_evidence = lost_chat(seen)
    timings["total_s"] = time.monotonic() - began
    result = SoakResult(config, checks, injector.faults, numbers, timings, root, samples)
    (root / "soak-result.json").write_text(json.dumps(
        {"config": config.__dict__, "timings": timings, "numbers": numbers,
         "checks": [{"name": c.name, "ok": c.ok, "numbers": c.numbers, "problems": c.problems[:50]} for c in checks],
         "faults": [{**f.__dict__, "at": f.at - load.started,
                     "recovered": f.recovered and f.recovered - load.started} for f in injector.faults],
         "broken_streams": evidence, "failed_jobs": failed, "lost_chat": chat_evidence,
         "samples": {name: [asdict(p) for p in sample.processes] for name, sample in samples.items()}},
        indent=2, default=str))
    if result.ok and workdir is None:
        shutil.rmtree(root, ignore_errors=True)
    return result


async def drive(stack: SoakStack, config: SoakConfig, samples: dict[str, Sample],
                say: Callable[[str], object]) -> tuple[Load, Injector, dict[str, KeySample]]:
    load = Load(stack.proxy_http, stack.proxy_ws, stack.tokens, stack.page_host, config, random.Random(config.seed + 1))
    injector = Injector(stack, random.Random(config.seed), say)
    load.started = time.monotonic()
    load.deadline = load.started + config.seconds
    load.start()
    reporter = asyncio.create_task(report_progress(load, injector, say))
    try:
        target = len(load.members) + load.extra_watchers
        await asyncio.sleep(config.warmup_seconds)
        await wait_for(lambda: load.open_sockets >= target * 0.95, 60)
        samples["warm"] = await asyncio.to_thread(sample_processes, stack)
        keys = {"warm": await asyncio.to_thread(sample_keys, stack)}
        say(f"warm-up done: {load.open_sockets} sockets open; faults start")
        tail = min(20.0, max(8.0, config.seconds * 0.05))  # the load goes on this long after the last fault
        mid = asyncio.create_task(sample_after_first_round(stack, load, injector, samples))
        await injector.run(stop_by=load.deadline - tail)
        injector.first_round_done.set()
        await mid
        await asyncio.sleep(max(0.0, load.deadline - time.monotonic()))
        load.stopping.set()
        load.stopped = time.monotonic()
        say(f"load stopped after {load.stopped - load.started:.0f}s; draining")
        drained = await wait_for(lambda: all(s.ended or s.fatal for s in load.streams), config.drain_timeout)
        say(f"every socket saw its job end after {time.monotonic() - load.stopped:.0f}s" if drained
            else f"jobs still not ended after {config.drain_timeout:.0f}s")
        # Chat members that were dropped last reconnect and catch up before the sockets close.
        await wait_for(lambda: all(m.socket is not None and time.monotonic() - m.connected_at > 2
                                   for m in load.members), 30)
        await asyncio.sleep(2)
        load.drained = time.monotonic()
    finally:  # also when interrupted: every task of the load ends here
        reporter.cancel()
        load.stopping.set()
        await load.close()
    await asyncio.sleep(SETTLE_SECONDS)
    samples["end"] = await asyncio.to_thread(sample_processes, stack)
    keys["end"] = await asyncio.to_thread(sample_keys, stack)
    return load, injector, keys


async def sample_after_first_round(stack: SoakStack, load: Load, injector: Injector,
                                   samples: dict[str, Sample]) -> None:
    """The "mid" sample, 10 s after every kind of fault was met once, if the load then goes on for
    at least another minute: from there to the end, even pooled connections must stay flat."""
    await injector.first_round_done.wait()
    if load.deadline - time.monotonic() > 70:
        await asyncio.sleep(10)
        samples["mid"] = await asyncio.to_thread(sample_processes, stack)


async def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.25)
    return True


async def report_progress(load: Load, injector: Injector, say: Callable[[str], object]) -> None:
    while True:
        await asyncio.sleep(15)
        ended = sum(s.ended for s in load.streams if s.primary)
        say(f"+{time.monotonic() - load.started:.0f}s: {load.open_sockets} sockets, {len(load.jobs)} jobs "
            f"({ended} seen ending), {len(load.records)} requests, {len(load.sent)} chat messages, "
            f"{len(injector.faults)} faults")


def read_database(stack: SoakStack) -> tuple[dict[str, tuple[str, str, str]], dict[str, str]]:
    jobs = {str(row[0]): (row[1], row[2], row[3] or "")
            for row in stack.live.query("SELECT id, kind, status, error FROM basic_job")}
    batches = {str(row[0]): row[1] for row in stack.live.query("SELECT id, status FROM basic_batch")}
    return jobs, batches


def read_stream_ends(stack: SoakStack, job_ids: list[str]) -> dict[str, int]:
    """How many terminal events each job's Redis stream holds (at most one may)."""
    ends: dict[str, int] = {}
    with stack.redis_master_client() as client:
        for start in range(0, len(job_ids), 200):
            chunk = job_ids[start:start + 200]
            pipe = client.pipeline(transaction=False)
            for job_id in chunk:
                pipe.xrange(f"jobs:{job_id}:events")
            for job_id, entries in zip(chunk, pipe.execute(), strict=True):
                types = [json.loads(fields[b"e"])["type"] for _, fields in entries]
                ends[job_id] = sum(t in ("job.done", "job.failed", "job.cancelled") for t in types)
    return ends


def read_chat_history(stack: SoakStack, rooms: list[str]) -> dict[str, list[tuple[str, str]]]:
    prefix = stack.env["CHANNEL_PREFIX"]
    history = {}
    with stack.redis_master_client() as client:
        for room in rooms:
            entries = client.xrange(f"{prefix}:chat:{room}:history")
            history[room] = [(entry.decode(), json.loads(fields[b"m"])["message"]) for entry, fields in entries]
    return history


def broken_streams(stack: SoakStack, load: Load) -> list[dict[str, Any]]:
    """For each socket session that broke the gapless invariant: what it was sent and when it
    (re)connected (seconds into the load), and the seqs its job's Redis stream holds now."""
    found = []
    with stack.redis_master_client() as client:
        for stream in load.streams:
            missing, repeated, late = stream_problems(stream)
            if not (missing or repeated or late):
                continue
            key = f"{'jobs' if stream.kind == 'jobs' else 'batches'}:{stream.subject}:events"
            found.append({"subject": stream.subject, "kind": stream.kind, "missing": missing, "repeated": repeated,
                          "snapshots_at": late, "received": [(f["type"], f["seq"]) for f in stream.frames],
                          "connections": [(round(at - load.started, 2), what) for at, what in stream.history],
                          "redis_stream_seqs": [int(entry.decode().split("-")[1]) for entry, _ in client.xrange(key)]})
    return found


def log_lines(root: Path, job_id: str) -> list[str]:
    """The stack's log lines that name a job (not Daphne's access log), an error's traceback with it."""
    found = []
    for log in sorted(root.glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        for at, line in enumerate(lines):
            if job_id in line and '] "' not in line:
                found.append(f"{log.name}: {line}")
                if " ERROR " in line:
                    found += [f"    {text}" for text in itertools.takewhile(
                        lambda text: not text[:4].isdigit(), lines[at + 1:at + 60])]
    return found[:200]


def lost_chat(seen: Observed) -> list[dict[str, Any]]:
    """For each chat message some member missed: when it was sent, its id, whether the room's
    history still holds it, and each missing member's connections around it (seconds into the load)."""
    accepted = accepted_messages(seen)
    sent = {s.text: s for s in seen.load.sent}
    history = {text for entries in seen.chat_history.values() for _, text in entries}
    found = []
    for text, members in missed_messages(seen, accepted).items():
        at = sent[text].at if text in sent else 0.0
        found.append({
            "text": text, "sent_at": round(at - seen.load.started, 2), "echoed": text in sent and sent[text].echoed,
            "id": next(room[text] for room in accepted.values() if text in room), "in_history": text in history,
            "sender": sent[text].sender if text in sent else None,
            "sender_connections": [(round(t - seen.load.started, 2), what)
                                   for t, what in seen.load.members[sent[text].sender].history if abs(t - at) < 30]
            if text in sent else [],
            "missed_by": {index: [(round(t - seen.load.started, 2), what)
                                  for t, what in seen.load.members[index].history if abs(t - at) < 30]
                          for index in members[:10]}})
    return found[:40]


def summary(seen: Observed) -> dict[str, Any]:
    """The numbers of the table beyond the checks' own."""
    load = seen.load
    return {
        "requests": len(load.records),
        "job_events_received": sum(len(s.frames) for s in load.streams),
        "chat_sent": len(load.sent),
        "chat_received": sum(len(m.received) for m in load.members),
        "socket_sessions": len(load.streams) + len(load.members),
        "socket_reconnects": sum(s.drops for s in load.streams) + sum(m.drops for m in load.members),
    }
