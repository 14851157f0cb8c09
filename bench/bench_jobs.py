"""Jobs at the speed of Celery (issue 19): REST trigger -> job.done on a socket, under load, against
bare Celery on the same kind of worker, measured in the same run.

Processes as `make run` starts them (basic/ops/stack.py): a private Redis, Daphne, one `celery worker
--pool=gevent --concurrency=100` through `python -m gevent.monkey`, on a freshly migrated SQLite
database (or `--database postgres`: the tests' private PostgreSQL, tests/postgres.py).

1. **Bare Celery** (the baseline): `bench/bare_celery.py`, a task that only INCRs a Redis counter, on
   a gevent worker of the same concurrency; CLIENTS threads call `apply_async` JOBS times in all;
   tasks/s is JOBS over the time until the counter reaches JOBS. Then `bare.job`, the same with the
   least a job writes done on the engines directly: the sender INSERTs a row (sqlite3), the task
   UPDATEs it and stores and publishes one event (XADD + PUBLISH); reported beside the first.
   And the floor of a REST trigger on the stack the project is built on (`bare.http`,
   bench/floor_web.py): a plain Django view calling `apply_async`, driven by the same HTTP clients
   as the project (`/incr`, `/drf` through DRF's APIView, `/job` with the row), served by stock
   Daphne and Django's handler, then by this project's server and handler (`/incr`, `/job`).
   All of them run at each client level right before the project does, so a slow spell of this
   shared box hits a baseline and the project alike (bench/jobs_baselines.py).
2. **This project**, at 10, 50 and 200 concurrent REST clients (`--clients`): JOBS trivial
   `students_by_age` jobs (over 100 students) started with `POST /api/jobs/`, each job's end seen
   on one `/ws/events/` socket; jobs/s is JOBS over first trigger -> last end on the socket. Per
   job: trigger -> 202 and trigger -> job.done on the socket, p50/p99.
3. **Open loop** at `--open-fraction` (50%) of the best jobs/s of step 2: triggers sent on a fixed
   schedule whatever the answers, for `--open-seconds`; trigger -> 202 and -> job.done p50/p99.
4. **Cost per job**: `--cost-jobs` jobs at 10 clients with Redis MONITOR on (every command, and
   whether it came from a Lua script) and a row-level trigger on every table logging each
   INSERT/UPDATE/DELETE; counts per job, grouped by what they touch.
5. **Progress-heavy**: `--heavy-jobs` (100) jobs of a bench kind (`bench_progress`, loaded with
   JOB_KIND_EXTRA_MODULES) each calling `ctx.progress` `--heavy-steps` (1,000) times, all started at
   once; the database's row writes counted as in 4, each job's events on the socket checked (the
   last one is job.done at 100%, progress never goes back), jobs/s against the trivial job's.

The bench raises JOB_TRIGGER_RATE and WS_MAX_PER_USER (one user starts every job).
Run: `python -m bench.bench_jobs [--jobs 2000] [--clients 10,50,200] [--database sqlite|postgres]`.
Variants to measure (docs/benchmarks.md, "fourth round"): `--http-server gunicorn` (the triggers on
gunicorn serving app/wsgi.py beside Daphne's sockets), `--nice-windows N` (the worker's priority),
`--worker-env`, `--web-processes`.
"""
import argparse
import asyncio
import json
import os
import re
import sqlite3
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import redis
from websockets.asyncio.client import connect

from basic.ops import stack
from basic.ops.web_pool import WebPool
from bench import bare_celery
from bench.common import (
    ensure_redis,
    manage,
    py_spy,
    raise_open_files_limit,
    stop_py_spy,
    stop_redis,
    write_result,
)
from bench.jobs_baselines import Baselines, RawHttp, cpu_ms_per, cpu_of, stats

TERMINAL = {"job.done", "job.failed", "job.cancelled"}
KIND = "students_by_age"
HEAVY_KIND = "bench_progress"


PIDS: dict[str, int] = {}  # name -> pid of the processes whose CPU each run reports


def cpu_now() -> dict[str, float]:
    return cpu_of(PIDS)


def cpu_per_job(before: dict[str, float], jobs: int) -> dict[str, float]:
    """Milliseconds of CPU per job of each process since `before`."""
    return cpu_ms_per(PIDS, before, jobs)


