"""Job logic shared by views, consumers, commands, the admin and beat: start, cancel, delete, recover,
and who may see what. Running a job is the lifecycle's (basic/jobs/runner.py)."""
import json
import logging
import uuid
from functools import partial
from typing import Any
from uuid import UUID

from celery import current_app
from celery.exceptions import CeleryError
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone
from kombu.exceptions import KombuError, OperationalError
from redis import RedisError

from basic.jobs import files, queue_markers, transitions
from basic.jobs.leases import is_leased
from basic.jobs.models import Job
from basic.jobs.registry import JobKind
from basic.jobs.retention import QuotaExceeded as QuotaExceeded  # raised by job_start; views answer 409
from basic.jobs.retention import check_quota, delete_job

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "basic.run_job"  # basic/jobs/tasks.py; sent by name so imports flow one way
User = AbstractBaseUser | AnonymousUser
download_url = transitions.download_url


class BrokerUnavailable(Exception):
    """The job could not be queued; the job row is marked failed with this reason."""


BROKER_DOWN = "The job queue is unreachable, so the job was not started. Try again in a minute."


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


# --- services ------------------------------------------------------------------------------

def _enqueue(job: Job) -> None:
    """Queue the run of the job under the job's id; fails fast (well under 2 s) if the broker is down."""
    queue_markers.mark_queued(job.id)
    current_app.send_task(
        RUN_JOB_TASK,
        args=[str(job.id)],
        task_id=str(job.id),
        retry=True,
        retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.2},
        # No result is kept (CELERY_TASK_IGNORE_RESULT). Saying so here, and not building an
        # AsyncResult, spares Celery making its result backend object: it keeps one per thread, and
        # under Daphne each request has a thread of its own (issue 19: 5% of a start's CPU).
        ignore_result=True,
        result_cls=_Sent,
    )


class _Sent:
    """What `send_task` returns here instead of an AsyncResult (nothing reads it)."""

    def __init__(self, task_id: str) -> None:
        self.id = task_id


def job_start(*, kind: JobKind, owner: AbstractBaseUser, data: dict[str, Any] | None = None) -> Job:
    """Create the job row from validated parameters and queue it once the row is committed.

    QuotaExceeded, before anything is stored, if the owner's jobs keep JOB_OUTPUT_QUOTA_MB already.

    Commit, then publish: the task is sent by `transaction.on_commit`, so a worker never looks for a
    row that is not committed yet.
    - Called outside any transaction (views, beat's `run_schedule`: autocommit), the row is committed
      by `create()` and on_commit sends at once: a broker that cannot be reached marks the job failed
      and raises BrokerUnavailable from here (the view's 503), as before.
    - Called inside the caller's `transaction.atomic()`, the task is sent when that block commits;
      a rollback sends nothing (and leaves no row). A broker that cannot be reached at that commit
      marks the job failed all the same, never leaving it queued, and, as the hook is not robust,
      BrokerUnavailable is raised out of the `atomic()` block, after the commit, so the caller learns
      the job was not queued (hooks registered after this one are then skipped, as Django does).
    """
    check_quota(owner)
    job_id = uuid.uuid4()
    data = data or {}
    params = kind.prepare(data, files.input_dir(job_id)) if kind.prepare else data
    params = json.loads(json.dumps(params, cls=DjangoJSONEncoder))
    stored = files.stored_bytes(job_id) if kind.prepare else 0  # an upload counts toward the quota
    job = Job.objects.create(id=job_id, kind=kind.name, owner=owner, params=params, message="Queued",
                             output_bytes=stored)
    transaction.on_commit(partial(_enqueue_or_fail, job), robust=False)
    return job


def _enqueue_or_fail(job: Job) -> None:
    """Queue a committed job; if the broker cannot be reached, end it failed saying so and raise
    BrokerUnavailable."""
    try:
        _enqueue(job)
    except (OperationalError, KombuError, CeleryError, RedisError, OSError) as exc:
        logger.error("queueing job %s failed: %s", job.id, exc)
        transitions.fail(job, BROKER_DOWN)
        raise BrokerUnavailable(BROKER_DOWN) from exc


def job_refused(*, kind_name: str, owner: AbstractBaseUser, params: dict[str, Any], reason: str) -> Job:
    """Record a job that cannot run (e.g. a schedule whose kind or parameters are no longer valid) as
    a failed job saying why, so its owner sees it like any other job. Nothing is queued."""
    job = Job.objects.create(kind=kind_name, owner=owner, params=params, message="Queued")
    transitions.fail(job, reason)
    return job


def job_delete(*, job: Job) -> bool:
    """Delete a finished job with its files and events (basic/jobs/retention.py); False while it is
    queued or running, or if it is already gone."""
    return delete_job(job)


def recover_lost_jobs() -> list[UUID]:
    """Send again the jobs whose run was lost; every worker calls this every few seconds.

    - RUNNING jobs whose lease lapsed and whose row stopped moving: their worker died mid-job
      (e.g. SIGKILL). The broker would redeliver them too, but only after the visibility timeout
      (hours, since it must outlast the longest job).
    - QUEUED jobs without a queue marker: their message was lost with a Redis that came back
      empty, or a worker reserved it and died before starting it (basic/jobs/queue_markers.py).

    A duplicate delivery is harmless: the job's lease lets one run at a time.
    """
    now = timezone.now()
    stale_before = now - timezone.timedelta(seconds=settings.JOB_LEASE_SECONDS)
    running = Job.objects.filter(Q(heartbeat__isnull=True) | Q(heartbeat__lt=stale_before),
                                 status=Job.Status.RUNNING, started__lt=stale_before)
    lost = [job for job in running[:1000] if not is_leased(job.id)]
    waiting_since = now - timezone.timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS)
    queued = list(Job.objects.filter(status=Job.Status.QUEUED, cancel_requested=False,
                                     created__lt=waiting_since).only("id", "status")[:1000])
    unmarked = set(queue_markers.unmarked([job.id for job in queued]))
    lost += [job for job in queued if job.id in unmarked]
    for job in lost:
        logger.warning("job %s (%s) lost its run; queueing it again", job.id, job.status)
        _enqueue(job)
    return [job.id for job in lost]


def job_cancel(*, job: Job) -> bool:
    """Cancel a queued or running job. A queued one ends now; a running one at its next step."""
    if job.is_terminal:
        return False
    Job.objects.filter(id=job.id).update(cancel_requested=True)
    job.cancel_requested = True
    if job.status == Job.Status.QUEUED:
        _revoke_quietly(job.id)
        queue_markers.clear(job.id)
        return transitions.cancel(job, from_statuses=(Job.Status.QUEUED,))
    return True


def _revoke_quietly(job_id: UUID) -> None:
    """Tell workers to drop the queued task. Only a shortcut: the run checks the flag anyway."""
    try:
        current_app.control.revoke(str(job_id))
    except (KombuError, RedisError, OSError) as exc:
        logger.warning("revoke of job %s not broadcast: %s", job_id, exc)
