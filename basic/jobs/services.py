"""Job logic shared by views, consumers, commands, the admin and beat: start, cancel, delete, recover,
and who may see what. Running a job is the lifecycle's (basic/jobs/runner.py)."""
import json
import logging
import uuid
from datetime import datetime
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

from basic.core.prepared_query import PreparedInsert
from basic.jobs import files, queue_markers, slots, transitions
from basic.jobs.leases import is_leased
from basic.jobs.models import Batch, Job
from basic.jobs.registry import CELERY_QUEUES, IO, PRIORITIES, JobKind, Policy, get_kind, policy
from basic.jobs.retention import QuotaExceeded as QuotaExceeded  # raised by job_start; views answer 409
from basic.jobs.retention import check_quota, delete_job
from basic.jobs.time_limits import ran_past, timed_out_message

logger = logging.getLogger(__name__)

RUN_JOB_TASK = "basic.run_job"  # basic/jobs/tasks.py; sent by name so imports flow one way
User = AbstractBaseUser | AnonymousUser
download_url = transitions.download_url


class BrokerUnavailable(Exception):
    """The job could not be queued; the job row is marked failed with this reason."""


BROKER_DOWN = "The job queue is unreachable, so the job was not started. Try again in a minute."


# --- selectors -----------------------------------------------------------------------------

def owned_visible_to(rows: QuerySet, *, user: User) -> QuerySet:
    """Staff see every row; a signed-in user their own (`owner`); anonymous callers none. Jobs and
    batches are seen by the same rule."""
    if not user.is_authenticated:
        return rows.none()
    if user.is_staff:
        return rows.all()
    return rows.filter(owner=user)


def may_see_owned(user: User, owner_id: int | None) -> bool:
    """`owned_visible_to`'s rule for one row, given its owner's id: staff see it, a signed-in user
    if it is theirs, anonymous callers never. (The two must agree: tests/unit/jobs/test_visibility.py.)"""
    if not user.is_authenticated:
        return False
    return bool(user.is_staff) or (owner_id is not None and owner_id == user.pk)


def by_any_uuid(rows: QuerySet, some_id: UUID | str) -> Any:
    """The row whose UUID `some_id` spells (any spelling), or None, as for one that does not exist."""
    try:
        row_uuid = some_id if isinstance(some_id, UUID) else UUID(str(some_id))
    except ValueError:
        return None
    return rows.filter(id=row_uuid).first()


def jobs_visible_to(*, user: User) -> QuerySet[Job]:
    """Staff see every job; a signed-in user their own; anonymous callers none."""
    return owned_visible_to(Job.objects, user=user)


def job_visible_to(*, user: User, job_id: UUID | str) -> Job | None:
    """The job if it exists and `user` may see it; None otherwise (the caller can't tell which)."""
    return by_any_uuid(jobs_visible_to(user=user), job_id)


# --- services ------------------------------------------------------------------------------

def enqueue(job: Job, countdown: float | None = None) -> None:
    """Queue the run of the job under the job's id, on its kind's queue, `countdown` seconds from
    now if given (a retry's wait); fails fast (well under 2 s) if the broker is down. Celery's time
    limits go with it: on the prefork pool the soft one stops the body, the hard one
    (JOB_TIME_LIMIT_GRACE_SECONDS later) kills a child that ignored it; on the gevent pool the run
    enforces its own (basic/jobs/time_limits.py)."""
    kind = get_kind(job.kind)
    run_policy = policy(kind) if kind else None  # an unknown kind is failed by the run, on any queue
    if settings.QUEUE_MARKERS_WITH_MESSAGE:
        _send(job, run_policy, countdown, headers=queue_markers.with_message(job.id))
        return
    with queue_markers.sending(job.id):
        _send(job, run_policy, countdown)