# --- the project ---------------------------------------------------------------------------------

class Feed:
    """One `/ws/events/` socket: the time each job's terminal event arrived, and every event."""

    def __init__(self, url: str, keep_events: bool = False) -> None:
        self.url = url
        self.ends: dict[str, float] = {}
        self.end_status: dict[str, str] = {}
        self.events: dict[str, list[dict]] = {}
        self.keep_events = keep_events
        self.changed = asyncio.Event()
        self.task: asyncio.Task | None = None

    async def start(self) -> None:
        self.ws = await connect(self.url, compression=None, ping_interval=None, open_timeout=60, max_size=None)
        self.task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            now = time.perf_counter()
            frame = json.loads(raw)
            job = frame.get("job")
            if self.keep_events and job:
                self.events.setdefault(job, []).append(frame)
            if frame.get("type") in TERMINAL and job not in self.ends:
                self.ends[job] = now
                self.end_status[job] = frame.get("status")
                self.changed.set()

    async def wait_for(self, jobs: set[str], timeout: float) -> None:
        deadline = time.perf_counter() + timeout
        while not jobs <= self.ends.keys() and time.perf_counter() < deadline:
            self.changed.clear()
            try:
                await asyncio.wait_for(self.changed.wait(), max(0.01, deadline - time.perf_counter()))
            except TimeoutError:
                break

    async def close(self) -> None:
        await self.ws.close()
        if self.task:
            self.task.cancel()


async def trigger(http: RawHttp, kind: str, sent: dict, accepted: dict, errors: list) -> None:
    t = time.perf_counter()
    try:
        status, payload = await http.post_json("/api/jobs/", {"kind": kind, "params": {}})
    except (OSError, asyncio.IncompleteReadError, ValueError) as exc:
        errors.append(f"{type(exc).__name__}: {exc}")
        return
    if status != 202:
        errors.append(f"{status}: {payload[:200]!r}")
        return
    job = json.loads(payload)["id"]
    sent[job] = t
    accepted[job] = time.perf_counter() - t


async def closed_loop(http: RawHttp, feed: Feed, jobs: int, clients: int, kind: str = KIND) -> dict:
    sent: dict[str, float] = {}
    accepted: dict[str, float] = {}
    errors: list[str] = []
    todo = iter(range(jobs))

    async def client() -> None:
        for _ in todo:
            await trigger(http, kind, sent, accepted, errors)

    cpu = cpu_now()
    began = time.perf_counter()
    await asyncio.gather(*[client() for _ in range(clients)])
    triggered = time.perf_counter() - began
    await feed.wait_for(set(sent), timeout=120)
    return summarise(feed, sent, accepted, errors, began, clients=clients, jobs=jobs, trigger_seconds=triggered,
                     cpu_ms_per_job=cpu_per_job(cpu, len(sent)))


def summarise(feed: Feed, sent: dict, accepted: dict, errors: list, began: float, **extra) -> dict:
    seen = [job for job in sent if job in feed.ends]
    last = max((feed.ends[job] for job in seen), default=began)
    statuses = Counter(feed.end_status[job] for job in seen)
    return {
        **extra, "started": len(sent), "ended_on_socket": len(seen), "statuses": dict(statuses),
        "errors": len(errors), "error_examples": errors[:3],
        "per_s": len(seen) / (last - began) if seen else 0.0, "seconds": last - began,
        "trigger_202": stats(list(accepted.values())),
        "trigger_done": stats([feed.ends[job] - sent[job] for job in seen]),
    }


async def open_loop(http: RawHttp, feed: Feed, rate: float, seconds: float) -> dict:
    """Triggers at a fixed rate, each on its own, whatever the earlier ones are doing."""
    sent: dict[str, float] = {}
    accepted: dict[str, float] = {}
    errors: list[str] = []
    count = max(1, int(rate * seconds))
    began = time.perf_counter()
    tasks = []
    for i in range(count):
        delay = began + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(trigger(http, KIND, sent, accepted, errors)))
    await asyncio.gather(*tasks)
    await feed.wait_for(set(sent), timeout=120)
    out = summarise(feed, sent, accepted, errors, began, rate=rate, jobs=count)
    out["offered_per_s"] = rate
    return out


