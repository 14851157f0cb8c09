"""Schedules: a job of one kind, started by `celery beat` every N seconds or on a crontab.

A `Schedule` row holds who, what and the last job; its django-celery-beat `PeriodicTask` holds when
(an IntervalSchedule or a CrontabSchedule) and is what beat's DatabaseScheduler reads. The two are
only changed together, in one transaction, by the functions here (the API, the admin and tests
all go through them). Each periodic task sends one Celery task, `basic.run_schedule(id)`
(basic/jobs/tasks.py), which calls `run_schedule` below: the kind and parameters are checked again and
the job is started with `services.job_start`, exactly as a REST start would, and under the same
per-user start budget (`job_trigger`, basic/core/rate_limit.py).

A run that no worker picked up before the next one is due expires (`expire_seconds`), so workers
that were down do not come back to a pile of runs of the same schedule.
"""
import json
import logging
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from celery.schedules import crontab as celery_crontab
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.serializers.json import DjangoJSONEncoder
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone
from django_celery_beat.models import CrontabSchedule, IntervalSchedule, PeriodicTask
from rest_framework import serializers

from basic.core import rate_limit
from basic.jobs import retention, services
from basic.jobs.models import Job, Schedule
from basic.jobs.registry import JobKind, get_kind, validate_params

logger = logging.getLogger(__name__)

RUN_SCHEDULE_TASK = "basic.run_schedule"  # basic/jobs/tasks.py
CRON_FIELDS = ("minute", "hour", "day_of_month", "month_of_year", "day_of_week")
CRON_LABELS = ("minute", "hour", "day of month", "month", "day of week")
CRONTAB_EXPIRE_SECONDS = 60  # a crontab fires at most once a minute


class TooManySchedules(Exception):
    """The owner has as many schedules as `schedule_create`'s `limit` allows (the API answers 409)."""


class ScheduleInvalid(ValueError):
    """A bad schedule; `errors` maps field names to messages, as a 400 shows them."""

    def __init__(self, errors: dict[str, Any]) -> None:
        super().__init__(errors)
        self.errors = errors


# --- checks shared by the API and the admin ----------------------------------------------------

def needs_upload(kind: JobKind) -> bool:
    """Kinds whose parameters include a file can only be started by someone uploading it."""
    return any(isinstance(field, serializers.FileField) for field in kind.params().fields.values())


def check_kind(name: str) -> JobKind:
    kind = get_kind(name)
    if kind is None:
        raise ScheduleInvalid({"kind": [f"Unknown kind {name!r}."]})
    if needs_upload(kind):
        raise ScheduleInvalid({"kind": [f"Jobs of kind {name!r} need an uploaded file, so they cannot be scheduled."]})
    return kind


def check_params(kind: JobKind, params: Any, context: dict | None = None) -> dict[str, Any]:
    """The parameters as they will be stored: the caller's own (each run validates them again),
    once the kind's serializer has accepted them."""

    if not isinstance(params, dict):
        raise ScheduleInvalid({"params": ["Give the parameters as an object."]})
    try:
        validate_params(kind, params, context or {})
    except serializers.ValidationError as exc:
        raise ScheduleInvalid({"params": exc.detail}) from exc
    return json.loads(json.dumps(params, cls=DjangoJSONEncoder))


def parse_crontab(text: str) -> dict[str, str]:
    """A 5-field crontab ("*/5 * * * *": minute hour day-of-month month day-of-week) as
    CrontabSchedule fields; ValueError saying what is wrong."""
    parts = str(text).split()
    if len(parts) != 5:
        raise ValueError("Give five fields: minute hour day-of-month month day-of-week, e.g. '*/5 * * * *'.")
    spec = dict(zip(CRON_FIELDS, parts, strict=True))
    for (name, value), label in zip(spec.items(), CRON_LABELS, strict=True):
        try:
            celery_crontab(**{name: value})
        except (ValueError, TypeError, IndexError, KeyError) as exc:
            detail = str(exc) if "range" in str(exc) or "step" in str(exc) else "not a number, range, list or step"
            raise ValueError(f"The {label} field {value!r} is not valid: {detail}") from exc
    try:
        celery_crontab(**spec)
    except (ValueError, TypeError) as exc:
        raise ValueError(str(exc)) from exc
    return spec


def check_timing(every: int | None, crontab: str | None) -> None:
    if every is not None and crontab:
        message = "Give either `crontab` or `every`, not both."
        raise ScheduleInvalid({"crontab": [message], "every": [message]})
    if every is None and not crontab:
        message = "Give `crontab` (e.g. '*/5 * * * *') or `every` (seconds)."
        raise ScheduleInvalid({"crontab": [message], "every": [message]})
    if every is not None and every < settings.SCHEDULE_MIN_EVERY_SECONDS:
        raise ScheduleInvalid({"every": [f"At least {settings.SCHEDULE_MIN_EVERY_SECONDS} seconds."]})
    if crontab:
        try:
            parse_crontab(crontab)
        except ValueError as exc:
            raise ScheduleInvalid({"crontab": [str(exc)]}) from exc


# --- reading -------------------------------------------------------------------------------------

