"""Retention (basic/jobs/retention.py): expired finished jobs go with their files and Redis keys, in
bounded batches; active and recent jobs stay; orphan folders and stale temp files are cleaned; the
worker loop runs the sweep on its own schedule; `manage.py sweep_jobs` drains everything."""
import os
import time
from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from basic.core.keys import lease_key, queued_key, seq_key, stream_key
from basic.jobs import files, retention
from basic.jobs import recovery as worker_recovery
from basic.models import Job, Schedule

pytestmark = pytest.mark.django_db

DAY = timedelta(days=1)


@pytest.fixture(autouse=True)
def own_jobs_dir(settings, tmp_path):
    """Job folders of this test only (other tests leave folders whose rows were rolled back)."""
    settings.JOBS_DIR = tmp_path / "jobs"
    settings.JOB_RETENTION_DAYS = 7
    return settings.JOBS_DIR


def make_job(owner, status="done", *, age=None, finished_age=None, files_too=True, redis_too=True):
    """A job created `age` ago and finished `finished_age` ago (default: when created), with an
    output file and every Redis key a job has."""
    job = Job.objects.create(kind="test_steps", owner=owner, status=status)
    created = timezone.now() - (age or timedelta(0))
    finished = None
    if status in Job.TERMINAL:
        finished = timezone.now() - (finished_age if finished_age is not None else (age or timedelta(0)))
    Job.objects.filter(id=job.id).update(created=created, finished=finished)
    if files_too:
        files.output_path(job.id, "out.txt").parent.mkdir(parents=True, exist_ok=True)
        files.output_path(job.id, "out.txt").write_text("result")
        (files.input_dir(job.id)).mkdir()
        (files.input_dir(job.id) / "upload.png").write_bytes(b"x" * 10)
    if redis_too:
        from basic.core.redis_clients import sync_redis

        client = sync_redis()
        client.set(seq_key(job.id), 3)
        client.xadd(stream_key(job.id), {"e": "{}"}, id="0-1")
        client.set(lease_key(job.id), "holder", ex=60)
        client.set(queued_key(job.id), "queued", ex=60)
    job.refresh_from_db()
    return job


def redis_keys(redis_client, job):
    return [key for key in (stream_key(job.id), seq_key(job.id), lease_key(job.id), queued_key(job.id))
            if redis_client.exists(key)]


def backdate(path, age):
    stamp = time.time() - age.total_seconds()
    os.utime(path, (stamp, stamp))


@pytest.mark.parametrize("status", ["done", "failed", "cancelled"])
def test_an_expired_finished_job_goes_with_its_files_and_redis_keys(alice, redis_client, status):
    job = make_job(alice, status, age=8 * DAY)
    assert files.job_dir(job.id).exists() and len(redis_keys(redis_client, job)) == 4
    assert retention.sweep_expired_jobs() == 1
    assert not Job.objects.filter(id=job.id).exists()
    assert not files.job_dir(job.id).exists()
    assert redis_keys(redis_client, job) == []


@pytest.mark.parametrize("status", ["queued", "running"])
def test_an_active_job_is_never_deleted_however_old(alice, redis_client, status):
    job = make_job(alice, status, age=400 * DAY)
    assert retention.sweep_expired_jobs() == 0
    assert retention.delete_job(job) is False
    assert Job.objects.filter(id=job.id, status=status).exists()
    assert files.output_path(job.id, "out.txt").exists() and len(redis_keys(redis_client, job)) == 4


def test_recent_jobs_are_kept_and_age_counts_from_the_finish(alice):
    recent = make_job(alice, age=6 * DAY)
    long_running = make_job(alice, age=30 * DAY, finished_age=DAY)  # started long ago, ended yesterday
    never_finished = make_job(alice, "failed", age=8 * DAY)
    Job.objects.filter(id=never_finished.id).update(finished=None)  # e.g. a row made by hand: by `created`
    assert retention.sweep_expired_jobs() == 1
    assert set(Job.objects.values_list("id", flat=True)) == {recent.id, long_running.id}
    assert files.job_dir(recent.id).exists() and files.job_dir(long_running.id).exists()


