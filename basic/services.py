"""Job logic shared by views, consumers and tasks: start, run, finish, cancel, and who may see what.

Status changes are conditional updates (`WHERE status IN (...)`), so however many times a task is
redelivered or a cancel races a finish, exactly one terminal state and one terminal event win.
"""
import logging
import time
from typing import Any
from uuid import UUID

from celery.exceptions import CeleryError
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db.models import QuerySet
from django.urls import reverse
from django.utils import timezone
from kombu.exceptions import KombuError, OperationalError
from redis import RedisError

from . import events
from .helpers import ProgressThrottle, push_job_event
from .job_leases import JobLease, LeaseLost, is_leased
from .models import Job
from .reports import ReportCancelled, report_path, write_students_by_age_report

logger = logging.getLogger(__name__)

ACTIVE = (Job.Status.QUEUED, Job.Status.RUNNING)
User = AbstractBaseUser | AnonymousUser


class BrokerUnavailable(Exception):
    """The job could not be queued; the job row is marked failed with this reason."""


# --- selectors -----------------------------------------------------------------------------

def jobs_visible_to(*, user: User) -> QuerySet[Job]:
    """Staff see every job; a signed-in user their own; anonymous callers none."""
    if not user.is_authenticated:
        return Job.objects.none()
    if user.is_staff:
        return Job.objects.all()
    return Job.objects.filter(owner=user)


def job_visible_to(*, user: User, job_id: UUID | str) -> Job | None:
    """The job if it exists and `user` may see it; None otherwise (the caller can't tell which)."""
    try:
        job_uuid = job_id if isinstance(job_id, UUID) else UUID(str(job_id))
    except ValueError:
        return None
    return jobs_visible_to(user=user).filter(id=job_uuid).first()


def download_url(job: Job) -> str:
    return reverse("job-download", kwargs={"pk": job.id})


# --- events --------------------------------------------------------------------------------

def _push(job: Job, event_type: str, **extra: Any) -> dict[str, Any] | None:
    return push_job_event(
        event_type,
        job_id=job.id,
        owner_id=job.owner_id,
        status=job.status,
        progress=job.progress,
        message=job.message,
        **extra,
    )


def _finish(job: Job, status: str, event_type: str, *, from_statuses: tuple = ACTIVE, **fields: Any) -> bool:
    """Move an active job to a terminal status; push the terminal event only if this call won."""
    fields = {"status": status, "finished": timezone.now(), **fields}
    won = Job.objects.filter(id=job.id, status__in=from_statuses).update(**fields) == 1
    if won:
        for name, value in fields.items():
            setattr(job, name, value)
        extra = {"result_url": download_url(job)} if status == Job.Status.DONE else {}
        if status == Job.Status.FAILED:
            extra["error"] = job.error
        _push(job, event_type, **extra)
    return won


def job_fail(job: Job, error: str) -> bool:
    return _finish(job, Job.Status.FAILED, events.JOB_FAILED, error=error[:2000], message="Failed")


# --- services ------------------------------------------------------------------------------

def _enqueue(job: Job) -> None:
    """Queue the job's task under the job's id; fails fast (well under 2 s) if the broker is down."""
    from .tasks import TASKS_BY_KIND

    TASKS_BY_KIND[job.kind].apply_async(
        args=[str(job.id)],
        task_id=str(job.id),
        retry=True,
        retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.2},
    )


def job_start(*, kind: str, owner: AbstractBaseUser) -> Job:
    """Create the job row and queue its task; BrokerUnavailable if the broker cannot be reached."""
    job = Job.objects.create(kind=kind, owner=owner, message="Queued")
    try:
        _enqueue(job)
    except (OperationalError, KombuError, CeleryError, RedisError, OSError) as exc:
        reason = f"The job queue is unreachable, so the job was not started: {exc}"
        logger.error("queueing job %s failed: %s", job.id, exc)
        job_fail(job, reason)
        raise BrokerUnavailable(reason) from exc
    return job


