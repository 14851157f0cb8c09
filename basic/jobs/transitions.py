"""State changes of a job row, each with its event.

Status changes are conditional updates (`WHERE status IN (...)`), so however many times a task is
redelivered or a cancel races a finish, exactly one terminal state and one terminal event win.
"""
import functools
import logging
from contextlib import nullcontext
from typing import Any
from uuid import UUID

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest
from django.utils import timezone
from redis import RedisError

from basic.core import metrics
from basic.core.outside_text import outside_text
from basic.core.prepared_query import PreparedUpdate
from basic.core.reverse_by_id import reverse_by_id
from basic.jobs import batch_events, events, queue_markers
from basic.jobs.models import Job
from basic.jobs.publish import push_job_event

logger = logging.getLogger(__name__)

ACTIVE = Job.ACTIVE
MESSAGE_MAX, ERROR_MAX = 200, 2000  # Job.message is a CharField(200); Job.error a TextField
OUTCOME_EVENTS = {
    Job.Status.DONE: events.JOB_DONE,
    Job.Status.FAILED: events.JOB_FAILED,
    Job.Status.CANCELLED: events.JOB_CANCELLED,
}


def download_url(job: Job) -> str:
    return reverse_by_id("job-download", job.id)


def push(job: Job, event_type: str, **extra: Any) -> dict[str, Any] | None:
    """Store and broadcast one event of `job`; remember its seq on the object (see `last_seq`).

    Every lifecycle event goes through here and is checked against its type's schema
    (basic/jobs/event_schemas.py): a wrong shape raises EventShapeError before anything is sent.
    A batch member's event then updates its batch (basic/jobs/batch_events.py), sent or not: the
    row changed either way."""
    event = push_job_event(
        event_type,
        job_id=job.id,
        owner_id=job.owner_id,
        status=job.status,
        progress=job.progress,
        message=job.message,
        floor=job.last_seq,
        check=True,
        kind=job.kind,
        **extra,
    )
    if event is not None:
        job.last_seq = max(job.last_seq, event["seq"])
    if job.batch_id is not None:
        batch_events.member_changed(job, event_type)
    return event


def finish(job: Job, status: str, *, from_statuses: tuple = ACTIVE, forget_marker: bool = True,
           **fields: Any) -> bool:
    """Move an active job to a terminal status; push the terminal event only if this call won.

    Its message and error are cleaned (outside_text): either may quote text from outside, and a
    character the database refuses there would leave the job active for the recovery to re-run.
    Inside a transaction the update has its own savepoint, so a refused save leaves the caller's
    transaction usable (the runner then ends the job failed). `forget_marker=False`: the caller
    drops the job's queue marker itself (the runner, with its lease's release)."""
    # The terminal event's seq is normally the next one: written with the status, so the row needs
    # no second update after the push (it gets one only if the event store gave a higher seq).
    fields = {"status": status, "finished": timezone.now(), **fields}
    expected_seq = job.last_seq + 1
    if "message" in fields:
        fields["message"] = outside_text(fields["message"], limit=MESSAGE_MAX)
    if "error" in fields:
        fields["error"] = outside_text(fields["error"], limit=ERROR_MAX, multiline=True)
    with transaction.atomic() if transaction.get_connection().in_atomic_block else nullcontext():
        won = _finish_update(tuple(from_statuses)).run(job.id, **fields, last_seq=expected_seq) == 1
    if not won:
        return False
    if forget_marker:
        _forget_queue_marker(job)
    for name, value in fields.items():
        setattr(job, name, value)
    extra: dict[str, Any] = {}
    if status == Job.Status.DONE:
        extra = {"result_url": download_url(job), "result": job.result}
    elif status == Job.Status.FAILED:
        extra = {"error": job.error}
    if push(job, OUTCOME_EVENTS[status], **extra) is not None and job.last_seq > expected_seq:
        Job.objects.filter(id=job.id, last_seq__lt=job.last_seq).update(last_seq=job.last_seq)
    metrics.job_finished(job.kind, status, _duration(job))
    logger.info("job %s", status, extra={"job": str(job.id), "kind": job.kind, "owner": job.owner_id,
                                         "outcome": status, "duration_s": _duration(job)})
    return True