def schedules_visible_to(*, user: Any) -> QuerySet[Schedule]:
    """Staff see every schedule; a signed-in user their own."""
    if not user.is_authenticated:
        return Schedule.objects.none()
    queryset = Schedule.objects.select_related(
        "owner", "last_job", "periodic_task", "periodic_task__interval", "periodic_task__crontab")
    return queryset if user.is_staff else queryset.filter(owner=user)


def crontab_text(cron: CrontabSchedule) -> str:
    return " ".join(str(getattr(cron, name)) for name in CRON_FIELDS)


def timing(schedule: Schedule) -> tuple[str | None, int | None]:
    """(crontab, every) of the schedule, read from its periodic task."""
    task = schedule.periodic_task
    if task is None:
        return None, None
    if task.crontab_id:
        return crontab_text(task.crontab), None
    if task.interval_id:
        return None, int(task.interval.schedule.run_every.total_seconds())
    return None, None


def next_run(schedule: Schedule, now: datetime | None = None) -> datetime | None:
    """When beat will next start it (an estimate: beat checks at least every few seconds)."""
    task = schedule.periodic_task
    if task is None or not (schedule.enabled and task.enabled):
        return None
    now = now or timezone.now()
    last = task.last_run_at or task.date_changed or schedule.created
    try:
        remaining = task.schedule.remaining_estimate(last)
    except Exception:  # noqa: BLE001 - an odd schedule made in the beat admin: no estimate
        logger.warning("no next run for schedule %s", schedule.pk, exc_info=True)
        return None
    return now + max(remaining, timedelta(0))


# --- changing -------------------------------------------------------------------------------------

def _timezone() -> ZoneInfo:
    return ZoneInfo(settings.TIME_ZONE)


def _apply(task: PeriodicTask, schedule: Schedule, every: int | None, crontab: str | None) -> None:
    if every is not None:
        task.interval, _ = IntervalSchedule.objects.get_or_create(every=every, period=IntervalSchedule.SECONDS)
        task.crontab = None
        task.expire_seconds = every
    else:
        spec = parse_crontab(crontab or "")
        task.crontab = CrontabSchedule.objects.filter(**spec, timezone=_timezone()).first() or \
            CrontabSchedule.objects.create(**spec, timezone=_timezone())
        task.interval = None
        task.expire_seconds = CRONTAB_EXPIRE_SECONDS
    task.name = f"job schedule {schedule.pk}"
    task.task = RUN_SCHEDULE_TASK
    task.args = json.dumps([schedule.pk])
    task.kwargs = "{}"
    task.enabled = schedule.enabled
    task.description = (f"Starts a {schedule.kind} job for {schedule.owner.get_username()}. "
                        "Edit it as a Schedule (API or admin), which keeps this task in step.")
    task.save()


@transaction.atomic
def schedule_create(*, owner: AbstractBaseUser, kind: JobKind, params: dict[str, Any], every: int | None = None,
                    crontab: str | None = None, enabled: bool = True, limit: int | None = None) -> Schedule:
    """A new schedule and its periodic task. With `limit` (the API: SCHEDULES_MAX_PER_USER),
    TooManySchedules if the owner has that many already: counted after locking the owner's row, in
    the transaction that inserts, so parallel creates of one owner take turns and never pass it."""
    check_timing(every, crontab)
    if limit is not None:
        rate_limit.lock_user(owner)
        if Schedule.objects.filter(owner=owner).count() >= limit:
            raise TooManySchedules(f"You have {limit} schedules, the most allowed; delete one first.")
    schedule = Schedule.objects.create(owner=owner, kind=kind.name, params=params, enabled=enabled)
    task = PeriodicTask()
    _apply(task, schedule, every, crontab)
    schedule.periodic_task = task
    schedule.save(update_fields=["periodic_task"])
    logger.info("schedule created", extra={"schedule": schedule.pk, "kind": kind.name, "owner": owner.pk})
    return schedule


UNSET: Any = object()


def resolve_timing(schedule: Schedule | None, every: Any = UNSET,
                   crontab: Any = UNSET) -> tuple[int | None, str | None]:
    """The (every, crontab) a change leaves: giving one of them (not null) replaces the timing;
    what is not given is kept. `check_timing` then refuses both or neither."""
    old_crontab, old_every = timing(schedule) if schedule is not None else (None, None)
    if crontab is not UNSET:
        crontab = crontab or None  # "" is no crontab
    if every is UNSET and crontab is UNSET:
        return old_every, old_crontab
    if every is UNSET:
        return (None if crontab else old_every), crontab
    if crontab is UNSET:
        return every, (None if every is not None else old_crontab)
    return every, crontab


@transaction.atomic
def schedule_update(*, schedule: Schedule, kind: JobKind | None = None, params: dict[str, Any] | None = None,
                    every: int | None = UNSET, crontab: str | None = UNSET, enabled: bool | None = None) -> Schedule:
    """Change any of kind, params, timing (see `resolve_timing`) and enabled."""
    every, crontab = resolve_timing(schedule, every, crontab)
    check_timing(every, crontab)
    if kind is not None:
        schedule.kind = kind.name
    if params is not None:
        schedule.params = params
    if enabled is not None:
        schedule.enabled = enabled
    schedule.save(update_fields=["kind", "params", "enabled"])
    task = schedule.periodic_task or PeriodicTask()
    _apply(task, schedule, every, crontab)
    if schedule.periodic_task_id != task.pk:
        schedule.periodic_task = task
        schedule.save(update_fields=["periodic_task"])
    return schedule