def test_now_can_be_given(alice):
    job = make_job(alice, age=DAY)
    assert retention.sweep_expired_jobs(now=timezone.now() + 5 * DAY) == 0
    assert retention.sweep_expired_jobs(now=timezone.now() + 7 * DAY) == 1
    assert not Job.objects.filter(id=job.id).exists()


def test_retention_zero_days_keeps_every_job(alice, settings):
    settings.JOB_RETENTION_DAYS = 0
    make_job(alice, age=4000 * DAY)
    assert retention.sweep_expired_jobs() == 0 and Job.objects.count() == 1


def test_a_schedule_whose_last_job_expired_stays(alice):
    job = make_job(alice, age=8 * DAY)
    schedule = Schedule.objects.create(owner=alice, kind="test_steps", last_job=job)
    assert retention.sweep_expired_jobs() == 1
    schedule.refresh_from_db()
    assert schedule.last_job is None


def test_each_call_deletes_at_most_a_batch_oldest_first(alice):
    jobs = [make_job(alice, age=(20 + n) * DAY, redis_too=False) for n in range(7)]
    assert retention.sweep_expired_jobs(batch=3) == 3
    assert not Job.objects.filter(id__in=[job.id for job in jobs[-3:]]).exists()  # the 3 oldest
    assert retention.sweep_expired_jobs(batch=3) == 3
    assert retention.sweep_expired_jobs(batch=3) == 1
    assert retention.sweep_expired_jobs(batch=3) == 0
    assert not any(files.job_dir(job.id).exists() for job in jobs)


def test_the_whole_sweep_reports_a_full_batch(alice):
    for n in range(3):
        make_job(alice, age=(10 + n) * DAY, redis_too=False)
    result = retention.sweep(batch=2)
    assert (result.jobs, result.full) == (2, True)
    result = retention.sweep(batch=2)
    assert (result.jobs, result.full) == (1, False)


def test_orphan_folders_older_than_a_day_are_removed(alice, own_jobs_dir):
    import uuid

    old_orphan, young_orphan = files.job_dir(uuid.uuid4()), files.job_dir(uuid.uuid4())
    for folder in (old_orphan, young_orphan):
        (folder / "input").mkdir(parents=True)
        (folder / "input" / "photo.png").write_bytes(b"png")
    backdate(old_orphan, 2 * DAY)
    kept = make_job(alice, age=2 * DAY, finished_age=timedelta(0))
    backdate(files.job_dir(kept.id), 2 * DAY)  # an old folder whose row exists
    foreign = own_jobs_dir / "not-a-job"
    foreign.mkdir()
    backdate(foreign, 30 * DAY)
    assert retention.sweep_job_folders() == (1, 0)
    assert not old_orphan.exists()
    assert young_orphan.exists(), "job_start writes an upload before its row: a young folder may be a new job"
    assert files.job_dir(kept.id).exists() and foreign.exists()


def test_the_folder_sweep_is_bounded_too(own_jobs_dir):
    import uuid

    for _ in range(5):
        folder = files.job_dir(uuid.uuid4())
        folder.mkdir(parents=True)
        backdate(folder, 3 * DAY)
    assert retention.sweep_job_folders(batch=2) == (2, 0)
    assert retention.sweep_job_folders(batch=2) == (2, 0)
    assert retention.sweep_job_folders(batch=2) == (1, 0)
    assert list(own_jobs_dir.iterdir()) == []


def test_stale_temp_files_of_finished_jobs_go_but_not_fresh_ones_nor_a_running_jobs(alice):
    done, running = make_job(alice, age=DAY), make_job(alice, "running", age=DAY)
    for job in (done, running):
        stale = files.temp_path(job.id, "out.txt", "deadrun")
        stale.write_text("half")
        backdate(stale, 2 * DAY)
    fresh = files.temp_path(done.id, "out.txt", "newrun")
    fresh.write_text("half")
    assert retention.sweep_job_folders() == (0, 1)
    assert not files.temp_path(done.id, "out.txt", "deadrun").exists()
    assert fresh.exists() and files.temp_path(running.id, "out.txt", "deadrun").exists()
    assert files.output_path(done.id, "out.txt").exists()


