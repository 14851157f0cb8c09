"""Runs one job of any kind: lease, start, body, outputs, exactly one terminal state and event.

Idempotent on the job id: a redelivered job is redone from scratch, and a second delivery while a
live run holds the job's lease does nothing (docs/design.md, "Guarantees").
"""
import json
import logging
from typing import Any
from uuid import UUID

from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from basic.core import metrics
from basic.core.outside_text import storable
from basic.jobs import events, files, transitions
from basic.jobs.context import JobCancelled, JobContext, JobFailed
from basic.jobs.leases import JobLease, LeaseLost
from basic.jobs.models import Job
from basic.jobs.registry import JobKind, get_kind

logger = logging.getLogger(__name__)

UNEXPECTED_ERROR = "The job stopped on an unexpected error. It has been logged; try again, or report the job id."
NOT_SAVED = ("The job finished but its result could not be saved. It has been logged; try again, "
             "or report the job id.")


def run_job(job_id: UUID | str) -> None:
    job = Job.objects.filter(id=job_id).first()
    if job is None or job.is_terminal:
        return
    kind = get_kind(job.kind)
    if kind is None:
        transitions.fail(job, f"This server no longer runs jobs of kind {job.kind!r}.")
        return
    lease = JobLease(job.id)
    if not lease.acquire():  # taking the lease also clears the job's queue marker
        logger.info("job %s is already running elsewhere; dropping this delivery", job.id)
        return
    try:
        _run(job, kind, lease)
    except LeaseLost:
        logger.warning("job %s was taken over by another run; this one stops", job.id)
    finally:
        lease.release()


def _start(job: Job) -> bool:
    """Mark the job running, unless it was cancelled (or ended) since this run loaded it."""
    restarted = job.status == Job.Status.RUNNING
    job.status, job.started, job.progress = Job.Status.RUNNING, timezone.now(), 0
    job.message = "Restarted after its worker was lost" if restarted else "Starting"
    started = Job.objects.filter(id=job.id, status__in=transitions.ACTIVE, cancel_requested=False).update(
        status=job.status, started=job.started, heartbeat=job.started, progress=0, message=job.message
    )
    if started:
        metrics.job_started(job.kind)
        logger.info("job started", extra={"job": str(job.id), "kind": job.kind, "owner": job.owner_id,
                                          "restarted": restarted})
    return bool(started)


def _run(job: Job, kind: JobKind, lease: JobLease) -> None:
    if job.cancel_requested:
        transitions.cancel(job)
        return
    if not _start(job):
        return
    transitions.push(job, events.JOB_STARTED)
    files.remove_temp_files(job.id)
    ctx = JobContext(job, lease)
    try:
        result = _json_safe(kind.run(ctx))
    except JobCancelled:
        ctx.discard_outputs()
        transitions.cancel(job)
        return
    except LeaseLost:
        ctx.discard_outputs()
        raise
    except JobFailed as exc:
        ctx.discard_outputs()
        transitions.fail(job, str(exc) or "The job failed.")
        return
    except Exception:
        logger.exception("job %s (%s) failed", job.id, job.kind)
        ctx.discard_outputs()
        transitions.fail(job, UNEXPECTED_ERROR)
        return
    lease.renew()
    try:
        output_name = ctx.commit_outputs()
        won = transitions.finish(job, Job.Status.DONE, progress=100, message=ctx.summary, result=result,
                                 output_name=output_name,
                                 output_bytes=files.stored_bytes(job.id))  # toward the owner's quota
    except Exception:
        _not_saved(job, ctx)
        return
    if not won:
        job.refresh_from_db(fields=["status"])
        if job.status == Job.Status.CANCELLED:  # cancelled during the last step: no outputs
            ctx.discard_outputs(committed=True)


def _not_saved(job: Job, ctx: JobContext) -> None:
    """The body succeeded but its end could not be recorded (the database refused the result, the
    outputs could not be moved into place...). End it failed, so it is not left running for the
    recovery to run again and again, and can be deleted. A database that is down makes this
    fail too: the job then stays active and is recovered once it is back, as it should."""
    logger.exception("job %s (%s): saving its end failed", job.id, job.kind)
    if transitions.fail(job, NOT_SAVED):
        ctx.discard_outputs(committed=True)


def _json_safe(result: Any) -> dict[str, Any]:
    """The body's result as plain JSON every database stores: no NUL or lone surrogate in any
    string (outside_text.storable), whatever the kind forgot to clean."""
    if result is None:
        return {}
    if not isinstance(result, dict):
        raise TypeError(f"a job body must return a dict, not {type(result).__name__}")
    return storable(json.loads(json.dumps(result, cls=DjangoJSONEncoder)))