@transaction.atomic
def schedule_delete(*, schedule: Schedule) -> None:
    task = schedule.periodic_task
    schedule.delete()
    if task is not None:
        task.delete()  # tells beat (PeriodicTasks.changed)


def schedule_record_run(*, schedule: Schedule, job: Job) -> None:
    """Remember the job a run of the schedule started (its `last_job`). One UPDATE of that column
    only, so a concurrent edit of the schedule (API or admin) is not overwritten."""
    Schedule.objects.filter(pk=schedule.pk).update(last_job=job)
    schedule.last_job = job


# --- running (in a worker, from beat's task) ----------------------------------------------------

# The per-user start budget a run draws on: the REST triggers' throttle scope (JOB_TRIGGER_RATE),
# through the same function (basic/core/rate_limit.py), so a user's REST starts and scheduled
# runs share one budget.
TRIGGER_SCOPE = "job_trigger"
RATE_MESSAGE_START = "Not started: you started"


def _last_run_refused_for(schedule: Schedule, message_start: str) -> bool:
    """Whether the schedule's last run is a failed job refused for the same reason."""
    last = schedule.last_job
    return last is not None and last.status == Job.Status.FAILED and last.error.startswith(message_start)


def _over_start_budget(schedule: Schedule) -> str | None:
    """Use one start of the owner's budget; the reason the run is refused if none is left."""
    try:
        decision = rate_limit.take(TRIGGER_SCOPE, schedule.owner.pk)
    except Exception:  # noqa: BLE001 - the cache (Redis) is down: so is the queue, and job_start says so
        logger.warning("schedule %s: start budget unavailable; run allowed", schedule.pk, exc_info=True)
        return None
    if decision.allowed:
        return None
    return (f"{RATE_MESSAGE_START} as many jobs as allowed ({decision.describe()}, REST starts and every "
            f"schedule's runs together), so this run of schedule {schedule.pk} was skipped. Its next runs "
            f"start again once you are under the limit.")


def run_schedule(schedule_id: int) -> Job | None:
    """Start the schedule's job now, as its owner. Parameters that no longer validate (the kind
    changed) give a failed job saying why, so the owner sees it like any other job. So does an
    owner at their output quota, once, and one over their start budget (`job_trigger`, shared with
    their REST starts), once: while the last run failed for the same reason, runs are skipped with
    a log line, so a schedule every 10 s doesn't pile up failed jobs (refused runs never outnumber
    started ones)."""
    schedule = Schedule.objects.select_related("owner", "last_job").filter(pk=schedule_id).first()
    if schedule is None or not schedule.enabled or not schedule.owner.is_active:
        logger.info("schedule %s is gone or off; nothing started", schedule_id)
        return None
    kind = get_kind(schedule.kind)
    reason = None
    data: dict[str, Any] = {}
    if kind is None:
        reason = f"This server no longer runs jobs of kind {schedule.kind!r}."
    else:

        try:
            data = dict(validate_params(kind, schedule.params or {}, {}))
        except serializers.ValidationError as exc:
            reason = f"The schedule's parameters are no longer valid: {json.dumps(exc.detail)}"
    if reason is None:
        try:
            retention.check_quota(schedule.owner)
        except retention.QuotaExceeded as exc:
            if _last_run_refused_for(schedule, retention.QUOTA_MESSAGE_START):
                logger.info("schedule %s: its owner is still at their output quota; run skipped", schedule.pk)
                return None
            reason = str(exc)
    if reason is None:
        reason = _over_start_budget(schedule)
        if reason is not None and _last_run_refused_for(schedule, RATE_MESSAGE_START):
            logger.info("schedule %s: its owner is still over their start budget; run skipped", schedule.pk)
            return None
        if reason is not None:
            logger.info("schedule %s: its owner is over their start budget; run refused", schedule.pk)
    if reason is not None:
        job = services.job_refused(kind_name=schedule.kind, owner=schedule.owner, params=schedule.params or {},
                                   reason=reason)
    else:
        try:
            # Outside any transaction (commit, then publish: services.job_start sends at once), so a
            # broker outage is raised here and caught below, not at some later commit.
            job = services.job_start(kind=kind, owner=schedule.owner, data=data)
        except services.BrokerUnavailable:  # the job row says so; beat tries again next time
            logger.warning("schedule %s: the job queue is unreachable", schedule.pk)
            return None
        except services.QuotaExceeded:  # reached since the check above: the next run says so
            logger.info("schedule %s: its owner reached their output quota; run skipped", schedule.pk)
            return None
    schedule_record_run(schedule=schedule, job=job)
    logger.info("scheduled job started", extra={"schedule": schedule.pk, "job": str(job.id), "kind": job.kind})
    return job