def _send(job: Job, run_policy: Policy | None, countdown: float | None, headers: dict | None = None) -> None:
    current_app.send_task(
        RUN_JOB_TASK,
        args=[str(job.id)],
        task_id=str(job.id),
        queue=run_policy.celery_queue if run_policy else CELERY_QUEUES[IO],
        soft_time_limit=run_policy.time_limit if run_policy else None,
        time_limit=run_policy.time_limit + settings.JOB_TIME_LIMIT_GRACE_SECONDS if run_policy else None,
        countdown=countdown,
        priority=celery_priority(job.priority),
        retry=True,
        retry_policy={"max_retries": 1, "interval_start": 0.1, "interval_step": 0.1, "interval_max": 0.2},
        # No result is kept (CELERY_TASK_IGNORE_RESULT). Saying so here, and not building an
        # AsyncResult, spares Celery making its result backend object: it keeps one per thread, and
        # under Daphne each request has a thread of its own (issue 19: 5% of a start's CPU).
        ignore_result=True,
        result_cls=_Sent,
        headers=headers,
        # What Celery's logs and events show of the arguments, given: else it builds them with its
        # saferepr for every message (5% of `send_task`, py-spy, issue 19).
        argsrepr=f"['{job.id}']",
        kwargsrepr="{}",
        # Nothing to declare: a message to a plain queue goes by the nameless exchange straight to
        # its list, and the workers declare the queues they read. Celery would otherwise check its
        # cache of declared queues on every send (2% of the web process's CPU per start).
        declare=[],
    )


def celery_priority(priority: int) -> int:
    """Redis serves its lowest priority number first; ours (0-9) take 9 first."""
    return max(PRIORITIES) - priority


class _Sent:
    """What `send_task` returns here instead of an AsyncResult (nothing reads it)."""

    def __init__(self, task_id: str) -> None:
        self.id = task_id


# Every job start inserts its row through here, its SQL written once (no save signals: nothing
# listens to a Job's).
INSERT_JOB = PreparedInsert(Job)


