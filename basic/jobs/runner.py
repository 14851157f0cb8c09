"""Runs one job of any kind: lease, start, body, outputs, exactly one terminal state and event.

Idempotent on the job id: a redelivered job is redone from scratch, and a second delivery while a
live run holds the job's lease does nothing (docs/design.md, "Guarantees").
"""
import json
import logging
import random
from typing import Any
from uuid import UUID

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.utils import timezone

from basic.core import metrics
from basic.core.database_outages import is_outage
from basic.core.outside_text import storable
from basic.core.prepared_query import PreparedQuery, PreparedUpdate
from basic.jobs import events, files, progress_budget, queue_markers, services, slots, transitions
from basic.jobs.context import JobCancelled, JobContext, JobFailed, JobRetryable
from basic.jobs.leases import JobLease, LeaseLost
from basic.jobs.models import Job
from basic.jobs.registry import JobKind, Policy, get_kind, policy
from basic.jobs.time_limits import Deadline, JobTimedOut, enforced, ran_past, timed_out_message

logger = logging.getLogger(__name__)

EARLY = timezone.timedelta(seconds=1)  # a countdown's slack before a delivery counts as early
TRANSIENT_ERROR = "The run stopped on a temporary error ({name})."
UNEXPECTED_ERROR = "The job stopped on an unexpected error. It has been logged; try again, or report the job id."
SLOT_ASK_SECONDS = 1.0  # a job waiting for a slot of its kind's caps asks again after 0.5-1.5 times this
NOT_SAVED = ("The job finished but its result could not be saved. It has been logged; try again, "
             "or report the job id.")


# Every run starts by reading its job's row: compiled once, not per run (basic/core/prepared_query.py).
JOB_BY_ID = PreparedQuery(lambda job_id: Job.objects.filter(id=job_id), (UUID,))
# ...and marks it running, unless it was cancelled (or ended) meanwhile: compiled once too.
START = PreparedUpdate(lambda job_id: Job.objects.filter(id=job_id, status__in=transitions.ACTIVE,
                                                         cancel_requested=False), (UUID,))


def run_job(job_id: UUID | str) -> None:
    job = JOB_BY_ID.get(job_id)
    if job is None or job.is_terminal:
        return
    kind = get_kind(job.kind)
    if kind is None:
        transitions.fail(job, f"This server no longer runs jobs of kind {job.kind!r}.")
        return
    if job.status in Job.WAITING and job.not_before and job.not_before > timezone.now() + EARLY:
        # A delivery ahead of its time (its countdown lost): the sweep sends it again when due.
        logger.warning("job %s arrived before its time (%s); dropping this delivery", job.id, job.not_before)
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
    started = START.run(job.id, status=job.status, started=job.started, heartbeat=job.started, progress=0,
                        message=job.message)
    if started:
        metrics.job_started(job.kind)
        logger.info("job started", extra={"job": str(job.id), "kind": job.kind, "owner": job.owner_id,
                                          "restarted": restarted})
    return bool(started)


def _run(job: Job, kind: JobKind, lease: JobLease) -> None:
    if job.cancel_requested:
        transitions.cancel(job)
        return
    run_policy = policy(kind)
    limit = run_policy.time_limit
    if job.status == Job.Status.RUNNING and ran_past(job.started, limit, timezone.now()):
        # Its last run was stopped at the limit (a prefork child killed at the hard limit, whose
        # message came back): running it again would only time out again. Its partial output goes
        # first, so no one who sees it failed finds the output half-written.
        files.remove_temp_files(job.id)
        transitions.fail(job, timed_out_message(limit))
        return
    caps = slots.caps_of(kind, job.owner_id)
    if caps:
        wait = slots.acquire(job.id, job.created.timestamp(), caps, lease.seconds)
        if wait is not None:
            _wait_for_slot(job, kind, caps, wait)
            return
        lease.hold_slots(caps)
    taken_over = False
    try:
        _run_body(job, kind, lease, run_policy)
    except LeaseLost:
        taken_over = True  # the run that took the job over holds its slots now
        raise
    finally:
        if caps and not taken_over:
            slots.release(job.id, caps)


def _wait_for_slot(job: Job, kind: JobKind, caps: list[slots.Cap], wait: slots.Wait) -> None:
    """The job is over a concurrency cap: say why, and ask again in a second or so (the message
    goes back to the queue; its queue marker with it, so the recovery sweep leaves it be)."""
    if not transitions.wait_for_slot(job, wait.message(kind.label)):
        slots.release(job.id, caps)  # cancelled meanwhile: out of the line
        job.refresh_from_db(fields=["status", "cancel_requested"])
        if job.status == Job.Status.RUNNING and job.cancel_requested:
            transitions.cancel(job)
        return
    _send_again(job, SLOT_ASK_SECONDS * random.uniform(0.5, 1.5), "its next ask for a slot")


