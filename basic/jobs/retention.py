"""What jobs keep, and for how long: the retention sweep and each user's output quota.

- **Retention.** A finished job (done, failed, cancelled) whose `finished` (or `created`, if it
  never finished) is older than JOB_RETENTION_DAYS is deleted: its row, then its Redis keys
  (event stream, seq counter, lease, queue marker) and its folder. The row goes first, so a job
  that still exists always has its download; a job half-deleted by a crash is a 404 with some
  files left over, which the folder sweep removes. Active jobs are never deleted.
- **Batches.** A batch goes once it has ended and has no member left (its members expired, or their
  owner deleted them): its row (and its Idempotency-Key), then its Redis keys (event stream, seq
  counter, aggregate). Deleting a member deletes an emptied batch at once; the sweep catches the
  rest. A batch with members left stays, showing the members it still has (its `total` is what it
  started with). Its zip is never stored (basic/jobs/batch_zip.py); the folders of zips a killed
  process was writing go with the temp files.
- **Folders.** Job folders whose row is gone (older than a day: `job_start` writes an upload
  before it creates the row) and temp files older than a day that a killed worker left.
- **Quota.** `Job.output_bytes` is what a job keeps on disk (uploads from its start, outputs once
  done), summed per owner by the database (StoredOutput); a user whose jobs keep
  JOB_OUTPUT_QUOTA_MB or more starts no new job until some are deleted (`DELETE /api/jobs/{id}/`,
  `delete_job`) or expire.

Every worker runs the sweep from its recovery loop (basic/jobs/recovery.py), at most every
JOB_RETENTION_SWEEP_SECONDS, so it needs no beat; `manage.py sweep_jobs` runs it by hand or from
cron. Work per call is bounded (BATCH jobs and folders); a full batch makes the worker come back
at its next round instead of after the interval, so a backlog drains steadily.
"""
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from uuid import UUID

import redis
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.db import connection
from django.db.models import Q, QuerySet
from django.utils import timezone

from basic.core.keys import (
    batch_aggregate_key,
    batch_members_key,
    batch_seq_key,
    batch_stream_key,
    lease_key,
    queued_key,
    seq_key,
    stream_key,
)
from basic.core.redis_clients import sync_redis
from basic.jobs import batch_zip, files, idempotency
from basic.jobs.models import Batch, Job, StoredOutput

logger = logging.getLogger(__name__)

BATCH = 500  # jobs, and folders, per call
STALE_AFTER = timedelta(days=1)  # orphan folders and temp files younger than this are kept
MIB = 1024 * 1024
ACTIVE = Job.ACTIVE


# --- quota -------------------------------------------------------------------------------------------

class QuotaExceeded(Exception):
    """The owner's jobs keep too much; str(exc) says how much and what to do (the 409's detail)."""


def stored_output_bytes(owner: AbstractBaseUser) -> int:
    """The sum of the owner's `Job.output_bytes`, read from the one row the database keeps equal
    to it (StoredOutput). Every start reads it: plain SQL, as the ORM's compile of this one-column
    read was 0.3 ms, 8% of the web process's CPU per start (py-spy, issue 19)."""
    meta, quote = StoredOutput._meta, connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {quote(meta.get_field('bytes').column)} FROM {quote(meta.db_table)} "
                       f"WHERE {quote(meta.pk.column)} = %s", [owner.pk])
        found = cursor.fetchone()
    return int(found[0]) if found else 0


def _megabytes(size: int) -> str:
    value = size / MIB
    return f"{value:,.0f}" if value >= 10 else f"{value:.1f}".removesuffix(".0")


def check_quota(owner: AbstractBaseUser | None) -> None:
    """QuotaExceeded if `owner`'s jobs keep JOB_OUTPUT_QUOTA_MB or more (0: no quota)."""
    quota_mb = settings.JOB_OUTPUT_QUOTA_MB
    if not quota_mb or owner is None:
        return
    used = stored_output_bytes(owner)
    if used >= quota_mb * MIB:
        expiry = (f"wait for them to expire (after {settings.JOB_RETENTION_DAYS} days)"
                  if settings.JOB_RETENTION_DAYS > 0 else "ask an administrator")
        raise QuotaExceeded(f"Your stored job output is {_megabytes(used)} MB of your {quota_mb:,} MB quota; "
                            f"delete old jobs or {expiry}.")