def describe_open_loop(run: dict, variant: str = "") -> str:
    """One line: the offered rate, trigger -> 202 and -> job.done p50/p99, how many ended."""
    return (f"open loop at {run['offered_per_s']:.1f}/s{', ' + variant if variant else ''}: 202 p50/p99 "
            f"{run['trigger_202']['p50_ms']:.0f}/{run['trigger_202']['p99_ms']:.0f} ms, done "
            f"{run['trigger_done']['p50_ms']:.0f}/{run['trigger_done']['p99_ms']:.0f} ms, "
            f"{run['ended_on_socket']}/{run['started']} ended")


def set_niceness(pid: int, value: int) -> None:
    """Every thread of process `pid` at niceness `value` (raising one back needs root)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        os.setpriority(os.PRIO_PROCESS, int(task.name), value)


async def nice_windows(http: RawHttp, feed: Feed, rate: float, seconds: float, windows: int) -> list[dict]:
    """The open loop again in `windows` pairs of windows, the worker at niceness 0 then 10 in each
    pair: does background work yielding the cores to the web process shorten the 202's tail? The two
    measured side by side on the same box moment, since this shared box's slow and fast spells move
    the tail more than one run shows (docs/benchmarks.md: no, not on 2 cores)."""
    out = []
    for _ in range(windows):
        for value in (0, 10):
            set_niceness(PIDS["worker"], value)
            run = await open_loop(http, feed, rate, seconds)
            run["worker_nice"] = value
            out.append(run)
            print(f"  {describe_open_loop(run, f'worker nice {value:>2}')}", flush=True)
    return out


# --- cost per job -----------------------------------------------------------------------------------

UUIDISH = re.compile(r"[0-9a-f]{8}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{4}-?[0-9a-f]{12}")
MONITOR_LINE = re.compile(r'^\+?[\d.]+ \[\d+ ([^\]]+)\] (.*)$')
QUOTED = re.compile(r'"((?:[^"\\]|\\.)*)"')


def key_shape(args: list[str]) -> str:
    """`COMMAND key` with ids and numbers replaced; scripts by their first key."""
    command = args[0].upper()
    if command in ("EVALSHA", "EVAL"):
        arg = args[3] if len(args) > 3 and args[2] != "0" else None
        command = "script"
    else:
        arg = args[1] if len(args) > 1 else None
    if arg is None:
        return command
    shape = re.sub(r"\d+", "N", UUIDISH.sub("<id>", arg))
    return f"{command} {shape[:60]}"


class Monitor:
    """Redis MONITOR in a thread: every command any client sends, and the ones Lua scripts run."""

    def __init__(self, redis_url: str) -> None:
        self.client = redis.Redis.from_url(redis_url)
        self.lines: list[str] = []
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        connection = self.client.connection_pool.get_connection()
        connection.send_command("MONITOR")
        connection.read_response()
        self.ready.set()
        while not self.stop.is_set():
            if connection.can_read(timeout=0.2):
                line = connection.read_response()
                self.lines.append(line.decode(errors="replace") if isinstance(line, bytes) else str(line))
        connection.disconnect()

    def __enter__(self) -> "Monitor":
        self.thread.start()
        self.ready.wait(10)
        return self

    def __exit__(self, *exc) -> None:
        time.sleep(0.5)
        self.stop.set()
        self.thread.join(10)

    def counts(self) -> tuple[Counter, Counter]:
        """(round trips by command and key shape, commands run inside Lua scripts by the same)."""
        trips, in_lua = Counter(), Counter()
        for line in self.lines:
            match = MONITOR_LINE.match(line)
            if not match:
                continue
            source, rest = match.groups()
            args = QUOTED.findall(rest)
            if not args or args[0].upper() in ("MONITOR", "INFO", "PING"):
                continue
            (in_lua if source == "lua" else trips)[key_shape(args)] += 1
        return trips, in_lua


class WriteLog:
    """A row-level trigger on every table logging each INSERT, UPDATE and DELETE in `bench_writes`."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.postgres = database_url.startswith("postgres")

    def _connect(self):  # type: ignore[no-untyped-def]
        if self.postgres:
            import psycopg

            return psycopg.connect(self.url, autocommit=True)
        conn = sqlite3.connect(self.url.removeprefix("sqlite:///"), timeout=30, isolation_level=None)
        return conn

    def install(self) -> None:
        conn = self._connect()
        if self.postgres:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_writes (tbl text, op text)")
            conn.execute("""CREATE OR REPLACE FUNCTION bench_log_write() RETURNS trigger AS $$
                BEGIN INSERT INTO bench_writes VALUES (TG_TABLE_NAME, TG_OP); RETURN NULL; END $$ LANGUAGE plpgsql""")
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'bench_writes'")]
            for table in tables:
                conn.execute(f'CREATE TRIGGER bench_log AFTER INSERT OR UPDATE OR DELETE ON "{table}" '
                             "FOR EACH ROW EXECUTE FUNCTION bench_log_write()")
        else:
            conn.execute("CREATE TABLE IF NOT EXISTS bench_writes (tbl text, op text)")
            tables = [row[0] for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
                "AND name <> 'bench_writes'")]
            for table in tables:
                for op in ("INSERT", "UPDATE", "DELETE"):
                    conn.execute(f'CREATE TRIGGER "bench_{table}_{op}" AFTER {op} ON "{table}" '
                                 f"BEGIN INSERT INTO bench_writes VALUES ('{table}', '{op}'); END")
        conn.close()

    def take(self) -> Counter:
        conn = self._connect()
        rows = list(conn.execute("SELECT tbl, op, count(*) FROM bench_writes GROUP BY tbl, op"))
        conn.execute("DELETE FROM bench_writes")
        conn.close()
        return Counter({f"{op} {tbl}": n for tbl, op, n in rows})

    def uninstall(self) -> None:
        conn = self._connect()
        if self.postgres:
            tables = [row[0] for row in conn.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> 'bench_writes'")]
            for table in tables:
                conn.execute(f'DROP TRIGGER IF EXISTS bench_log ON "{table}"')
        else:
            for (name,) in list(conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger' "
                                             "AND name LIKE 'bench_%'")):
                conn.execute(f'DROP TRIGGER "{name}"')
        conn.close()


