"""The baselines of bench/bench_jobs.py, each measured at a client level just before the project:
bare Celery (`bare.incr`, `bare.job`: bench/bare_celery.py) and the floor of a REST trigger
(`bare.http`: bench/floor_web.py, on stock Daphne and on this project's server and handler).
Also what both sides share: the raw HTTP client, CPU time per process, latency stats."""
import asyncio
import json
import os
import re
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import redis

from basic.ops import stack
from bench import bare_celery
from bench.common import percentile


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc), 0 if unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def cpu_of(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process."""
    return {name: cpu_seconds(pid) for name, pid in pids.items()}


def cpu_ms_per(pids: dict[str, int], before: dict[str, float], count: int) -> dict[str, float]:
    """Milliseconds of CPU each named process spent since `before` (cpu_of), per one of `count`."""
    return {name: round(1000 * (cpu_seconds(pid) - before.get(name, 0.0)) / max(1, count), 2)
            for name, pid in pids.items()}


def stats(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {"p50_ms": percentile(ms, 0.5), "p99_ms": percentile(ms, 0.99), "n": len(ms)}



class RawHttp:
    """A minimal HTTP/1.1 keep-alive client for the triggers: httpx cost the client process about 15
    ms of CPU per request at 50 clients, on the same two cores as the servers it measures (the bare
    Celery client pays only `apply_async`). One connection per request in flight, reused."""

    def __init__(self, port: int, token: str) -> None:
        self.port, self.token = port, token
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def post_json(self, path: str, body: dict) -> tuple[int, bytes]:
        if self.idle:
            try:
                return await self._post(path, body, self.idle.pop())
            except (OSError, asyncio.IncompleteReadError):
                pass  # the server closed that idle connection meanwhile: once more on a new one
        return await self._post(path, body, await asyncio.open_connection("127.0.0.1", self.port))

    async def _post(self, path: str, body: dict, conn: tuple) -> tuple[int, bytes]:
        data = json.dumps(body).encode()
        reader, writer = conn
        writer.write(f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.port}\r\nAuthorization: Token {self.token}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n".encode() + data)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").lower()
        status = int(head[9:12])
        length = re.search(r"\r\ncontent-length: *(\d+)", head)
        if length:
            payload = await reader.readexactly(int(length.group(1)))
        else:  # chunked
            payload = b""
            while size := int((await reader.readuntil(b"\r\n")).strip(), 16):
                payload += await reader.readexactly(size + 2)
            await reader.readuntil(b"\r\n")
        if "connection: close" in head:
            writer.close()
        else:
            self.idle.append(conn)
        return status, payload

    def close(self) -> None:
        for _, writer in self.idle:
            writer.close()


# --- bare Celery --------------------------------------------------------------------------------

def bare_celery_run(redis_url: str, jobs: int, clients: int, rows: str | None = None,
                    pids: dict[str, int] | None = None) -> dict:
    """`clients` threads calling apply_async `jobs` times in all; tasks/s until the worker ran them all.
    With `rows` (a SQLite file) the `bare.job` baseline: each send INSERTs its row first."""
    r = redis.Redis.from_url(redis_url)
    key = f"bench:bare:{time.monotonic_ns()}"
    r.delete(key)
    sent: list[float] = []
    counter = iter(range(jobs))
    lock = threading.Lock()

    def send(task_key: str) -> None:
        if rows is None:
            bare_celery.incr.apply_async(args=[task_key])
        else:
            bare_celery.job.apply_async(args=[task_key, bare_celery.insert_row(rows), rows])

    def client() -> None:
        while True:
            with lock:
                if next(counter, None) is None:
                    return
            t = time.perf_counter()
            send(key)
            sent.append(time.perf_counter() - t)

    send(key + ":warm")  # connect the producer pool first
    pids = pids or {}
    cpu = cpu_of(pids)
    started = time.perf_counter()
    with ThreadPoolExecutor(clients) as pool:
        for _ in range(clients):
            pool.submit(client)
        while int(r.get(key) or 0) < jobs and time.perf_counter() - started < 300:
            time.sleep(0.005)
        elapsed = time.perf_counter() - started
    done = int(r.get(key) or 0)
    return {"clients": clients, "jobs": jobs, "completed": done, "per_s": done / elapsed,
            "apply_async": stats(sent), "baseline": "bare.incr" if rows is None else "bare.job",
            "cpu_ms_per_job": cpu_ms_per(pids, cpu, done)}


def start_floor(redis_url: str, key: str, rows: str, workdir: Path, plumbing: str) -> tuple[subprocess.Popen, int]:
    """bench/floor_web.py (one sync Django view calling `apply_async`) on stock Daphne and Django's
    handler (`plumbing` "stock"), or on this project's server and handler ("ours")."""
    port = stack.free_port()
    server = "daphne" if plumbing == "stock" else "basic.realtime.server"
    process = stack._spawn([stack.python_bin(), "-m", server, "-b", "127.0.0.1", "-p", str(port),
                            "bench.floor_web:application"],
                           {"REDIS_URL": redis_url, "FLOOR_KEY": key, "FLOOR_ROWS": rows, "FLOOR_PLUMBING": plumbing,
                            "DJANGO_SETTINGS_MODULE": ""}, workdir / f"floor-{plumbing}.log")
    stack.wait_for_port(port, process=process)
    return process, port


async def floor_run(port: int, pids: dict[str, int], redis_url: str, key: str, route: str, jobs: int,
                    clients: int) -> dict:
    """`bare.http`: `clients` REST clients POSTing to the floor's `route` `jobs` times in all; tasks/s
    until bare Celery's worker ran them all (its counter grew by `jobs`), and each process's CPU."""
    r = redis.Redis.from_url(redis_url)
    http = RawHttp(port, "-")
    before = int(r.get(key) or 0)
    await http.post_json(route, {})  # the connection and Django's first request warm
    while int(r.get(key) or 0) <= before:
        await asyncio.sleep(0.01)
    base = int(r.get(key) or 0)
    accepted: list[float] = []
    errors: list[str] = []
    todo = iter(range(jobs))

    async def client() -> None:
        for _ in todo:
            t = time.perf_counter()
            status, payload = await http.post_json(route, {})
            if status == 202:
                accepted.append(time.perf_counter() - t)
            else:
                errors.append(f"{status}: {payload[:200]!r}")

    cpu = cpu_of(pids)
    began = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    while int(r.get(key) or 0) - base < len(accepted) and time.perf_counter() - began < 300:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - began
    done = int(r.get(key) or 0) - base
    http.close()
    return {"clients": clients, "jobs": jobs, "completed": done, "per_s": done / elapsed, "errors": len(errors),
            "error_examples": errors[:3], "trigger_202": stats(accepted), "route": route,
            "cpu_ms_per_job": cpu_ms_per(pids, cpu, done)}


class Baselines:
    """Bare Celery (`bare.incr`, `bare.job`) and the floors (`bare.http`), each measured at a client
    level right before the project is, into `result`'s lists (one entry per level): "bare",
    "bare_job", and per floor route "floor", "floor_drf", "floor_job" (stock Daphne and Django's
    handler) and "floor_ours", "floor_ours_job" (this project's server and handler)."""

    ROUTES = {"stock": (("/incr", "floor"), ("/drf", "floor_drf"), ("/job", "floor_job")),
              "ours": (("/incr", "floor_ours"), ("/job", "floor_ours_job"))}

    def __init__(self, redis_url: str, rows: str, bare: subprocess.Popen, result: dict,
                 project_pids: dict[str, int]) -> None:
        self.redis_url, self.rows, self.bare, self.result = redis_url, rows, bare, result
        self.project_pids = project_pids  # the project's processes (filled in once they run)
        self.key = f"bench:floor:{os.getpid()}"
        self.floors: dict[str, tuple[subprocess.Popen, int]] = {}  # plumbing -> (server, port)
        for name in ("bare", "bare_job", *(table for routes in self.ROUTES.values() for _, table in routes)):
            result[name] = []

    def start_floors(self, workdir: Path) -> list[subprocess.Popen]:
        for plumbing in self.ROUTES:
            self.floors[plumbing] = start_floor(self.redis_url, self.key, self.rows, workdir, plumbing)
        return [server for server, _ in self.floors.values()]

    async def measure(self, jobs: int, clients: int) -> None:
        # The project's processes are idle meanwhile: their CPU is shown to prove it (Redis is not:
        # the baselines use it too).
        pids = {"bare worker": self.bare.pid, "bench client": os.getpid(),
                **{(name if name == "redis" else f"idle {name}"): pid for name, pid in self.project_pids.items()
                   if name != "bench client"}}
        for name, table in (("bare.incr", "bare"), ("bare.job", "bare_job")):
            run = await asyncio.to_thread(bare_celery_run, self.redis_url, jobs, clients,
                                          self.rows if name == "bare.job" else None, pids)
            print(f"  bare Celery ({name}), {clients} clients: {run['per_s']:.1f} tasks/s, apply_async "
                  f"p50/p99 {run['apply_async']['p50_ms']:.1f}/{run['apply_async']['p99_ms']:.1f} ms\n"
                  f"    CPU ms per task {run['cpu_ms_per_job']}", flush=True)
            self.result[table].append(run)
        for plumbing, (server, port) in self.floors.items():
            for route, table in self.ROUTES[plumbing]:
                run = await floor_run(port, {**pids, f"floor server ({plumbing})": server.pid}, self.redis_url,
                                      self.key, route, jobs, clients)
                print(f"  bare.http ({route} on {plumbing} plumbing: a plain Django view, apply_async), {clients} "
                      f"clients: {run['per_s']:.1f} tasks/s, 202 p50/p99 {run['trigger_202']['p50_ms']:.1f}/"
                      f"{run['trigger_202']['p99_ms']:.1f} ms, errors {run['errors']}\n"
                      f"    CPU ms per task {run['cpu_ms_per_job']}", flush=True)
                self.result[table].append(run)

    def stop(self) -> None:
        for process in [server for server, _ in self.floors.values()] + [self.bare]:
            stack.stop(process)
