"""The one place for job event names, group names, Redis keys and socket close codes."""
import hashlib
from uuid import UUID

from django.conf import settings

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
# 1013 "Try Again Later" (RFC 6455 registry): Redis is unreachable, the client should reconnect.
CLOSE_TRY_AGAIN_LATER = 1013
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_REQUESTS = 4429
# The client stopped reading: more unsent data queued for it than WS_MAX_UNSENT_BYTES.
CLOSE_SLOW_CONSUMER = 4008


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


def chat_history_key(room: str) -> str:
    """A room's recent messages (stream), so a web process whose subscriber connection dropped can
    hand its sockets what was said meanwhile (basic/realtime/chat_history.py). Namespaced by
    REDIS_KEY_PREFIX: room names repeat across deployments sharing a Redis."""
    return f"{settings.REDIS_KEY_PREFIX}:chat:{room}:history"


def page_cache_key(normalised_url: str) -> str:
    return f"pages:{hashlib.sha256(normalised_url.encode()).hexdigest()}"


# Abuse limits shared by every web process (basic/realtime/limits.py). `who` is "user:<id>" or "ip:<address>".
# Namespaced by REDIS_KEY_PREFIX: deployments (or test stacks) sharing a Redis must not count each
# other's sockets, and user ids repeat across databases.
def chat_rate_key(who: str) -> str:
    """A chat token bucket (hash: tokens, ts) shared by all of one sender's sockets."""
    return f"{settings.REDIS_KEY_PREFIX}:limits:chat:{who}"


def socket_slots_key(who: str) -> str:
    """The open sockets of one user or anonymous address (sorted set: channel name -> expiry)."""
    return f"{settings.REDIS_KEY_PREFIX}:limits:sockets:{who}"


def login_attempts_key(kind: str, digest: str, window: int) -> str:
    """Sign-in attempts in one window, by "ip" or "user" (a Django cache key: the cache prefixes it)."""
    return f"limits:login:{kind}:{digest}:{window}"


def limit_keys_pattern() -> str:
    """Every chat bucket and socket-slot key of this deployment (for tests and operators)."""
    return f"{settings.REDIS_KEY_PREFIX}:limits:*"


def lease_key(job_id: UUID | str) -> str:
    return f"jobs:{job_id}:lease"


def queued_key(job_id: UUID | str) -> str:
    return f"jobs:{job_id}:queued"