def job_start(*, kind: JobKind, owner: AbstractBaseUser, data: dict[str, Any] | None = None,
              priority: int | None = None, not_before: datetime | None = None, batch: Batch | None = None) -> Job:
    """Create the job row from validated parameters and queue it once the row is committed.

    `priority` (0-9, checked by the caller against the owner's allowance): the kind's by default.
    `not_before`: a delayed start; the job is `scheduled` until then and sent when it is due
    (at once with a countdown if that is within SEND_AHEAD_SECONDS, else by the sweep).
    `batch`: the batch it is a member of (basic/jobs/batches.py, which calls this inside its atomic()).

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
    delayed = not_before is not None and not_before > timezone.now()
    job = INSERT_JOB.insert(Job(
        id=job_id, kind=kind.name, owner=owner, params=params, output_bytes=stored, batch=batch,
        priority=policy(kind).priority if priority is None else priority,
        status=Job.Status.SCHEDULED if delayed else Job.Status.QUEUED,
        not_before=not_before if delayed else None,
        message=f"Scheduled for {not_before.isoformat(timespec='seconds')}" if delayed else "Queued"))
    if not delayed or _due_soon(job, timezone.now()):
        transaction.on_commit(partial(_enqueue_or_fail, job), robust=False)
    return job


SEND_AHEAD_SECONDS = 60.0  # a delayed job is sent with a countdown once it is due within this


def _due_soon(job: Job, now: datetime) -> bool:
    return job.not_before is None or (job.not_before - now).total_seconds() <= SEND_AHEAD_SECONDS


def _countdown(job: Job, now: datetime) -> float | None:
    if job.not_before is None or job.not_before <= now:
        return None
    return (job.not_before - now).total_seconds()


def _enqueue_or_fail(job: Job) -> None:
    """Queue a committed job; if the broker cannot be reached, end it failed saying so and raise
    BrokerUnavailable."""
    try:
        enqueue(job, countdown=_countdown(job, timezone.now()))
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
    if queue_markers.server_replaced() or queue_markers.recheck_due():
        return resend_after_server_change(now)
    stale_before = now - timezone.timedelta(seconds=settings.JOB_LEASE_SECONDS)
    running = Job.objects.filter(Q(heartbeat__isnull=True) | Q(heartbeat__lt=stale_before),
                                 status=Job.Status.RUNNING, started__lt=stale_before)
    lost = [job for job in running[:1000] if not is_leased(job.id)]
    lost = [job for job in lost if not _ended_past_time_limit(job, now)]
    waiting_since = now - timezone.timedelta(seconds=settings.JOB_REQUEUE_AFTER_SECONDS)
    # A retry waiting for its time (`not_before`) is not lost until that time has also passed.
    queued = list(Job.objects.filter(Q(not_before__isnull=True) | Q(not_before__lt=waiting_since),
                                     status=Job.Status.QUEUED, cancel_requested=False,
                                     created__lt=waiting_since).only("id", "status", "kind", "priority",
                                                                     "not_before")[:1000])
    unmarked = set(queue_markers.unmarked([job.id for job in queued]))
    lost += [job for job in queued if job.id in unmarked]
    for job in lost:
        logger.warning("job %s (%s) lost its run; queueing it again", job.id, job.status)
        enqueue(job, countdown=_countdown(job, now))
    return [job.id for job in lost] + send_due_scheduled(now)


def resend_after_server_change(now: datetime) -> list[UUID]:
    """Redis was replaced (queue_markers.server_replaced), or the second look after it is due
    (queue_markers.recheck_due): send every queued job and every delayed one due soon again,
    whatever its marker says, each with the countdown left. Running jobs are left to their leases
    as always."""
    waiting = list(Job.objects.filter(
        Q(status=Job.Status.QUEUED)
        | Q(status=Job.Status.SCHEDULED, not_before__lte=now + timezone.timedelta(seconds=SEND_AHEAD_SECONDS)),
        cancel_requested=False).only("id", "kind", "status", "priority", "not_before")[:10000])
    logger.warning("Redis was replaced (failover or restart): sending %d waiting jobs again", len(waiting))
    for job in waiting:
        enqueue(job, countdown=_countdown(job, now))
    return [job.id for job in waiting]


def send_due_scheduled(now: datetime) -> list[UUID]:
    """Send the delayed jobs due within SEND_AHEAD_SECONDS that have no message yet, each with the
    countdown to its time. Every worker's sweep does this, so a delayed job starts on time after a
    worker or a Redis restart too; a duplicate message is harmless (the job's lease)."""
    due = list(Job.objects.filter(status=Job.Status.SCHEDULED, cancel_requested=False,
                                  not_before__lte=now + timezone.timedelta(seconds=SEND_AHEAD_SECONDS))
               .only("id", "kind", "status", "priority", "not_before")[:1000])
    unmarked = set(queue_markers.unmarked([job.id for job in due]))
    sent = [job for job in due if job.id in unmarked]
    for job in sent:
        enqueue(job, countdown=_countdown(job, now))
    return [job.id for job in sent]


def _ended_past_time_limit(job: Job, now: datetime) -> bool:
    """A lost run that had passed its kind's time limit (its worker was killed at the hard limit,
    or died past it) is not run again: it ends failed as timed out, its partial outputs removed."""
    kind = get_kind(job.kind)
    limit = policy(kind).time_limit if kind else 0
    if not kind or not ran_past(job.started, limit, now):
        return False
    logger.warning("job %s (%s) was lost past its time limit of %s s; ending it", job.id, job.kind, limit)
    files.remove_temp_files(job.id)  # first: no one who sees it failed finds it half-written
    transitions.fail(job, timed_out_message(limit))
    return True


def job_cancel(*, job: Job) -> bool:
    """Cancel a scheduled, queued or running job. One not started ends now; a running one at its next step."""
    if job.is_terminal:
        return False
    Job.objects.filter(id=job.id).update(cancel_requested=True)
    job.cancel_requested = True
    if job.status in Job.WAITING:
        _revoke_quietly(job.id)
        queue_markers.clear(job.id)
        cancelled = transitions.cancel(job, from_statuses=Job.WAITING)
        kind = get_kind(job.kind)
        if cancelled and kind:  # out of its caps' lines now, not when it would have stopped asking
            slots.release(job.id, slots.caps_of(kind, job.owner_id))
        return cancelled
    return True


def _revoke_quietly(job_id: UUID) -> None:
    """Tell workers to drop the queued task. Only a shortcut: the run checks the flag anyway."""
    try:
        current_app.control.revoke(str(job_id))
    except (KombuError, RedisError, OSError) as exc:
        logger.warning("revoke of job %s not broadcast: %s", job_id, exc)
