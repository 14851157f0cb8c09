"""Real processes: the session's Redis, a Daphne and a `celery worker --pool=gevent`, sharing a
fresh database (a SQLite file, or a PostgreSQL database with TEST_DATABASE=postgres: see
tests/databases.py), started with the same commands `make run` uses (basic/ops/stack.py)."""
import contextlib
import itertools
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from basic.ops import stack
from tests import databases


@dataclass
class LiveStack:
    base_url: str
    ws_url: str
    env: dict[str, str]
    media_root: Path
    database: Path | None  # the SQLite file; None on PostgreSQL (see database_url)
    worker_log: Path
    database_url: str = ""
    token: str = ""
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Token {self.token}"}

    def user_token(self, username: str, staff: bool = False) -> str:
        return manage(self.env, "create_api_user", username, *(["--staff"] if staff else []))

    def start_worker(self, tag: str, concurrency: int = 100) -> subprocess.Popen:
        """Start a (further) gevent worker and wait until it consumes."""
        log = self.worker_log.with_name(f"worker-{tag}.log")
        process = stack.start_worker({**self.env, "LOG_LEVEL": "INFO"}, concurrency=concurrency, log=log,
                                    hostname=f"{tag}-{os.getpid()}@%h")
        self.processes[f"worker-{tag}"] = process
        stack.wait_for_text(log, "ready.", process=process)
        self.worker_log = log
        return process

    def start_cpu_worker(self, tag: str = "cpu", concurrency: int = 1) -> subprocess.Popen:
        """Start a prefork worker on the CPU queue (as `make run` does) and wait until it consumes."""
        log = self.worker_log.with_name(f"worker-{tag}.log")
        process = stack.start_cpu_worker({**self.env, "LOG_LEVEL": "INFO"}, concurrency=concurrency, log=log,
                                         hostname=f"{tag}-{os.getpid()}@%h")
        self.processes[f"worker-{tag}"] = process
        stack.wait_for_text(log, "ready.", process=process)
        return process

    def start_beat(self) -> subprocess.Popen:
        """Start `celery beat` (database scheduler) as `make run` does, and wait until it ticks."""
        log = self.worker_log.with_name("beat.log")
        process = stack.start_beat({**self.env, "LOG_LEVEL": "INFO"}, log=log)
        self.processes["beat"] = process
        stack.wait_for_text(log, "beat: Starting", process=process)
        return process

    def restart_web(self) -> None:
        """SIGKILL the web process (a crash: no goodbye to any socket) and start a new one on the same
        port, as a supervisor would; returns once it listens."""
        port = int(self.base_url.rsplit(":", 1)[1])
        old = self.processes["daphne"]
        old.kill()
        old.wait()
        self.processes["daphne"] = stack.start_daphne(port, self.env, log=self.worker_log.with_name("daphne.log"))

    def stop_redis(self) -> None:
        stack.stop(self.processes["redis"])

    def start_redis_again(self, empty: bool = False) -> None:
        """Start the stack's own Redis again on the same port: with its data, or `empty` (as a
        Redis without persistence comes back: no queue, no leases, no counters, no history)."""
        port = int(self.env["REDIS_URL"].rsplit(":", 1)[1].split("/")[0])
        workdir = self.media_root.parent / "redis"
        if empty:
            shutil.rmtree(workdir, ignore_errors=True)
        self.processes["redis"] = stack.start_redis(port, workdir, appendfsync="always")

    def query(self, sql: str, *params: object) -> list[tuple]:
        """Rows straight from the stack's database, past every process of the stack (works while
        the web server or Redis is down). `%s` placeholders; pass job ids as uuid.UUID."""
        if self.database is not None:
            values = [p.hex if isinstance(p, uuid.UUID) else p for p in params]
            with contextlib.closing(sqlite3.connect(self.database, timeout=20)) as db:
                return db.execute(sql.replace("%s", "?"), values).fetchall()
        import psycopg

        with psycopg.connect(self.database_url) as db:
            return db.execute(sql, params).fetchall()

    def log_tail(self, lines: int = 60, name: str = "") -> str:
        """The last lines of the worker's log, or of its sibling `name` (e.g. "daphne.log")."""
        log = self.worker_log.with_name(name) if name else self.worker_log
        if not log.exists():
            return ""
        return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


# Redis databases for the brokers of stacks on the session's Redis (0 is the session's own, 7 the
# runstack test's): Celery's queue is one list, and a stack left running (a module's fixture)
# would take another stack's tasks from it and drop them (the job isn't in its database).
_broker_databases = itertools.cycle(range(8, 16))


