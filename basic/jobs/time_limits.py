"""A kind's `time_limit`, enforced on both pools (docs/design.md, "Job policies").

- Every pool: `JobContext.progress` stops a body that reports past its deadline.
- The gevent pool: a `gevent.Timeout` raises in the body's greenlet wherever it waits (a hung
  socket, a sleep), as no body on this pool computes for long (that is the CPU queue's job).
- The prefork pool: Celery's soft limit (sent with the task) raises SoftTimeLimitExceeded in the
  child wherever it is, computing or not; its hard limit, JOB_TIME_LIMIT_GRACE_SECONDS later, kills
  the child, and the recovery sweep ends the job (basic/jobs/services.py, recover_lost_jobs).

Whichever fires, the run ends as JobTimedOut: the job fails saying so, its outputs are removed.
"""
import contextlib
import time
from collections.abc import Iterator
from datetime import datetime

from celery.exceptions import SoftTimeLimitExceeded


class JobTimedOut(BaseException):
    """A run passed its kind's time limit. A BaseException, so a body's `except Exception` (e.g.
    around a network call) cannot turn it into an ordinary failure and keep going."""

    def __init__(self, seconds: int) -> None:
        super().__init__(seconds)
        self.seconds = seconds

    def __str__(self) -> str:
        return timed_out_message(self.seconds)


def timed_out_message(seconds: int) -> str:
    return f"The job timed out after {seconds} s (its kind's time limit) and was stopped."


class Deadline:
    """When a run must end; checked by `JobContext.progress`."""

    def __init__(self, seconds: int) -> None:
        self.seconds = seconds
        self.at = time.monotonic() + seconds

    def passed(self) -> bool:
        return time.monotonic() >= self.at

    def check(self) -> None:
        if self.passed():
            raise JobTimedOut(self.seconds)


def ran_past(started: datetime | None, seconds: int, now: datetime) -> bool:
    """A run that started at `started` has passed a limit of `seconds` (a lost run, seen later)."""
    return started is not None and (now - started).total_seconds() >= seconds


def _on_gevent() -> bool:
    try:
        from gevent import monkey
    except ImportError:
        return False
    return bool(monkey.is_module_patched("socket"))


@contextlib.contextmanager
def enforced(deadline: Deadline) -> Iterator[None]:
    """Raise JobTimedOut in the block once `deadline` passes, wherever the body is waiting."""
    timeout = None
    if _on_gevent():
        import gevent

        timeout = gevent.Timeout(max(0.0, deadline.at - time.monotonic()), JobTimedOut(deadline.seconds))
        timeout.start()
    try:
        yield
    except SoftTimeLimitExceeded:
        raise JobTimedOut(deadline.seconds) from None
    finally:
        if timeout is not None:
            timeout.close()
