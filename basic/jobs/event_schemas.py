"""The shape of every job event type, one TypedDict each, and `check_event`, which refuses any other.

Events are JSON once they leave the process, so only the JSON types are checked. Keys are exact:
a missing or an extra key is refused, as is a value of the wrong type. `seq` is assigned by the event
store (basic/jobs/event_store.py): an event as built has none, a stored one and a snapshot have it.
"""
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from basic.core.shapes import Shape, ShapeError
from basic.jobs import events


class EventShapeError(ShapeError):
    """An event that does not match its type's schema; the message names the type and the keys."""


class _JobEvent(TypedDict):
    """What every pushed job event carries (built by basic/jobs/publish.py, `transitions.push`)."""

    type: str
    job: str  # the job's UUID
    seq: int
    kind: str
    status: str  # a Job.Status value
    progress: int  # 0..100
    message: str
    ts: str  # ISO 8601, milliseconds, UTC


class JobStarted(_JobEvent):
    pass


class JobProgress(_JobEvent):
    pass


class JobRetrying(_JobEvent):
    attempt: int  # the attempt that will run next (2 for the first retry)
    max_attempts: int  # 1 + the kind's retries
    error: str  # why the last attempt failed, said to the user
    retry_at: str  # ISO 8601, UTC: when the next attempt may start


class JobDone(_JobEvent):
    result_url: str  # the download's path
    result: dict[str, Any]  # the body's JSON dict (Job.result)


class JobFailed(_JobEvent):
    error: str  # said to the user; the traceback is only in the log


class JobCancelled(_JobEvent):
    pass


class JobSnapshot(TypedDict):
    """The job's row as it is, sent first on a job socket (and when history cannot be replayed)."""

    type: str
    job: str
    seq: int  # the last seq the socket knows of
    kind: str
    owner: str | None  # the owner's username
    status: str
    progress: int
    message: str
    error: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    created: str
    started: str | None
    finished: str | None
    ts: str
    result_url: NotRequired[str]  # only when the job is done


class _BatchEvent(TypedDict):
    """What every batch event carries (basic/jobs/batches.py): the aggregate over its members. The
    counts add up to `total`; `progress` is the members' mean (an ended member counts 100), never
    going back."""

    type: str
    batch: str  # the batch's UUID
    seq: int  # the batch's own stream
    status: str  # a Batch.Status value
    progress: int  # 0..100
    message: str
    total: int
    queued: int  # scheduled or queued (a retry waits queued)
    running: int
    done: int
    failed: int
    cancelled: int
    ts: str


class BatchProgress(_BatchEvent):
    pass


class BatchDone(_BatchEvent):
    download_url: str  # the zip of every member's output


class BatchFailed(_BatchEvent):
    download_url: str  # members that did finish are still in the zip


class BatchCancelled(_BatchEvent):
    download_url: str


class BatchMember(TypedDict):
    job: str
    kind: str
    status: str
    progress: int
    message: str
    # The member's row's `last_seq`: its own stream's seq the row is at least as new as. A page that
    # already saw a later event of the member on /ws/events/ keeps that (basic/static/.../jobs.js).
    seq: int


class BatchSnapshot(_BatchEvent):
    """The batch's rows as they are, sent first on a batch socket (and when history cannot be replayed)."""

    owner: str
    created: str
    finished: str | None
    members: list[BatchMember]
    download_url: str


SCHEMAS: dict[str, type] = {
    events.JOB_SNAPSHOT: JobSnapshot,
    events.JOB_STARTED: JobStarted,
    events.JOB_PROGRESS: JobProgress,
    events.JOB_RETRYING: JobRetrying,
    events.JOB_DONE: JobDone,
    events.JOB_FAILED: JobFailed,
    events.JOB_CANCELLED: JobCancelled,
    events.BATCH_SNAPSHOT: BatchSnapshot,
    events.BATCH_PROGRESS: BatchProgress,
    events.BATCH_DONE: BatchDone,
    events.BATCH_FAILED: BatchFailed,
    events.BATCH_CANCELLED: BatchCancelled,
}


_SHAPES = {with_seq: {name: Shape(schema, drop=frozenset() if with_seq else frozenset({"seq"}), error=EventShapeError,
                           name=name)
                     for name, schema in SCHEMAS.items()}
           for with_seq in (True, False)}


def check_event(event: Mapping[str, Any], *, with_seq: bool = True) -> None:
    """Raise EventShapeError unless `event` matches its type's schema exactly.

    `with_seq=False` for an event as built, before the event store gives it its `seq`. Called for
    every pushed event, so it stays cheap (basic/core/shapes.py): 1.6-2.8 µs for a progress event
    (timeit, min of 7 x 200k, on a 2-core box at load average 3)."""
    shape = _SHAPES[with_seq].get(event.get("type"))  # type: ignore[arg-type]
    if shape is None:
        raise EventShapeError(f"unknown job event type {event.get('type')!r}")
    shape.check(event)