def private_broker_url(redis_url: str) -> str:
    """An empty Redis database of the session's Redis, for one stack's Celery queue."""
    import redis

    url = f"{redis_url.rsplit('/', 1)[0]}/{next(_broker_databases)}"
    with redis.Redis.from_url(url) as client:
        client.flushdb()
    return url


def manage(env: dict[str, str], *args: str) -> str:
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=stack.BASE_DIR, env={**os.environ, **env},
                          check=True, capture_output=True, text=True)
    return done.stdout.strip()


_migrated_sqlite: dict[Path, Path] = {}


def migrate(env: dict[str, str], sqlite_file: Path | None, root: Path) -> None:
    """Migrate the stack's database. A SQLite one is a copy of a database migrated once per session
    (the same migrations, about 2 s of CPU saved per stack); PostgreSQL's is migrated here."""
    if sqlite_file is None:
        manage(env, "migrate", "--noinput", "-v0")
        return
    template = _migrated_sqlite.get(root)
    if template is None:
        template = root / "migrated-template.sqlite3"
        template.unlink(missing_ok=True)
        manage({**env, "DATABASE_URL": f"sqlite:///{template}"}, "migrate", "--noinput", "-v0")
        _migrated_sqlite[root] = template
    shutil.copyfile(template, sqlite_file)


@contextlib.contextmanager
def live_stack(root: Path, name: str, worker: bool = True, concurrency: int = 100, own_redis: bool = False,
               database: str | None = None, cpu_worker: bool = False, redis_env: dict[str, str] | None = None,
               **extra_env: str) -> Iterator[LiveStack]:
    """Start Daphne (and a worker) on a fresh database; stop them on exit. `cpu_worker` adds a
    one-process prefork worker for the CPU queue (kinds such as thumbnails). `own_redis` gives the
    stack a private, restartable Redis instead of the test session's; `redis_env`, Redis settings of
    its own (a Redis Sentinel set's: tests/sentinel.py). `database`: "sqlite" or "postgres" (a new
    database on the session's server); by default TEST_DATABASE's."""
    workdir = root / name
    workdir.mkdir(parents=True, exist_ok=True)
    if (database or databases.chosen_database()) == "postgres":
        sqlite_file = None
        database_url = databases.require_postgres(root.parent).fresh_database(name)
    else:
        sqlite_file = workdir / "db.sqlite3"
        database_url = f"sqlite:///{sqlite_file}"
    redis_process = None
    if own_redis:
        redis_port = stack.free_port()
        redis_process = stack.start_redis(redis_port, workdir / "redis", appendfsync="always")
        extra_env = {"REDIS_URL": f"redis://127.0.0.1:{redis_port}/0", **extra_env}
    elif redis_env is not None:
        extra_env = {**redis_env, **extra_env}
    else:
        extra_env = {"CELERY_BROKER_URL": private_broker_url(os.environ["REDIS_URL"]), **extra_env}
    env = {
        "DATABASE_URL": database_url,
        "MEDIA_ROOT": str(workdir / "media"),
        "REDIS_URL": os.environ["REDIS_URL"],  # unless extra_env names the stack's own
        "CHANNEL_PREFIX": f"it-{name}-{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "JOB_TRIGGER_RATE": "10000/min",
        **stack.fresh_metrics_dir(workdir / "metrics"),  # as `make run`: /metrics adds up web and worker
        **extra_env,
    }
    migrate(env, sqlite_file, root)
    port = stack.free_port()
    live = LiveStack(f"http://127.0.0.1:{port}", f"ws://127.0.0.1:{port}", env, workdir / "media", sqlite_file,
                     workdir / "worker.log", database_url)
    if redis_process:
        live.processes["redis"] = redis_process
    live.token = live.user_token("alice")
    try:
        if worker:
            live.processes["worker"] = stack.start_worker(
                {**env, "LOG_LEVEL": "INFO"}, concurrency=concurrency, log=live.worker_log,
                hostname=f"{name}-{os.getpid()}@%h")
            stack.wait_for_text(live.worker_log, "ready.", process=live.processes["worker"])
        if cpu_worker:
            live.start_cpu_worker()
        live.processes["daphne"] = stack.start_daphne(port, env, log=workdir / "daphne.log")
        yield live
    finally:
        stop_together([process for name, process in live.processes.items() if name != "redis"])
        if redis_process:
            stack.stop(redis_process)  # last: a worker's warm shutdown gives its messages back to it


def stop_together(processes: list[subprocess.Popen], timeout: float = 10.0) -> None:
    """SIGTERM every process at once, then wait (a worker's warm shutdown can take seconds; one
    after another, a stack's teardown added them up); SIGKILL what is left after `timeout`."""
    for process in processes:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for process in processes:
        try:
            process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def stack_root(scratch_dir: Path) -> Path:
    return scratch_dir / "stacks"