QUOTA_MESSAGE_START = "Your stored job output is"


# --- deleting jobs -------------------------------------------------------------------------------------

def _forget(job_ids: list[UUID]) -> None:
    """The Redis keys and the folder of jobs whose rows are gone. Best effort: the keys expire by
    themselves (within a day) and a folder left over is removed by the folder sweep."""
    if not job_ids:
        return
    try:
        keys = [key(job_id) for job_id in job_ids for key in (stream_key, seq_key, lease_key, queued_key)]
        sync_redis().delete(*keys)
    except redis.RedisError as exc:
        logger.warning("could not delete the Redis keys of %d deleted jobs (they expire): %s", len(job_ids), exc)
    for job_id in job_ids:
        files.remove_job_files(job_id)


def _delete(job_ids: list[UUID]) -> int:
    """Delete the finished jobs among `job_ids`: rows first, then keys and folders, then the batches
    they emptied. Returns how many job rows this call deleted; an active job (or one deleted
    meanwhile) is left alone."""
    if not job_ids:
        return 0
    finished = Job.objects.filter(id__in=job_ids, status__in=Job.TERMINAL)
    batch_ids = set(finished.filter(batch__isnull=False).values_list("batch_id", flat=True))
    _total, per_model = finished.delete()
    remaining = set(Job.objects.filter(id__in=job_ids).values_list("id", flat=True))
    _forget([job_id for job_id in job_ids if job_id not in remaining])
    if batch_ids:
        _delete_batches(empty_batches().filter(id__in=batch_ids))
    return per_model.get(Job._meta.label, 0)


def delete_job(job: Job) -> bool:
    """Delete one finished job with its files and events (`DELETE /api/jobs/{id}/`). False if the
    job is active (queued or running): cancel it first."""
    return _delete([job.id]) == 1


def expired_jobs(now: datetime | None = None) -> QuerySet[Job]:
    """Finished jobs older than JOB_RETENTION_DAYS, oldest first (none if retention is off)."""
    if settings.JOB_RETENTION_DAYS <= 0:
        return Job.objects.none()
    cutoff = (now or timezone.now()) - timedelta(days=settings.JOB_RETENTION_DAYS)
    return (Job.objects.filter(status__in=Job.TERMINAL)
            .filter(Q(finished__lt=cutoff) | Q(finished__isnull=True, created__lt=cutoff))
            .order_by("created"))


def sweep_expired_jobs(now: datetime | None = None, batch: int = BATCH) -> int:
    """Delete at most `batch` expired jobs (rows, Redis keys, folders); returns how many."""
    job_ids = list(expired_jobs(now).values_list("id", flat=True)[:batch])
    deleted = _delete(job_ids)
    if deleted:
        logger.info("retention: deleted %d jobs older than %d days", deleted, settings.JOB_RETENTION_DAYS)
    return deleted


# --- deleting batches ----------------------------------------------------------------------------------

def empty_batches() -> QuerySet[Batch]:
    """Ended batches with no member left, oldest first. Members are only ever added in the
    transaction that creates their batch, so an ended, empty batch stays empty."""
    return Batch.objects.filter(finished__isnull=False, jobs__isnull=True).order_by("created")


def _delete_batches(batches: QuerySet[Batch]) -> int:
    """Delete `batches` (rows first, their Idempotency-Keys with them), then their Redis keys (best
    effort: they expire after JOB_EVENTS_TTL_SECONDS anyway). Returns how many rows went."""
    batch_ids = list(batches.values_list("id", flat=True))
    if not batch_ids:
        return 0
    _total, per_model = empty_batches().filter(id__in=batch_ids).delete()  # still empty and ended
    try:
        keys = [key(batch_id) for batch_id in batch_ids
                for key in (batch_stream_key, batch_seq_key, batch_members_key, batch_aggregate_key)]
        sync_redis().delete(*keys)
    except redis.RedisError as exc:
        logger.warning("could not delete the Redis keys of %d deleted batches (they expire): %s", len(batch_ids), exc)
    return per_model.get(Batch._meta.label, 0)


