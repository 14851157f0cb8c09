"""The one place for job and batch event types and the channel-layer groups they are published to."""
from uuid import UUID

JOB_SNAPSHOT = "job.snapshot"
JOB_STARTED = "job.started"
JOB_PROGRESS = "job.progress"
JOB_RETRYING = "job.retrying"  # a run failed on a transient error; the job waits for its next attempt
JOB_DONE = "job.done"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
TERMINAL_EVENTS = frozenset({JOB_DONE, JOB_FAILED, JOB_CANCELLED})
JOB_EVENT_TYPES = frozenset({JOB_STARTED, JOB_PROGRESS, JOB_RETRYING}) | TERMINAL_EVENTS

# A batch's own stream (basic/jobs/batches.py): its aggregate over its members, then one end.
BATCH_SNAPSHOT = "batch.snapshot"
BATCH_PROGRESS = "batch.progress"  # only when the aggregate percent or a count changes
BATCH_DONE = "batch.done"
BATCH_FAILED = "batch.failed"
BATCH_CANCELLED = "batch.cancelled"
BATCH_TERMINAL_EVENTS = frozenset({BATCH_DONE, BATCH_FAILED, BATCH_CANCELLED})
BATCH_EVENT_TYPES = frozenset({BATCH_PROGRESS}) | BATCH_TERMINAL_EVENTS

# The channel-layer message type that carries a job or batch event; consumers handle it in `job_event`.
LAYER_JOB_EVENT = "job.event"


def job_group(job_id: UUID | str) -> str:
    """Every socket watching one job."""
    return f"job.{job_id}"


def batch_group(batch_id: UUID | str) -> str:
    """Every socket watching one batch."""
    return f"batch.{batch_id}"


def user_group(user_id: int) -> str:
    """Every `/ws/events/` socket of one user (the live feed of their jobs and batches)."""
    return f"user.{user_id}"
