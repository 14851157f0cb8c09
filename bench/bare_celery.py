"""The bare-Celery baseline of bench/bench_jobs.py: a Celery app with one task that only increments
a Redis counter, configured as the project's worker is (acks late, prefetch 1, no results, JSON),
run on the same kind of worker (`--pool=gevent`, started through `python -m gevent.monkey`).
No Django: what is measured is Celery, kombu and Redis alone.

`bare.job` is a second baseline: the least a job of ours writes, done with the engines directly.
Its sender INSERTs a row (`insert_row`, sqlite3) before `apply_async`; the task UPDATEs that row to
done and stores and publishes one event (XADD + PUBLISH in one round trip), then counts itself.
The gap between it and `bare.incr` is what one row and one event cost; the gap between it and the
project is what the platform (Django, DRF, the lifecycle) costs."""
import os
import sqlite3
import threading

import redis
from celery import Celery

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
QUEUE = "bare"

app = Celery("bare", broker=REDIS_URL)
app.conf.update(
    task_ignore_result=True,
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_default_queue=QUEUE,
    task_serializer="json",
    accept_content=["json"],
    broker_connection_retry_on_startup=True,
    broker_transport_options={"visibility_timeout": 6 * 3600, "socket_connect_timeout": 0.8, "socket_timeout": 5,
                              "max_connections": 50},
    worker_hijack_root_logger=False,
)
_client: redis.Redis | None = None


def client() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis(connection_pool=redis.BlockingConnectionPool.from_url(REDIS_URL, max_connections=50))
    return _client


@app.task(name="bare.incr")
def incr(key: str) -> None:
    client().incr(key)


def worker_args(concurrency: int, hostname: str) -> list[str]:
    """The same command line as basic/ops/stack.worker_args, with this app and queue."""
    import sys

    return [sys.executable, "-m", "gevent.monkey", "--module", "celery", "-A", "bench.bare_celery", "worker",
            "--pool=gevent", f"--concurrency={concurrency}", "-Q", QUEUE, "-l", "info", "-n", hostname,
            "--without-gossip", "--without-mingle"]


ROWS_TABLE = "CREATE TABLE IF NOT EXISTS job (id INTEGER PRIMARY KEY, status TEXT NOT NULL, result TEXT)"
_senders = threading.local()


def _connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=30, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def prepare_rows(path: str) -> None:
    with _connect(path) as connection:
        connection.execute(ROWS_TABLE)


def insert_row(path: str) -> int:
    """The sender's row (one connection per sending thread, kept, as a web process keeps one)."""
    connection = getattr(_senders, "connection", None)
    if connection is None:
        connection = _senders.connection = _connect(path)
    return connection.execute("INSERT INTO job (status) VALUES ('queued')").lastrowid


@app.task(name="bare.job")
def job(key: str, row: int, path: str) -> None:
    connection = _connect(path)  # one per task, as Django opens one per task greenlet
    try:
        connection.execute("UPDATE job SET status = 'done', result = '{}' WHERE id = ? AND status = 'queued'", (row,))
    finally:
        connection.close()
    pipe = client().pipeline(transaction=False)
    pipe.xadd(f"{key}:events:{row}", {"type": "job.done", "seq": 1}, maxlen=100)
    pipe.publish(f"{key}:feed", f'{{"type": "job.done", "job": {row}}}')
    pipe.incr(key)
    pipe.execute()
