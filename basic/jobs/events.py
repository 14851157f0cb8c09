"""The one place for job event types and the channel-layer groups job events are published to."""
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

# The channel-layer message type that carries a job event; consumers handle it in `job_event`.
LAYER_JOB_EVENT = "job.event"


def job_group(job_id: UUID | str) -> str:
    """Every socket watching one job."""
    return f"job.{job_id}"


def user_group(user_id: int) -> str:
    """Every `/ws/events/` socket of one user (the live feed of their jobs)."""
    return f"user.{user_id}"