@functools.cache
def _finish_update(from_statuses: tuple[str, ...]) -> PreparedUpdate:
    """The conditional update that ends a job, compiled once (every job ends through it): the
    `last_seq` it sets is the larger of the row's and the terminal event's."""
    return PreparedUpdate(lambda job_id: Job.objects.filter(id=job_id, status__in=from_statuses), (UUID,),
                          computed={"last_seq": lambda seq: Greatest(F("last_seq"), Value(seq))})


def _forget_queue_marker(job: Job) -> None:
    """An ended job waits for no message: drop its queue marker now rather than at its expiry (the
    broker's visibility timeout, hours). One can be left behind when a message sent during a
    Sentinel failover went to the old master and was lost while the run it duplicated ended the
    job (the chaos soak found one). Best effort: the marker expires anyway."""
    try:
        queue_markers.clear(job.id)
    except RedisError as exc:
        logger.warning("job %s: could not drop its queue marker: %s", job.id, exc)


def retry_later(job: Job, *, error: str, delay: float, max_attempts: int) -> bool:
    """Put a running job that failed on a transient error back in the queue for its next attempt
    after `delay` seconds, saying why and when (job.retrying). False if it is no longer running
    (cancelled meanwhile): then nothing is pushed and it must not be sent again."""
    error = outside_text(error, limit=ERROR_MAX, multiline=True)
    retry_at = timezone.now() + timezone.timedelta(seconds=delay)
    attempt = job.attempt + 1
    message = outside_text(f"Retrying in {delay:.0f} s (attempt {attempt} of {max_attempts}): {error}",
                           limit=MESSAGE_MAX)
    moved = Job.objects.filter(id=job.id, status=Job.Status.RUNNING, cancel_requested=False).update(
        status=Job.Status.QUEUED, attempt=attempt, not_before=retry_at, message=message, progress=0)
    if not moved:
        return False
    job.status, job.attempt, job.not_before, job.message, job.progress = (
        Job.Status.QUEUED, attempt, retry_at, message, 0)
    push(job, events.JOB_RETRYING, attempt=attempt, max_attempts=max_attempts, error=error,
         retry_at=retry_at.isoformat(timespec="milliseconds"))
    Job.objects.filter(id=job.id, last_seq__lt=job.last_seq).update(last_seq=job.last_seq)
    metrics.job_retried(job.kind)
    logger.info("job retrying", extra={"job": str(job.id), "kind": job.kind, "attempt": attempt,
                                       "delay_s": round(delay, 3)})
    return True


def wait_for_slot(job: Job, message: str) -> bool:
    """Say why a job waits for a slot of its kind's concurrency caps (basic/jobs/slots.py): its
    message, and one job.progress event, only when the message changes. A run that was lost and
    must wait for a slot again goes back to `queued` (it is not running). False if it is no longer
    waiting or running (cancelled or ended meanwhile): then it must not be sent again."""
    message = outside_text(message, limit=MESSAGE_MAX)
    if job.message == message and job.status == Job.Status.QUEUED:
        return Job.objects.filter(id=job.id, status=Job.Status.QUEUED, cancel_requested=False).exists()
    moved = Job.objects.filter(id=job.id, status__in=(Job.Status.QUEUED, Job.Status.RUNNING),
                               cancel_requested=False).update(status=Job.Status.QUEUED, message=message, progress=0)
    if not moved:
        return False
    job.status, job.message, job.progress = Job.Status.QUEUED, message, 0
    push(job, events.JOB_PROGRESS)
    Job.objects.filter(id=job.id, last_seq__lt=job.last_seq).update(last_seq=job.last_seq)
    return True


def fail(job: Job, reason: str) -> bool:
    return finish(job, Job.Status.FAILED, error=reason, message="Failed")


def cancel(job: Job, *, from_statuses: tuple = ACTIVE) -> bool:
    return finish(job, Job.Status.CANCELLED, from_statuses=from_statuses, message="Cancelled")


def _duration(job: Job) -> float | None:
    if job.started and job.finished:
        return round((job.finished - job.started).total_seconds(), 3)
    return None