def recover_orphaned_jobs() -> list[UUID]:
    """Re-queue RUNNING jobs whose lease lapsed: their worker died mid-job (e.g. SIGKILL).

    The broker would redeliver them too, but only after the visibility timeout (hours, since it
    must outlast the longest job). A duplicate delivery is harmless: the lease lets one run.
    """
    stale_before = timezone.now() - timezone.timedelta(seconds=settings.JOB_LEASE_SECONDS)
    recovered = []
    for job in Job.objects.filter(status=Job.Status.RUNNING, started__lt=stale_before):
        if is_leased(job.id):
            continue
        logger.warning("job %s lost its worker; queueing it again", job.id)
        _enqueue(job)
        recovered.append(job.id)
    return recovered


def job_cancel(*, job: Job) -> bool:
    """Cancel a queued or running job. A queued one ends now; a running one at its next chunk."""
    if job.is_terminal:
        return False
    Job.objects.filter(id=job.id).update(cancel_requested=True)
    job.cancel_requested = True
    if job.status == Job.Status.QUEUED:
        _revoke_quietly(job.id)
        return _finish(job, Job.Status.CANCELLED, events.JOB_CANCELLED,
                       from_statuses=(Job.Status.QUEUED,), message="Cancelled")
    return True


def _revoke_quietly(job_id: UUID) -> None:
    """Tell workers to drop the queued task. Only a shortcut: the task checks the flag anyway."""
    from app.celery import app

    try:
        app.control.revoke(str(job_id))
    except (KombuError, RedisError, OSError) as exc:
        logger.warning("revoke of job %s not broadcast: %s", job_id, exc)


def _cancel_requested(job_id: UUID) -> bool:
    return Job.objects.filter(id=job_id, cancel_requested=True).exists()


def run_students_by_age_job(*, job_id: UUID | str) -> None:
    """The report task's body. Idempotent on the job id: a redelivered job is redone from scratch,
    and a second delivery while a live run holds the job's lease does nothing."""
    job = Job.objects.filter(id=job_id).first()
    if job is None or job.is_terminal:
        return
    lease = JobLease(job.id)
    if not lease.acquire():
        logger.info("job %s is already running elsewhere; dropping this delivery", job.id)
        return
    try:
        _run_students_by_age(job, lease)
    except LeaseLost:
        logger.warning("job %s was taken over by another run; this one stops", job.id)
    finally:
        lease.release()


def _run_students_by_age(job: Job, lease: JobLease) -> None:
    if job.cancel_requested:
        _finish(job, Job.Status.CANCELLED, events.JOB_CANCELLED, message="Cancelled")
        return
    restarted = job.status == Job.Status.RUNNING
    job.status, job.started, job.progress = Job.Status.RUNNING, timezone.now(), 0
    job.message = "Restarted after its worker was lost" if restarted else "Starting"
    started = Job.objects.filter(id=job.id, status__in=ACTIVE, cancel_requested=False).update(
        status=job.status, started=job.started, progress=0, message=job.message
    )
    if not started:  # cancelled (or otherwise ended) since this run loaded it
        return
    _push(job, events.JOB_STARTED)
    throttle = ProgressThrottle()

    def on_progress(done: int, total: int) -> None:
        if settings.REPORT_CHUNK_DELAY:
            time.sleep(settings.REPORT_CHUNK_DELAY)
        lease.renew()
        if _cancel_requested(job.id):
            raise ReportCancelled
        percent = min(99, done * 100 // total) if total else 99
        if throttle.should_send(percent):
            job.progress, job.message = percent, f"Wrote {done} of {total} students"
            Job.objects.filter(id=job.id, status=Job.Status.RUNNING).update(
                progress=job.progress, message=job.message
            )
            _push(job, events.JOB_PROGRESS)

    try:
        path, count = write_students_by_age_report(job.id, on_progress)
    except ReportCancelled:
        report_path(job.id).unlink(missing_ok=True)
        _finish(job, Job.Status.CANCELLED, events.JOB_CANCELLED, message="Cancelled")
        return
    except LeaseLost:
        raise
    except Exception as exc:
        logger.exception("job %s failed", job.id)
        job_fail(job, f"{type(exc).__name__}: {exc}")
        raise
    lease.renew()
    if not _finish(job, Job.Status.DONE, events.JOB_DONE, progress=100,
                   message=f"Report ready: {count} students", report_name=path.name):
        job.refresh_from_db(fields=["status"])
        if job.status == Job.Status.CANCELLED:  # cancelled during the last chunk: no report
            path.unlink(missing_ok=True)