def per_job(counter: Counter, jobs: int) -> dict[str, float]:
    return {name: round(n / jobs, 2) for name, n in counter.most_common() if n / jobs >= 0.01}


# --- the progress-heavy job ---------------------------------------------------------------------------

def heavy_check(feed: Feed, jobs: list[str]) -> dict:
    """Every job's last event is its job.done at 100%, and its progress never went back."""
    ok, events = 0, []
    for job in jobs:
        seen = feed.events.get(job, [])
        events.append(len(seen))
        progress = [e.get("progress", 0) for e in seen]
        if seen and seen[-1].get("type") == "job.done" and seen[-1].get("progress") == 100 \
                and progress == sorted(progress):
            ok += 1
    return {"smooth_and_final": ok, "events_per_job": {"min": min(events, default=0),
                                                       "max": max(events, default=0),
                                                       "mean": sum(events) / max(1, len(events))}}


# --- the run ------------------------------------------------------------------------------------------

def database(kind: str, workdir: Path) -> tuple[dict[str, str], object | None]:
    workdir.mkdir(parents=True, exist_ok=True)
    server = None
    if kind == "postgres":
        sys.path.insert(0, str(stack.BASE_DIR))
        from tests.postgres import start_postgres

        server = start_postgres()
        url = server.create_database("bench_jobs")
    else:
        url = f"sqlite:///{workdir / 'db.sqlite3'}"
    env = {"DATABASE_URL": url, "MEDIA_ROOT": str(workdir / "media")}
    manage(env, "migrate", "--noinput", "-v0")
    return env, server


def start_gunicorn(processes: list, env: dict[str, str], web_port: int, threads: int,
                   workdir: Path) -> tuple[int, tuple[int, int]]:
    """gunicorn (one gthread worker) serving app/wsgi.py on a port of its own, for the triggers; the
    port, and the pids of its worker and its arbiter (which only watches)."""
    port = stack.free_port()
    processes.append(stack._spawn([stack.python_bin(), "-m", "gunicorn", "-b", f"127.0.0.1:{port}", "-w", "1",
                                   "-k", "gthread", "--threads", str(threads), "app.wsgi:application"],
                                  {**env, "PORT": str(web_port)}, workdir / "gunicorn.log"))
    stack.wait_for_port(port, process=processes[-1])
    arbiter = processes[-1].pid
    deadline = time.monotonic() + 10
    while not (children := Path(f"/proc/{arbiter}/task/{arbiter}/children").read_text().split()):
        if time.monotonic() > deadline:
            raise RuntimeError("gunicorn started no worker")
        time.sleep(0.1)
    return port, (int(children[0]), arbiter)


