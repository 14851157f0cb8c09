"""Batches in the retention sweep (basic/jobs/retention.py): a batch goes, with its Redis keys and its
Idempotency-Key, once it has ended and no member is left (expired, or deleted by its owner); one
member deleted leaves the batch with the others; an active or non-empty batch is never deleted; the
folders of zips a killed process was writing go a day later."""
import os
import tempfile
import time
from datetime import timedelta

import pytest
from django.utils import timezone

from basic.core.keys import batch_aggregate_key, batch_members_key, batch_seq_key, batch_stream_key
from basic.jobs import batch_events, batch_zip, retention, services
from basic.models import Batch, IdempotencyKey, Job

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)
BATCH_KEYS = (batch_stream_key, batch_seq_key, batch_members_key, batch_aggregate_key)


@pytest.fixture(autouse=True)
def own_jobs_dir(settings, tmp_path):
    settings.JOBS_DIR = tmp_path / "jobs"
    settings.JOB_RETENTION_DAYS = 7
    return settings.JOBS_DIR


def make_batch(owner, ages, *, status="done", redis_client=None):
    """An ended batch whose members finished `ages` ago (None: still running), with every Redis key a
    batch has."""
    batch = Batch.objects.create(owner=owner, total=len(ages), status=status, finished=timezone.now())
    for age in ages:
        job = Job.objects.create(kind="test_steps", owner=owner, batch=batch,
                                 status="running" if age is None else "done")
        if age is not None:
            Job.objects.filter(id=job.id).update(created=timezone.now() - age, finished=timezone.now() - age)
    if redis_client is not None:
        redis_client.xadd(batch_stream_key(batch.id), {"e": "{}"}, id="0-1")
        redis_client.set(batch_seq_key(batch.id), 1)
        redis_client.hset(batch_members_key(batch.id), "member", "done:100")
        redis_client.hset(batch_aggregate_key(batch.id), "closed", 1)
    return batch


def batch_keys(redis_client, batch):
    return [key(batch.id) for key in BATCH_KEYS if redis_client.exists(key(batch.id))]


def test_a_batch_whose_members_all_expired_goes_with_its_redis_keys_and_key(alice, redis_client):
    batch = make_batch(alice, [8 * DAY, 9 * DAY], redis_client=redis_client)
    IdempotencyKey.objects.create(owner=alice, key="k", fingerprint="0" * 64, batch=batch)
    assert len(batch_keys(redis_client, batch)) == 4
    assert retention.sweep().jobs == 2
    assert not Batch.objects.filter(id=batch.id).exists()
    assert batch_keys(redis_client, batch) == []
    assert not IdempotencyKey.objects.exists(), "a deleted batch takes its key with it"


def test_a_batch_stays_while_a_member_is_left(alice, redis_client):
    batch = make_batch(alice, [8 * DAY, 2 * DAY], redis_client=redis_client)
    assert retention.sweep().jobs == 1
    assert Batch.objects.get(id=batch.id).total == 2, "it keeps what it started with"
    assert Job.objects.filter(batch=batch).count() == 1 and len(batch_keys(redis_client, batch)) == 4
    assert retention.sweep(now=timezone.now() + 6 * DAY).jobs == 1
    assert not Batch.objects.filter(id=batch.id).exists() and batch_keys(redis_client, batch) == []


def test_deleting_members_deletes_the_batch_with_the_last(alice, redis_client, settings):
    settings.JOB_RETENTION_DAYS = 0  # kept forever, unless their owner deletes them
    batch = make_batch(alice, [DAY, DAY], redis_client=redis_client)
    first, second = Job.objects.filter(batch=batch)
    assert services.job_delete(job=first)
    assert Batch.objects.filter(id=batch.id).exists() and len(batch_keys(redis_client, batch)) == 4
    assert services.job_delete(job=second)
    assert not Batch.objects.filter(id=batch.id).exists() and batch_keys(redis_client, batch) == []


def test_an_active_member_keeps_its_batch(alice):
    batch = make_batch(alice, [None, 30 * DAY], status="running")
    Batch.objects.filter(id=batch.id).update(finished=None)
    assert retention.sweep().jobs == 1
    assert Batch.objects.filter(id=batch.id).exists()


def test_an_emptied_batch_that_had_not_ended_goes_once_it_has(alice, redis_client):
    """Its last member deleted before its end was recorded (the worker died in between): the
    recovery sweep ends it, then the retention sweep deletes it."""
    batch = make_batch(alice, [DAY], status="running", redis_client=redis_client)
    Batch.objects.filter(id=batch.id).update(finished=None)
    assert services.job_delete(job=Job.objects.get(batch=batch))
    assert retention.sweep().batches == 0 and Batch.objects.filter(id=batch.id).exists(), "not ended yet"
    assert batch_events.finish_settled_batches() == [batch.id]
    result = retention.sweep()
    assert result.batches == 1 and not result.full
    assert not Batch.objects.filter(id=batch.id).exists() and batch_keys(redis_client, batch) == []


def test_the_batch_sweep_is_bounded_and_reports_a_full_chunk(alice):
    for _ in range(3):
        Batch.objects.create(owner=alice, total=1, status="done", finished=timezone.now())
    result = retention.sweep(batch=2)
    assert (result.batches, result.full) == (2, True)
    result = retention.sweep(batch=2)
    assert (result.batches, result.full) == (1, False)
    assert not Batch.objects.exists()


def test_a_batch_being_started_is_never_taken_for_an_empty_one(alice):
    Batch.objects.create(owner=alice, total=2)  # no member yet: not ended, so not swept
    assert retention.sweep().batches == 0 and Batch.objects.count() == 1


def test_zip_folders_a_killed_process_left_go_a_day_later(monkeypatch, tmp_path):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    stale, fresh = tmp_path / f"{batch_zip.FOLDER_PREFIX}stale", tmp_path / f"{batch_zip.FOLDER_PREFIX}fresh"
    other = tmp_path / "someone-elses"
    for folder in (stale, fresh, other):
        folder.mkdir()
        (folder / "batch.zip").write_bytes(b"PK")
    for folder in (stale, other):
        stamp = time.time() - 2 * DAY.total_seconds()
        os.utime(folder, (stamp, stamp))
    assert retention.sweep().temp_files == 1
    assert not stale.exists() and fresh.exists() and other.exists()
