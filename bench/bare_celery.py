"""The bare-Celery baseline of bench/bench_jobs.py: a Celery app with one task that only increments
a Redis counter, configured as the project's worker is (acks late, prefetch 1, no results, JSON),
run on the same kind of worker (`--pool=gevent`, started through `python -m gevent.monkey`).
No Django: what is measured is Celery, kombu and Redis alone."""
import os

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