def sweep_empty_batches(batch: int = BATCH) -> int:
    """Delete at most `batch` ended batches that have no member left (rows, Redis keys); returns how
    many. Whatever JOB_RETENTION_DAYS says: an empty batch holds nothing to keep."""
    deleted = _delete_batches(empty_batches()[:batch])
    if deleted:
        logger.info("retention: deleted %d ended batches with no member left", deleted)
    return deleted


# --- folders -------------------------------------------------------------------------------------------

def _job_folders(root: Path) -> Iterator[tuple[UUID, Path]]:
    try:
        entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for entry in entries:
        try:
            job_id = UUID(entry.name)
        except ValueError:
            continue  # not ours
        if entry.is_dir(follow_symlinks=False) and entry.name == str(job_id):
            yield job_id, Path(entry.path)


def _chunks(items: Iterable, size: int) -> Iterator[list]:
    chunk: list = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _older_than(path: Path, cutoff: float) -> bool:
    try:
        return path.stat().st_mtime < cutoff
    except FileNotFoundError:
        return False


def _remove_stale_temp_files(folder: Path, cutoff: float) -> int:
    removed = 0
    for temp in folder.glob(f".*{files.TEMP_SUFFIX}"):
        if temp.is_file() and _older_than(temp, cutoff):
            temp.unlink(missing_ok=True)
            removed += 1
    return removed


def sweep_job_folders(now: datetime | None = None, batch: int = BATCH) -> tuple[int, int]:
    """Remove at most `batch` job folders whose row is gone, and temp files of finished jobs,
    both older than a day. Returns (folders removed, temp files removed)."""
    cutoff = ((now or timezone.now()) - STALE_AFTER).timestamp()
    orphans = temps = 0
    for chunk in _chunks(_job_folders(Path(settings.JOBS_DIR)), 500):
        statuses = dict(Job.objects.filter(id__in=[job_id for job_id, _ in chunk]).values_list("id", "status"))
        for job_id, folder in chunk:
            status = statuses.get(job_id)
            if status is None:
                if orphans < batch and _older_than(folder, cutoff):
                    shutil.rmtree(folder, ignore_errors=True)
                    if not folder.exists():  # count only what is gone: sweep_jobs loops while batches are full
                        orphans += 1
            elif status not in ACTIVE:  # an active job's run owns its temp files
                temps += _remove_stale_temp_files(folder, cutoff)
        time.sleep(0)  # a file-system walk: let other greenlets of the worker run (gevent)
    if orphans or temps:
        logger.info("retention: removed %d orphan job folders and %d stale temp files", orphans, temps)
    return orphans, temps


# --- the sweep -----------------------------------------------------------------------------------------

@dataclass(frozen=True)
class SweepResult:
    jobs: int
    folders: int
    temp_files: int
    batch: int
    batches: int = 0  # job batches (`Batch`) deleted, not to be confused with `batch`, the chunk size

    @property
    def full(self) -> bool:
        """A chunk was full: more may be waiting."""
        return self.jobs >= self.batch or self.folders >= self.batch or self.batches >= self.batch


def sweep(now: datetime | None = None, batch: int = BATCH) -> SweepResult:
    jobs = sweep_expired_jobs(now, batch)
    batches = sweep_empty_batches(batch)  # after the jobs: those they emptied are already gone
    folders, temp_files = sweep_job_folders(now, batch)
    temp_files += batch_zip.remove_stale_zip_folders(((now or timezone.now()) - STALE_AFTER).timestamp())
    idempotency.purge_expired_keys(now)  # Idempotency-Keys past JOB_IDEMPOTENCY_HOURS (issue 20)
    return SweepResult(jobs=jobs, folders=folders, temp_files=temp_files, batch=batch, batches=batches)


class PeriodicSweep:
    """The worker's schedule for `sweep`: at most every JOB_RETENTION_SWEEP_SECONDS, sooner when
    the last batch was full; `run_if_due` is called every round of the recovery loop."""

    def __init__(self, clock: Callable[[], float] = time.monotonic, first_delay: float = 0.0) -> None:
        self._clock = clock
        self._due = clock() + first_delay

    def run_if_due(self) -> SweepResult | None:
        interval = settings.JOB_RETENTION_SWEEP_SECONDS
        now = self._clock()
        if interval <= 0 or now < self._due:
            return None
        self._due = now + min(interval, 300)  # if the sweep fails (a database blip), retry sooner
        result = sweep()
        self._due = now if result.full else now + interval
        return result
