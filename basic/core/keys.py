"""The one place for Redis key names: job and batch event streams and counters, batch aggregates,
leases, queue markers, concurrency slots, the page cache, chat history and the socket limits.

Keys that deployments sharing a Redis must not share carry REDIS_KEY_PREFIX; job keys are named by
the job's UUID, which no other deployment has.
"""
import hashlib
from uuid import UUID

from django.conf import settings


def stream_key(job_id: UUID | str) -> str:
    """A job's event history (stream, entry ids `0-<seq>`; basic/jobs/event_store.py)."""
    return f"jobs:{job_id}:events"


def seq_key(job_id: UUID | str) -> str:
    """A job's last event seq (integer)."""
    return f"jobs:{job_id}:seq"


def batch_stream_key(batch_id: UUID | str) -> str:
    """A batch's event history (stream, entry ids `0-<seq>`; basic/jobs/batches.py)."""
    return f"batches:{batch_id}:events"


def batch_seq_key(batch_id: UUID | str) -> str:
    """A batch's last event seq (integer)."""
    return f"batches:{batch_id}:seq"


def batch_members_key(batch_id: UUID | str) -> str:
    """What a batch's aggregate last heard of each member (hash: job id -> "status:percent")."""
    return f"batches:{batch_id}:members"


def batch_aggregate_key(batch_id: UUID | str) -> str:
    """The batch's last aggregate sent ("last") and whether its end was sent ("closed") (hash)."""
    return f"batches:{batch_id}:aggregate"


def lease_key(job_id: UUID | str) -> str:
    """Who runs a job now (basic/jobs/leases.py)."""
    return f"jobs:{job_id}:lease"


def queued_key(job_id: UUID | str) -> str:
    """A job whose broker message is still waiting (basic/jobs/queue_markers.py)."""
    return f"jobs:{job_id}:queued"


def redis_server_key() -> str:
    """The run id of the Redis server the recovery sweep last saw (basic/jobs/queue_markers.py)."""
    return f"{settings.REDIS_KEY_PREFIX}:redis:server"


def recheck_key() -> str:
    """When the sweep takes its second look after a Redis server change (basic/jobs/queue_markers.py)."""
    return f"{settings.REDIS_KEY_PREFIX}:redis:server:recheck"


def worker_alive_key(token: str) -> str:
    """A worker process that is alive (basic/jobs/worker_liveness.py); `token` is unique per process."""
    return f"workers:{token}:alive"


def slot_keys(kind: str, owner_id: int | str | None = None) -> tuple[str, str, str]:
    """One concurrency cap of a kind (basic/jobs/slots.py): the whole deployment's, or one owner's.
    Three sorted sets: holders (job id -> expiry), waiters (job id -> arrival) and when each waiter
    last asked (job id -> time). Namespaced by REDIS_KEY_PREFIX: kinds and user ids repeat across
    deployments sharing a Redis."""
    cap = f"{settings.REDIS_KEY_PREFIX}:slots:{kind}" + ("" if owner_id is None else f":user:{owner_id}")
    return f"{cap}:holders", f"{cap}:waiters", f"{cap}:seen"


def chat_history_key(room: str) -> str:
    """A room's recent messages (stream), so a web process whose subscriber connection dropped can
    hand its sockets what was said meanwhile (basic/realtime/chat_history.py). Namespaced by
    REDIS_KEY_PREFIX: room names repeat across deployments sharing a Redis."""
    return f"{settings.REDIS_KEY_PREFIX}:chat:{room}:history"


def page_cache_key(owner_id: int | str | None, normalised_url: str) -> str:
    """A fetched page's body and headers (basic/kinds/page_fetch.py), one entry per owner: a shared
    entry would tell user B that user A fetched the URL and when. Namespaced by REDIS_KEY_PREFIX:
    another deployment on the same Redis must not serve its pages here (they passed its
    PAGE_FETCH_ALLOWED_HOSTS, not ours), and user ids repeat across databases."""
    digest = hashlib.sha256(normalised_url.encode("utf-8", "surrogatepass")).hexdigest()
    return f"{settings.REDIS_KEY_PREFIX}:pages:{owner_id}:{digest}"


# Abuse limits shared by every web process (basic/realtime/limits.py). `who` is "user:<id>" or
# "ip:<address>". Namespaced by REDIS_KEY_PREFIX: deployments (or test stacks) sharing a Redis must not
# count each other's sockets, and user ids repeat across databases.
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


def group_channel(group: str) -> str:
    """The Redis pub/sub channel on which channels-redis's pub/sub layer carries a group's messages
    (its naming: "<prefix>__group__<group>"), for publishing to a group from a Lua script."""
    return f"{settings.CHANNEL_LAYERS['default']['CONFIG'].get('prefix', 'asgi')}__group__{group}"
