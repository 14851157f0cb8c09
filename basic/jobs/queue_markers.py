"""A marker per queued job, beside the broker's message, so the recovery sweep can tell a job
whose message is still waiting from one whose message is gone: lost with a Redis that came back
empty or failed over to a replica that had not got it yet (docs/design.md trap 7), or reserved by a
worker that died before it started the job.

queued (written with the message) -> reserved by worker W (W received it) -> gone (the run took the
job's lease).

When the broker is the Redis every process reads markers from (settings.QUEUE_MARKERS_WITH_MESSAGE,
the default), `queued` goes in the same Lua script as the message's LPUSH (`with_message`,
basic/core/broker_transport.py): one round trip, and a marker never exists without its message,
not even on a replica. Otherwise the send is wrapped: `sending` just before it (expires), `queued`
once the broker took it (`sending`).

Why two writes around the send: Redis replicates its writes in order, so a replica that has the
`queued` marker has the message sent before it; a marker written before the send could survive a
failover without its message and hide the job for the broker's visibility timeout (hours). If the
sender dies or the send fails, `sending` expires and the sweep sends the job again.

A QUEUED or due SCHEDULED job without a marker, or reserved by a worker that is no longer alive
(basic/jobs/worker_liveness.py), is sent again; the job's lease keeps a duplicate from running twice.
"""
import logging
import math
import time
from collections.abc import Iterator
from contextlib import contextmanager
from uuid import UUID

from django.conf import settings
from redis import RedisError

from basic.core.broker_transport import WITH_MESSAGE
from basic.core.keys import queued_key, recheck_key, redis_server_key
from basic.core.redis_clients import run_script, sync_redis
from basic.jobs import worker_liveness

SENDING = "sending"
QUEUED = "queued"
RESERVED = "reserved"  # "reserved:<worker token>"

logger = logging.getLogger(__name__)

# `queued` only over our own `sending`: a worker that already received the message (reserved) or
# started the job (the lease script deleted the marker) must not be overwritten.
_CONFIRM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
  return 1
end
return 0
"""


def with_message(job_id: UUID | str) -> dict[str, list]:
    """The headers that have the broker's transport write the job's `queued` marker with its
    message (only when settings.QUEUE_MARKERS_WITH_MESSAGE). It lasts as long as the broker would
    keep the message waiting unacknowledged."""
    return {WITH_MESSAGE: [queued_key(job_id), QUEUED, settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]]}


@contextmanager
def sending(job_id: UUID | str) -> Iterator[None]:
    """Wrap the send of a job's message: marked `sending` before, `queued` after (if the body
    raises, `sending` is left to expire)."""
    key = queued_key(job_id)
    sync_redis().set(key, SENDING, ex=max(1, settings.JOB_REQUEUE_AFTER_SECONDS))
    yield
    try:  # outlives any wait in the queue that the broker itself would honour
        run_script(_CONFIRM, keys=[key],
                   args=[SENDING, QUEUED, settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]])
    except RedisError as exc:  # the message is sent: `sending` expires and the sweep sends it again
        logger.warning("job %s: sent, but its queue marker was not confirmed: %s", job_id, exc)


def mark_reserved(job_id: UUID | str, wait: float = 0.0) -> None:
    """This worker process holds the message; if it dies before starting the job, the sweep sees
    it is gone (and the marker expires anyway). `wait`: the seconds the worker holds it before its
    time comes (a retry's countdown, a delayed start)."""
    sync_redis().set(queued_key(job_id), f"{RESERVED}:{worker_liveness.token()}",
                     ex=settings.JOB_RESERVED_SECONDS + math.ceil(max(0.0, wait)))


def clear(job_id: UUID | str) -> None:
    sync_redis().delete(queued_key(job_id))


def unmarked(job_ids: list[UUID]) -> list[UUID]:
    """The jobs among `job_ids` whose message may be lost: no marker, or reserved by a worker that
    is no longer alive."""
    if not job_ids:
        return []
    pipe = sync_redis().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.get(queued_key(job_id))
    markers = dict(zip(job_ids, (_text(value) for value in pipe.execute()), strict=True))
    holders = {_holder(marker) for marker in markers.values()} - {None}
    living = worker_liveness.alive(holders)  # type: ignore[arg-type]
    return [job_id for job_id, marker in markers.items()
            if marker is None or (_holder(marker) is not None and _holder(marker) not in living)]


def server_replaced() -> bool:
    """Whether the Redis server changed since a sweep last asked (a Sentinel failover, or a restart
    that kept its data): True for the one caller that sees the change first.

    Then a marker can't be trusted: a worker whose BRPOP took a message on the old server may never
    have got it (the reply died with the server), while the `queued` marker written before was
    replicated. The sweep then sends every queued job again (the soak found such a job waiting
    for the visibility timeout); the lease makes the duplicates harmless."""
    client = sync_redis()
    run_id = client.info("server")["run_id"]
    seen = _text(client.getset(redis_server_key(), run_id))
    replaced = seen is not None and seen != run_id
    if replaced:
        client.set(recheck_key(), time.time() + settings.JOB_REQUEUE_AFTER_SECONDS)
    return replaced


# The one caller that finds the second look due takes it (deletes the key).
_TAKE_IF_DUE = """
local due = redis.call('GET', KEYS[1])
if due and tonumber(due) <= tonumber(ARGV[1]) then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


def recheck_due() -> bool:
    """Whether the second look after a server change is due: True for one caller,
    JOB_REQUEUE_AFTER_SECONDS after `server_replaced` saw the change.

    Why a second look: the broker's connection is not the markers' connection. For a while after
    the sweep saw the new server, a sender's broker connection can still reach the old one, so a
    message can go there (and be lost when it is demoted) while its `queued` marker goes to the
    new server, where the first look already passed. The chaos soak found such a marker."""
    return bool(run_script(_TAKE_IF_DUE, keys=[recheck_key()], args=[time.time()]))


def _text(value: bytes | str | None) -> str | None:
    return value.decode() if isinstance(value, bytes) else value


def _holder(marker: str | None) -> str | None:
    """The worker token of a `reserved:<token>` marker (None for any other)."""
    if marker is None or not marker.startswith(RESERVED + ":"):
        return None
    return marker.split(":", 1)[1]
