"""One worker process's budget for progress updates, shared by the job bodies it runs.

Each progress update sent costs an event (a Redis script), a lease renewal and a cancel read.
Capped per job only (~10 a second), a gevent worker running 100 bodies at once sends 1,000 a
second, which is its whole CPU: each body then waits longer for its turn, so it runs longer and
sends more (issue 19 measured 1.6 jobs/s, x0.07 of the trivial job, on PostgreSQL). Here the
interval between one body's updates grows with the bodies running, so the process stays within
JOB_PROGRESS_UPDATES_PER_SECOND however many run; a lone job keeps its ~10 a second.
"""
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings

_lock = threading.Lock()
_running = 0


@contextmanager
def body_running() -> Iterator[None]:
    """Count a job body as running in this process while the block runs."""
    global _running
    with _lock:
        _running += 1
    try:
        yield
    finally:
        with _lock:
            _running -= 1


def running() -> int:
    return _running


def interval(floor: float) -> float:
    """Seconds between one body's updates: at least `floor`, and long enough that the bodies
    running now share JOB_PROGRESS_UPDATES_PER_SECOND between them."""
    return max(floor, _running / settings.JOB_PROGRESS_UPDATES_PER_SECOND)
