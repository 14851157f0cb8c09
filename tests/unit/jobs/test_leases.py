import time
import uuid

import pytest
from django.utils import timezone

from basic.jobs import files, queue_markers, services, worker_liveness
from basic.jobs.event_store import read_events_sync
from basic.jobs.leases import JobLease, LeaseLost, is_leased
from basic.jobs.runner import run_job
from basic.models import Job, Student

pytestmark = pytest.mark.django_db


def mark_sent(job_id) -> None:
    """The markers `enqueue` leaves when the broker took the message."""
    with queue_markers.sending(job_id):
        pass


def report_path(job_id):
    return files.output_path(job_id, f"students-by-age-{job_id}.csv")


def test_one_holder_at_a_time_and_only_the_holder_renews_or_releases():
    job_id = uuid.uuid4()
    first, second = JobLease(job_id, seconds=30), JobLease(job_id, seconds=30)
    assert first.acquire()
    assert not second.acquire()
    with pytest.raises(LeaseLost):
        second.renew()
    second.release()
    assert is_leased(job_id)
    first.renew()
    first.release()
    assert not is_leased(job_id)
    assert second.acquire()


def test_a_second_delivery_while_the_job_runs_does_nothing(alice):
    job = Job.objects.create(kind="students_by_age", owner=alice)
    holder = JobLease(job.id)
    assert holder.acquire()
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "queued"
    assert read_events_sync(job.id) == []
    holder.release()


def test_a_run_that_loses_its_lease_stops_without_finishing_the_job(alice, monkeypatch, settings):
    settings.REPORT_CHUNK_SIZE = 2
    settings.JOB_CHECK_INTERVAL_SECONDS = 0  # the lease is checked at every step and before the end
    Student.objects.bulk_create([Student(owner=alice, name=f"s{i}", age=i) for i in range(10)])
    job = Job.objects.create(kind="students_by_age", owner=alice)
    real_renew = JobLease.renew

    def lose_it(self):
        self.release()  # as if it expired while this worker stalled
        JobLease(job.id).acquire()  # ...and another run took the job
        real_renew(self)

    monkeypatch.setattr(JobLease, "renew", lose_it)
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "running"
    assert not report_path(job.id).exists()
    assert [e["type"] for e in read_events_sync(job.id)] == ["job.started"]


def test_the_check_before_the_end_is_skipped_only_when_redis_said_so_within_the_interval(redis_client):
    lease = JobLease(uuid.uuid4(), seconds=30)
    assert lease.acquire()
    redis_client.set(lease.key, "another run")  # taken over (after a Redis that lost it) just now
    lease.renew_unless_checked_within(10)  # acquired under 10 s ago: no round trip, as fresh as a body's check
    assert redis_client.get(lease.key) == b"another run"
    lease.checked_at -= 11
    with pytest.raises(LeaseLost):
        lease.renew_unless_checked_within(10)


def test_a_renewal_counts_as_the_last_check(redis_client):
    lease = JobLease(uuid.uuid4(), seconds=30)
    assert lease.acquire()
    lease.checked_at -= 11
    lease.renew()
    redis_client.set(lease.key, "another run")
    lease.renew_unless_checked_within(10)  # renewed just now
    assert redis_client.get(lease.key) == b"another run"
    assert not JobLease(uuid.uuid4()).checked_at > 0  # never checked: the first call renews


def test_recovery_requeues_running_jobs_whose_lease_lapsed_and_row_stopped_moving(alice, queued, settings):
    long_ago = timezone.now() - timezone.timedelta(seconds=settings.JOB_LEASE_SECONDS + 5)
    orphan = Job.objects.create(kind="students_by_age", owner=alice, status="running", started=long_ago,
                                heartbeat=long_ago)
    alive = Job.objects.create(kind="students_by_age", owner=alice, status="running", started=long_ago)
    Job.objects.create(kind="students_by_age", owner=alice, status="running", started=timezone.now())
    Job.objects.create(kind="students_by_age", owner=alice, status="done", started=long_ago)
    # Its lease vanished (Redis came back empty), but its row moved just now: its run is alive.
    Job.objects.create(kind="students_by_age", owner=alice, status="running", started=long_ago,
                       heartbeat=timezone.now())
    lease = JobLease(alive.id)
    lease.acquire()
    assert services.recover_lost_jobs() == [orphan.id]
    assert [call["task_id"] for call in queued] == [str(orphan.id)]
    lease.release()


