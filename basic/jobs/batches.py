"""Batches: several jobs started by one request and watched as one (issue 20, item 9). Start (all or
nothing), cancel, and who may see which; the aggregate events are basic/jobs/batch_events.py's,
the zip basic/jobs/batch_zip.py's."""
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar
from uuid import UUID

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.db import transaction
from django.db.models import QuerySet
from django.utils import timezone

from basic.jobs import files, idempotency, services, transitions
from basic.jobs.batch_events import finish_if_settled
from basic.jobs.models import Batch, Job
from basic.jobs.registry import JobKind

logger = logging.getLogger(__name__)

User = AbstractBaseUser | AnonymousUser


class BatchTooBig(ValueError):
    """More members than BATCH_MAX_JOBS (or none); the API answers 400."""


@dataclass(frozen=True)
class MemberRequest:
    """One member as validated by the caller: the kind, its validated parameters, and its trigger
    options (the same as a single start's); `options` are those options as the caller gave them
    (priority, run_at or delay_seconds: what an Idempotency-Key's fingerprint reads, as a job's)."""

    kind: JobKind
    data: dict[str, Any]
    priority: int | None = None
    not_before: datetime | None = None
    options: dict[str, Any] = field(default_factory=dict)


# --- selectors -----------------------------------------------------------------------------

def batches_visible_to(*, user: User) -> QuerySet[Batch]:
    """Staff see every batch; a signed-in user their own; anonymous callers none (as jobs)."""
    return services.owned_visible_to(Batch.objects, user=user)


def batch_visible_to(*, user: User, batch_id: UUID | str) -> Batch | None:
    """The batch if it exists and `user` may see it; None otherwise (the caller can't tell which)."""
    return services.by_any_uuid(batches_visible_to(user=user), batch_id)


def members_of(batch: Batch) -> QuerySet[Job]:
    """Its members in the order they were requested."""
    return Job.objects.filter(batch=batch).order_by("created", "id")


# --- services ------------------------------------------------------------------------------

def check_size(count: int) -> None:
    if count < 1:
        raise BatchTooBig("A batch needs at least one job.")
    if count > settings.BATCH_MAX_JOBS:
        raise BatchTooBig(f"A batch has at most {settings.BATCH_MAX_JOBS} jobs (BATCH_MAX_JOBS); this one has {count}.")


Result = TypeVar("Result")


def batch_start(*, owner: AbstractBaseUser, members: list[MemberRequest]) -> Batch:
    """Create the batch and every member in one transaction, then queue the members once it commits.

    All or nothing: BatchTooBig or QuotaExceeded (or any error) before the commit leaves no row and
    no stored upload. A broker that cannot be reached at the commit fails every member not queued
    (the batch then ends failed) and raises BrokerUnavailable, as a single start does."""
    return _start(owner, members, lambda create: create())


def batch_start_once(*, owner: AbstractBaseUser, key: str, members: list[MemberRequest]) -> idempotency.BatchStarted:
    """`batch_start` under an Idempotency-Key (basic/jobs/idempotency.py): the key, the batch and
    every member in one transaction, or the batch this owner's `key` started with the same members
    within JOB_IDEMPOTENCY_HOURS (`replayed`). KeyReused if the key started something else; a refused
    start (400, 409, 503) leaves the key free."""
    digest = idempotency.batch_fingerprint((member.kind.name, member.data, member.options) for member in members)
    return _start(owner, members, lambda create: idempotency.start_batch_once(
        owner=owner, key=key, fingerprint=digest, start=create))


def _start(owner: AbstractBaseUser, members: list[MemberRequest],
           run: Callable[[Callable[[], Batch]], Result]) -> Result:
    """`run(create)`, where `create` makes the batch and its members in one atomic() (a savepoint
    when `run` holds the transaction, as a keyed start does): uploads of a rolled-back start are
    removed; after a broker outage at the commit, the members not sent are failed."""
    check_size(len(members))
    now = timezone.now()
    delayed = all(member.not_before is not None and member.not_before > now for member in members)
    made: list[Batch] = []
    created: list[UUID] = []

    def create() -> Batch:
        with transaction.atomic():
            batch = Batch.objects.create(owner=owner, total=len(members),
                                         status=Batch.Status.SCHEDULED if delayed else Batch.Status.QUEUED)
            made.append(batch)
            for member in members:
                job = services.job_start(kind=member.kind, owner=owner, data=member.data, priority=member.priority,
                                         not_before=member.not_before, batch=batch)
                created.append(job.id)
        return batch

    try:
        return run(create)
    except services.BrokerUnavailable:  # raised by the commit: the batch and its members exist
        if made:
            _fail_unsent(made[-1])
        raise
    except BaseException:
        for job_id in created:  # rolled back: their uploads must not stay behind
            files.remove_job_files(job_id)
        raise


def _fail_unsent(batch: Batch) -> None:
    """After a broker outage at the commit, Django skips the members' later send hooks: end them
    failed now rather than leave them for the sweep to send long after the caller heard 503."""
    for job in Job.objects.filter(batch=batch, status=Job.Status.QUEUED):
        transitions.fail(job, services.BROKER_DOWN)


def batch_cancel(*, batch: Batch) -> bool:
    """Cancel every member still active; the batch ends `cancelled` once they have stopped (at once
    for members not started, at their next step for running ones). False if it has already ended."""
    if batch.finished is not None:
        return False
    Batch.objects.filter(id=batch.id).update(cancel_requested=True)
    batch.cancel_requested = True
    for job in Job.objects.filter(batch=batch, status__in=Job.ACTIVE):
        services.job_cancel(job=job)
    finish_if_settled(batch_id=batch.id)  # nothing was active: end it now
    return True