def test_a_missing_jobs_folder_is_nothing_to_sweep(own_jobs_dir):
    assert not own_jobs_dir.exists()
    assert retention.sweep_job_folders() == (0, 0)


def test_the_worker_sweeps_at_most_every_interval_and_again_at_once_after_a_full_batch(settings, monkeypatch):
    settings.JOB_RETENTION_SWEEP_SECONDS = 3600
    clock = [1000.0]
    results = []

    def fake_sweep(now=None, batch=retention.BATCH):
        results.append(clock[0])
        return retention.SweepResult(jobs=batch if len(results) == 2 else 0, folders=0, temp_files=0, batch=batch)

    monkeypatch.setattr(retention, "sweep", fake_sweep)
    sweeper = retention.PeriodicSweep(clock=lambda: clock[0], first_delay=30)
    assert sweeper.run_if_due() is None  # not yet
    clock[0] += 30
    assert sweeper.run_if_due() is not None and results == [1030.0]
    clock[0] += 3599
    assert sweeper.run_if_due() is None
    clock[0] += 1
    assert sweeper.run_if_due().full  # a full batch...
    clock[0] += 15
    assert sweeper.run_if_due() is not None  # ...so the next round sweeps again
    clock[0] += 15
    assert sweeper.run_if_due() is None and len(results) == 3
    settings.JOB_RETENTION_SWEEP_SECONDS = 0  # off: only `manage.py sweep_jobs`
    clock[0] += 10**6
    assert sweeper.run_if_due() is None and len(results) == 3


def test_a_failing_sweep_is_tried_again_within_minutes(settings, monkeypatch):
    settings.JOB_RETENTION_SWEEP_SECONDS = 3600
    clock = [0.0]

    def broken(now=None, batch=retention.BATCH):
        raise RuntimeError("database blip")

    monkeypatch.setattr(retention, "sweep", broken)
    sweeper = retention.PeriodicSweep(clock=lambda: clock[0])
    with pytest.raises(RuntimeError):
        sweeper.run_if_due()
    clock[0] += 299
    assert sweeper.run_if_due() is None
    clock[0] += 1
    with pytest.raises(RuntimeError):
        sweeper.run_if_due()


def test_the_recovery_loop_runs_the_sweep_and_survives_its_failure(monkeypatch):
    calls = []
    monkeypatch.setattr(worker_recovery, "recover_lost_jobs", lambda: calls.append("recover"))

    class Sweeper:
        def __init__(self, **kwargs):
            pass

        def run_if_due(self):
            calls.append("sweep")
            raise RuntimeError("database blip")

    class Stop(Exception):
        pass

    def sleep(seconds):
        if calls.count("sweep") == 2:
            raise Stop
    monkeypatch.setattr(worker_recovery.retention, "PeriodicSweep", Sweeper)
    monkeypatch.setattr(worker_recovery.time, "sleep", sleep)
    with pytest.raises(Stop):
        worker_recovery.recovery_loop(15)
    assert calls == ["recover", "sweep", "recover", "sweep"]


def test_the_sweep_jobs_command_drains_every_batch(alice, own_jobs_dir):
    import uuid

    for n in range(5):
        make_job(alice, age=(10 + n) * DAY, redis_too=False)
    kept = make_job(alice, age=DAY)
    orphan = files.job_dir(uuid.uuid4())
    orphan.mkdir(parents=True)
    backdate(orphan, 2 * DAY)
    out = StringIO()
    call_command("sweep_jobs", "--batch", "2", stdout=out)
    assert list(Job.objects.values_list("id", flat=True)) == [kept.id]
    assert not orphan.exists()
    assert out.getvalue().strip() == ("Deleted 5 expired jobs (older than 7 days), 1 orphan job folders "
                                      "and 0 stale temp files.")