def test_recovery_requeues_queued_jobs_whose_message_was_lost(alice, queued, settings, redis_client):
    settings.JOB_REQUEUE_AFTER_SECONDS = 5
    a_while_ago = timezone.now() - timezone.timedelta(seconds=10)

    def queued_job(**fields):
        job = Job.objects.create(kind="students_by_age", owner=alice, **fields)
        Job.objects.filter(id=job.id).update(created=fields.get("created", a_while_ago))
        return job

    lost = queued_job()  # no marker: Redis lost the broker's copy with it
    waiting = queued_job()
    mark_sent(waiting.id)  # still in the broker's queue
    reserved_but_not_started = queued_job()
    settings.JOB_RESERVED_SECONDS = 1
    worker_liveness.announce()  # this process is the worker holding it, alive, but it never starts it
    queue_markers.mark_reserved(reserved_but_not_started.id)
    queued_job(created=timezone.now())  # just queued: give the broker time
    queued_job(cancel_requested=True)
    assert services.recover_lost_jobs() == [lost.id]
    assert queue_markers.unmarked([lost.id]) == []  # queued again, so marked again
    time.sleep(1.1)
    assert services.recover_lost_jobs() == [reserved_but_not_started.id]


def test_a_lease_that_vanished_is_taken_back_by_its_run(redis_client):
    lease = JobLease(uuid.uuid4(), seconds=30)
    assert lease.acquire()
    redis_client.delete(lease.key)  # Redis came back empty
    lease.renew()
    assert redis_client.get(lease.key).decode() == lease.holder
    assert not JobLease(lease.key.split(":")[1]).acquire()


def test_a_recovered_job_runs_again_from_scratch_and_finishes_once(alice, settings):
    Student.objects.create(owner=alice, name="Al", age=3)
    job = Job.objects.create(kind="students_by_age", owner=alice, status="running",
                             started=timezone.now())
    stale_temp = files.temp_path(job.id, report_path(job.id).name, "dead")
    stale_temp.parent.mkdir(parents=True, exist_ok=True)
    stale_temp.write_text("half a rep")
    run_job(job.id)
    job.refresh_from_db()
    assert (job.status, job.progress) == ("done", 100)
    assert not stale_temp.exists()
    events = read_events_sync(job.id)
    assert events[0]["message"] == "Restarted after its worker was lost"
    assert [e["type"] for e in events].count("job.done") == 1


def test_a_job_cancelled_just_as_its_task_starts_is_not_run(alice, monkeypatch):
    job = Job.objects.create(kind="students_by_age", owner=alice)
    real_acquire = JobLease.acquire

    def cancel_meanwhile(self):
        services.job_cancel(job=Job.objects.get(id=job.id))  # the view's cancel lands right now
        return real_acquire(self)

    monkeypatch.setattr(JobLease, "acquire", cancel_meanwhile)
    monkeypatch.setattr(services, "_revoke_quietly", lambda job_id: None)
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "cancelled"
    assert [e["type"] for e in read_events_sync(job.id)] == ["job.cancelled"]
    assert not report_path(job.id).exists()


def test_taking_the_lease_clears_the_queue_marker_in_the_same_trip(redis_client):
    """Issue 19: the run's first two Redis writes (take the lease, drop the queue marker) are one script;
    a run that does not get the lease leaves the marker alone."""
    job_id = uuid.uuid4()
    mark_sent(job_id)
    first = JobLease(job_id, seconds=30)
    assert first.acquire()
    assert queue_markers.unmarked([job_id]) == [job_id]
    mark_sent(job_id)  # sent again (recovery) while the first run holds the lease
    assert not JobLease(job_id, seconds=30).acquire()
    assert queue_markers.unmarked([job_id]) == []
    first.release()