def _send_again(job: Job, countdown: float, what: str) -> None:
    """Send a queued job's task again after `countdown`. If the broker is down, drop the queue
    marker `enqueue` set first, so the recovery sweep sees the job has no message and sends it once
    it is due (the marker would otherwise hide it for the broker's visibility timeout)."""
    try:
        services.enqueue(job, countdown=countdown)
    except Exception as exc:
        logger.warning("job %s: queueing %s failed (%s); the sweep will", job.id, what, exc)
        try:
            queue_markers.clear(job.id)
        except Exception:
            logger.warning("job %s: could not clear its queue marker", job.id, exc_info=True)


def _run_body(job: Job, kind: JobKind, lease: JobLease, run_policy: Policy) -> None:
    limit = run_policy.time_limit
    if not _start(job):
        return
    transitions.push(job, events.JOB_STARTED)
    files.remove_temp_files(job.id)
    deadline = Deadline(limit)
    ctx = JobContext(job, lease, deadline)
    try:
        with enforced(deadline), progress_budget.body_running():
            result = _json_safe(kind.run(ctx))
        deadline.check()  # a body that swallowed the stop and went on has still run too long
    except JobCancelled:
        ctx.discard_outputs()
        transitions.cancel(job)
        return
    except LeaseLost:
        ctx.discard_outputs()
        raise
    except JobTimedOut as exc:
        _timed_out(job, ctx, exc)
        return
    except JobFailed as exc:
        ctx.discard_outputs()
        if deadline.passed():  # the body caught the stop and reported it as its own failure
            _timed_out(job, ctx, JobTimedOut(deadline.seconds))
            return
        reason = str(exc) or "The job failed."
        if isinstance(exc, JobRetryable) and _retry_later(job, run_policy, reason):
            return
        transitions.fail(job, reason)
        return
    except Exception as exc:
        ctx.discard_outputs()
        if deadline.passed():
            _timed_out(job, ctx, JobTimedOut(deadline.seconds))
            return
        if kind.retry_on and isinstance(exc, kind.retry_on):
            logger.warning("job %s (%s): transient %s", job.id, job.kind, type(exc).__name__, exc_info=True)
            reason = TRANSIENT_ERROR.format(name=type(exc).__name__)
            if not _retry_later(job, run_policy, reason):
                transitions.fail(job, reason)
            return
        logger.exception("job %s (%s) failed", job.id, job.kind)
        transitions.fail(job, UNEXPECTED_ERROR)
        return
    lease.renew_unless_checked_within(settings.JOB_CHECK_INTERVAL_SECONDS)
    try:
        output_name = ctx.commit_outputs()
        lease.forget_marker_on_release = True  # its release drops the queue marker (or it expires)
        won = transitions.finish(job, Job.Status.DONE, progress=100, message=ctx.summary, result=result,
                                 output_name=output_name, forget_marker=False,
                                 output_bytes=files.stored_bytes(job.id))  # toward the owner's quota
    except Exception as error:
        if is_outage(error):
            # Not a save the database refused: it was unreachable (a restart, SQLite's lock held
            # too long). The job stays running, its lease is released, and the recovery runs it
            # again once the database is back, to end done rather than failed for a blip
            # (tasks.STOPPED_BY_OUTAGE). A bad statement is not waited out: it ends the job failed.
            raise
        _not_saved(job, ctx)
        return
    if not won:
        job.refresh_from_db(fields=["status"])
        if job.status == Job.Status.CANCELLED:  # cancelled during the last step: no outputs
            ctx.discard_outputs(committed=True)


def _retry_later(job: Job, run_policy: Policy, reason: str) -> bool:
    """Queue the job's next attempt after a transient failure, if its kind allows one more: True if
    the run is over (queued again, or cancelled meanwhile), False to fail it for good."""
    if job.attempt > run_policy.retries:
        return False
    delay = run_policy.retry_delay(job.attempt, random.random())
    if not transitions.retry_later(job, error=reason, delay=delay, max_attempts=run_policy.retries + 1):
        job.refresh_from_db(fields=["status", "cancel_requested"])
        if job.status == Job.Status.RUNNING and job.cancel_requested:
            transitions.cancel(job)
        return True
    _send_again(job, delay, "its next attempt")
    return True


def _timed_out(job: Job, ctx: JobContext, exc: JobTimedOut) -> None:
    logger.warning("job %s (%s) passed its time limit of %s s", job.id, job.kind, exc.seconds)
    metrics.job_timed_out(job.kind)
    ctx.discard_outputs()
    transitions.fail(job, str(exc))


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
