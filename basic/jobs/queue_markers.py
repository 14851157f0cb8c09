"""A marker per queued job, beside the broker's message, so the recovery sweep can tell a job
whose message is still waiting from one whose message is gone: lost with a Redis that came back
empty (docs/design.md trap 7), or reserved by a worker that died before it started the job.

queued (set when the job is sent) -> reserved (a worker received it; expires) -> gone (it started).
A QUEUED job without a marker is sent again; the job's lease keeps a duplicate from running twice.
"""
import math
from uuid import UUID

from django.conf import settings

from basic.core.keys import queued_key
from basic.core.redis_clients import sync_redis

QUEUED = "queued"
RESERVED = "reserved"


def mark_queued(job_id: UUID | str) -> None:
    # Outlives any wait in the queue that the broker itself would honour.
    sync_redis().set(queued_key(job_id), QUEUED, ex=settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"])


def mark_reserved(job_id: UUID | str, wait: float = 0.0) -> None:
    """A worker holds the message; if it dies before starting the job, the marker expires. `wait`:
    the seconds the worker holds it before its time comes (a retry's countdown)."""
    sync_redis().set(queued_key(job_id), RESERVED, ex=settings.JOB_RESERVED_SECONDS + math.ceil(max(0.0, wait)))


def clear(job_id: UUID | str) -> None:
    sync_redis().delete(queued_key(job_id))


def unmarked(job_ids: list[UUID]) -> list[UUID]:
    """The jobs among `job_ids` that have no marker (their message may be lost)."""
    if not job_ids:
        return []
    pipe = sync_redis().pipeline(transaction=False)
    for job_id in job_ids:
        pipe.exists(queued_key(job_id))
    return [job_id for job_id, exists in zip(job_ids, pipe.execute(), strict=True) if not exists]