async def project(base_url: str, token: str, args: argparse.Namespace, database_url: str,
                  redis_url: str, http_port: int, baselines: "Baselines") -> dict:
    base_ws = base_url.replace("http://", "ws://")
    out: dict = {"levels": []}
    http = RawHttp(http_port, token)
    feed = Feed(f"{base_ws}/ws/events/?token={token}", keep_events=True)
    await feed.start()
    warm = await closed_loop(http, feed, 20, 10)  # every path warm, connections open
    print(f"  warm-up: {warm['ended_on_socket']} of 20 ended", flush=True)
    feed.events.clear()
    feed.keep_events = False
    for clients in [int(c) for c in args.clients.split(",")]:
        await baselines.measure(args.jobs, clients)
        result = await closed_loop(http, feed, args.jobs, clients)
        print(f"  project, {clients} clients: {result['per_s']:.1f} jobs/s, 202 p50/p99 "
              f"{result['trigger_202']['p50_ms']:.0f}/{result['trigger_202']['p99_ms']:.0f} ms, done "
              f"{result['trigger_done']['p50_ms']:.0f}/{result['trigger_done']['p99_ms']:.0f} ms, "
              f"{result['ended_on_socket']}/{result['started']} ended, errors {result['errors']} "
              f"{result['error_examples'][:1]}\n    CPU ms per job {result['cpu_ms_per_job']}", flush=True)
        out["levels"].append(result)
        await asyncio.sleep(1)
    baselines.stop()  # idle from here on, but out of the way of the steps that follow
    best = max(level["per_s"] for level in out["levels"])
    if args.open_seconds > 0:
        out["open_loop"] = await open_loop(http, feed, best * args.open_fraction, args.open_seconds)
        print(f"  {describe_open_loop(out['open_loop'])}", flush=True)
    if args.nice_windows > 0:
        out["nice_windows"] = await nice_windows(http, feed, best * args.open_fraction, args.open_seconds,
                                                 args.nice_windows)
    if args.cost_jobs > 0:
        writes = WriteLog(database_url)
        writes.install()
        await asyncio.sleep(0.5)
        writes.take()
        with Monitor(redis_url) as monitor:
            cost = await closed_loop(http, feed, args.cost_jobs, 10)
            await asyncio.sleep(0.5)
        db = writes.take()
        trips, in_lua = monitor.counts()
        jobs = cost["ended_on_socket"] or 1
        out["cost"] = {
            "jobs": jobs,
            "db_writes": per_job(db, jobs), "db_writes_total": round(sum(db.values()) / jobs, 2),
            "redis_trips": per_job(trips, jobs), "redis_trips_total": round(sum(trips.values()) / jobs, 2),
            "redis_in_lua": per_job(in_lua, jobs), "redis_in_lua_total": round(sum(in_lua.values()) / jobs, 2),
        }
        c = out["cost"]
        print(f"  cost per job: {c['db_writes_total']} row writes {c['db_writes']}\n"
              f"    {c['redis_trips_total']} Redis commands sent {c['redis_trips']}\n"
              f"    {c['redis_in_lua_total']} run inside scripts", flush=True)
        if args.heavy_jobs > 0:
            feed.keep_events = True
            await asyncio.sleep(0.5)
            writes.take()
            heavy = await closed_loop(http, feed, args.heavy_jobs, args.heavy_jobs, kind=HEAVY_KIND)
            heavy_db = writes.take()
            ids = [job for job in feed.events if feed.events[job][0].get("kind") == HEAVY_KIND]
            heavy.update(heavy_check(feed, ids))
            heavy["db_writes_total"] = sum(heavy_db.values())
            heavy["db_writes"] = dict(heavy_db.most_common())
            heavy["steps"] = args.heavy_steps
            # the trivial job's rate with as many in flight (same clients, no write log? it is on for both)
            writes.take()
            trivial = await closed_loop(http, feed, args.heavy_jobs, args.heavy_jobs)
            writes.take()
            heavy["trivial_per_s_same_run"] = trivial["per_s"]
            out["heavy"] = heavy
            print(f"  progress-heavy: {heavy['per_s']:.1f} jobs/s (trivial {trivial['per_s']:.1f}), "
                  f"{heavy['db_writes_total']} row writes for {args.heavy_jobs} x {args.heavy_steps} steps, "
                  f"{heavy['smooth_and_final']}/{len(ids)} smooth and final, events/job "
                  f"{heavy['events_per_job']}\n    CPU ms per job {heavy['cpu_ms_per_job']}", flush=True)
        writes.uninstall()
    await feed.close()
    http.close()
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--clients", default="10,50,200")
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--open-fraction", type=float, default=0.5)
    parser.add_argument("--open-seconds", type=float, default=20)
    parser.add_argument("--cost-jobs", type=int, default=200)
    parser.add_argument("--heavy-jobs", type=int, default=100)
    parser.add_argument("--heavy-steps", type=int, default=1000)
    parser.add_argument("--heavy-step-seconds", type=float, default=0.0,
                        help="each progress-heavy step waits this long first (I/O per row; yields)")
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--worker-env", action="append", default=[], metavar="NAME=VALUE",
                        help="extra environment for the project's worker only, e.g. DATABASE_POOL=1 (a variant to "
                             "measure; repeatable)")
    parser.add_argument("--profile", default="", help="folder: py-spy records Daphne and the worker there")
    parser.add_argument("--web-processes", type=int, default=1,
                        help="Daphne processes serving the port (basic/ops/web_pool.py, as WEB_PROCESSES)")
    parser.add_argument("--http-server", default="daphne", choices=["daphne", "gunicorn"],
                        help="what serves the REST triggers: Daphne, or gunicorn's threaded WSGI worker on "
                             "app/wsgi.py beside Daphne's sockets (a variant to measure; `pip install gunicorn`)")
    parser.add_argument("--nice-windows", type=int, default=0,
                        help="after the open loop, this many pairs of open-loop windows with the worker at "
                             "niceness 0 then 10 (a variant to measure; needs root to raise it back)")
    parser.add_argument("--http-threads", type=int, default=8, help="gunicorn's threads (--http-server gunicorn)")
    parser.add_argument("--floor", action=argparse.BooleanOptionalAction, default=True,
                        help="measure bare.http: stock Daphne and a plain Django view in front of bare Celery")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    workdir = Path(tempfile.mkdtemp(prefix="bench-jobs-"))
    redis_url = ensure_redis()
    db_env, pg = database(args.database, workdir)
    env = {
        **db_env,
        "REDIS_URL": redis_url,
        "CHANNEL_PREFIX": f"jobs{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "LISTEN_LOOPBACK_ONLY": "1",
        "DJANGO_SETTINGS_MODULE": "app.settings",
        # One user starts every job: the per-user start budget and socket cap are raised for it.
        "JOB_TRIGGER_RATE": "1000000/min",
        "WS_MAX_PER_USER": "100000",
        "JOB_KIND_EXTRA_MODULES": "bench.progress_kind",
        "BENCH_PROGRESS_STEPS": str(args.heavy_steps),
        "BENCH_PROGRESS_STEP_SECONDS": str(args.heavy_step_seconds),
        **stack.fresh_metrics_dir(workdir / "metrics"),
    }
    os.environ["REDIS_URL"] = redis_url
    token = manage(env, "create_api_user", "bench")
    processes = []
    result: dict = {"database": args.database, "jobs": args.jobs, "concurrency": 100,
                    "web_processes": args.web_processes}
    pool: WebPool | None = None
    try:
        # 1. the baselines: bare Celery on its own worker, and the floor, measured at each level just
        # before the project (this shared box's spells move all three together, not each alone)
        bare_log = workdir / "bare.log"
        bare = stack._spawn(bare_celery.worker_args(100, f"bare-{os.getpid()}@%h"),
                            {"REDIS_URL": redis_url, "LOG_LEVEL": "INFO"}, bare_log)
        processes.append(bare)
        stack.wait_for_text(bare_log, "ready.", process=bare)
        bare_celery.app.conf.broker_url = redis_url
        rows = str(workdir / "bare-rows.sqlite3")
        bare_celery.prepare_rows(rows)
        baselines = Baselines(redis_url, rows, bare, result, PIDS)
        if args.floor:
            processes += baselines.start_floors(workdir)
        # 2-5. the project
        worker_log = workdir / "worker.log"
        worker_env = dict(item.split("=", 1) for item in args.worker_env)
        result["worker_env"] = worker_env
        worker = stack.start_worker({**env, "LOG_LEVEL": "INFO", **worker_env}, concurrency=100, log=worker_log,
                                    hostname=f"bench-jobs-{os.getpid()}@%h")
        processes.append(worker)
        stack.wait_for_text(worker_log, "ready.", process=worker)
        port = stack.free_port()
        if args.web_processes > 1:
            pool = WebPool(port, args.web_processes, env, log_dir=workdir)
            pool.start()
            web_pids = pool.pids()
        else:
            processes.append(stack.start_daphne(port, env, log=workdir / "daphne.log"))
            web_pids = [processes[-1].pid]
        base_url = f"http://127.0.0.1:{port}"
        http_port = port
        http_pids: dict[str, int] = {}
        if args.http_server == "gunicorn":
            http_port, (gunicorn, arbiter) = start_gunicorn(processes, env, port, args.http_threads, workdir)
            http_pids = {"gunicorn": gunicorn, "gunicorn arbiter": arbiter}
        httpx.post(f"{base_url}/api/students/generate/", json={"count": args.students},
                   headers={"Authorization": f"Token {token}"}, timeout=60).raise_for_status()
        PIDS.update({"worker": worker.pid, "bench client": os.getpid(),
                     **{f"daphne{i + 1 if i else ''}": pid for i, pid in enumerate(web_pids)}, **http_pids})
        if stack_redis := getattr(sys.modules["bench.common"], "_redis", None):
            PIDS["redis"] = stack_redis.pid
        spies = []
        if args.profile:
            spies = [py_spy(pid, Path(args.profile) / f"{name}.txt")
                     for name, pid in (("worker", worker.pid), ("daphne", web_pids[0]))]
        result["project"] = asyncio.run(project(base_url, token, args, db_env["DATABASE_URL"], redis_url, http_port,
                                                baselines))
        stop_py_spy(spies)
    finally:
        if pool is not None:
            pool.stop()
        for process in reversed(processes):
            stack.stop(process)
        stop_redis()
        if pg is not None:
            from tests.postgres import stop_postgres

            stop_postgres(pg)
    bare50 = next((b for b in result["bare"] if b["clients"] == 50), result["bare"][0])
    result["bare_per_s"] = bare50["per_s"]
    floors = result["floor_job"] or [{}] * len(result["bare"])
    ours = result["floor_ours_job"] or [{}] * len(result["bare"])
    for level, b, bj, fl, fo in zip(result["project"]["levels"], result["bare"], result["bare_job"], floors, ours,
                                    strict=False):
        level["vs_bare"] = level["per_s"] / b["per_s"] if b["per_s"] else 0.0
        level["bare_per_s"] = b["per_s"]
        level["vs_bare_job"] = level["per_s"] / bj["per_s"] if bj["per_s"] else 0.0
        level["bare_job_per_s"] = bj["per_s"]
        level["floor_job_per_s"] = fl.get("per_s", 0.0)
        level["vs_floor_job"] = level["per_s"] / fl["per_s"] if fl.get("per_s") else 0.0
        level["floor_ours_job_per_s"] = fo.get("per_s", 0.0)
        level["vs_floor_ours_job"] = level["per_s"] / fo["per_s"] if fo.get("per_s") else 0.0
    print(f"\nJobs vs bare Celery ({args.database}, {args.jobs} each, gevent concurrency 100):")
    for level in result["project"]["levels"]:
        print(f"  {level['clients']:>4} clients: {level['per_s']:7.1f} jobs/s vs bare {level['bare_per_s']:7.1f} "
              f"tasks/s: x{level['vs_bare']:.2f}; vs bare.job (a row and an event, no framework) "
              f"{level['bare_job_per_s']:7.1f}: x{level['vs_bare_job']:.2f}\n"
              f"        vs the floor (a plain Django view and a row) on stock Daphne {level['floor_job_per_s']:7.1f}: "
              f"x{level['vs_floor_job']:.2f}, on this project's server and handler "
              f"{level['floor_ours_job_per_s']:7.1f}: x{level['vs_floor_ours_job']:.2f}")
    write_result(result, ["--json", args.json] if args.json else [])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
