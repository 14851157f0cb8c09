"""The one place for job event names, group names, Redis keys and socket close codes."""
from uuid import UUID

JOB_SNAPSHOT = "job.snapshot"
JOB_STARTED = "job.started"
JOB_PROGRESS = "job.progress"
JOB_DONE = "job.done"
JOB_FAILED = "job.failed"
JOB_CANCELLED = "job.cancelled"
TERMINAL_EVENTS = frozenset({JOB_DONE, JOB_FAILED, JOB_CANCELLED})
JOB_EVENT_TYPES = frozenset({JOB_STARTED, JOB_PROGRESS}) | TERMINAL_EVENTS

# The channel-layer message type that carries a job event; consumers handle it in `job_event`.
LAYER_JOB_EVENT = "job.event"
LAYER_CHAT_MESSAGE = "chat.message"

# Application close codes (4000-4999 are ours, by RFC 6455).
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_REQUESTS = 4429


def job_group(job_id: UUID | str) -> str:
    return f"job.{job_id}"


def user_group(user_id: int) -> str:
    return f"user.{user_id}"


def chat_group(room: str) -> str:
    return f"chat.{room}"


def stream_key(job_id: UUID | str) -> str:
    return f"jobs:{job_id}:events"


def seq_key(job_id: UUID | str) -> str:
    return f"jobs:{job_id}:seq"
