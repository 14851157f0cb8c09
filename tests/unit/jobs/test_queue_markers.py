"""The queue marker around a send (basic/jobs/queue_markers.py): `queued` is written only after the
broker took the message, so a Redis replica promoted by Sentinel never has the marker without the
message; a worker that received or started the job first is not overwritten; a message held by a
worker that is no longer alive counts as lost at once, so a delayed start it held is sent again in
time (issue 20: "starts on time after a worker restart"). When the broker is the markers' Redis,
`queued` goes in with the message itself, in one round trip (issue 19)."""
import json
import time
import uuid

import pytest
from celery import current_app
from django.utils import timezone

from basic.core.keys import queued_key, worker_alive_key
from basic.jobs import queue_markers, services, worker_liveness
from basic.jobs.leases import JobLease
from basic.models import Job

pytestmark = pytest.mark.django_db


def marker(redis_client, job_id) -> str | None:
    value = redis_client.get(queued_key(job_id))
    return value.decode() if value else None


def test_the_marker_says_queued_only_after_the_broker_took_the_message(redis_client, settings):
    job_id = uuid.uuid4()
    seen_during_the_send = []
    with queue_markers.sending(job_id):
        seen_during_the_send.append(marker(redis_client, job_id))
    assert seen_during_the_send == [queue_markers.SENDING]
    assert marker(redis_client, job_id) == queue_markers.QUEUED
    assert redis_client.ttl(queued_key(job_id)) > settings.JOB_REQUEUE_AFTER_SECONDS
    queue_markers.clear(job_id)


def test_a_send_that_failed_leaves_a_marker_that_expires_soon(redis_client, settings):
    settings.JOB_REQUEUE_AFTER_SECONDS = 7
    job_id = uuid.uuid4()
    with pytest.raises(ConnectionError), queue_markers.sending(job_id):
        raise ConnectionError("the broker is down")
    assert marker(redis_client, job_id) == queue_markers.SENDING
    assert 0 < redis_client.ttl(queued_key(job_id)) <= 7
    queue_markers.clear(job_id)


def test_a_worker_quicker_than_the_sender_is_not_overwritten(redis_client):
    received, started = uuid.uuid4(), uuid.uuid4()
    with queue_markers.sending(received):
        queue_markers.mark_reserved(received)  # a worker received it before the send returned
    assert marker(redis_client, received) == f"reserved:{worker_liveness.token()}"
    with queue_markers.sending(started):
        assert JobLease(started, seconds=30).acquire()  # ... or even started it: the marker is gone
    assert marker(redis_client, started) is None  # and stays gone (no key left behind)
    queue_markers.clear(received)


def test_a_message_held_by_a_worker_that_died_counts_as_lost_at_once(redis_client, settings):
    settings.JOB_RESERVED_SECONDS = 600
    held_by_the_living, held_by_the_dead, waiting = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    worker_liveness.announce()
    queue_markers.mark_reserved(held_by_the_living, wait=100)
    redis_client.set(queued_key(held_by_the_dead), "reserved:a-worker-that-was-killed", ex=600)
    with queue_markers.sending(waiting):
        pass
    assert queue_markers.unmarked([held_by_the_living, held_by_the_dead, waiting]) == [held_by_the_dead]
    redis_client.delete(worker_alive_key(worker_liveness.token()))  # this worker goes silent
    assert queue_markers.unmarked([held_by_the_living, waiting]) == [held_by_the_living]
    for job_id in (held_by_the_living, held_by_the_dead, waiting):
        queue_markers.clear(job_id)


def test_the_sweep_sends_a_delayed_start_a_dead_worker_held_with_the_countdown_left(alice, monkeypatch, redis_client):
    due = timezone.now() + timezone.timedelta(seconds=40)
    job = Job.objects.create(kind="students_by_age", owner=alice, status=Job.Status.SCHEDULED, not_before=due)
    redis_client.set(queued_key(job.id), "reserved:a-worker-that-was-killed", ex=600)
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda job, countdown=None: sent.append((job.id, countdown)))
    assert services.recover_lost_jobs() == [job.id]
    assert sent[0][0] == job.id and 38 < sent[0][1] <= 40
    queue_markers.clear(job.id)


def test_a_worker_announces_itself_for_worker_alive_seconds(redis_client, settings):
    settings.WORKER_ALIVE_SECONDS = 9
    worker_liveness.announce()
    assert 0 < redis_client.ttl(worker_alive_key(worker_liveness.token())) <= 9
    assert worker_liveness.alive({worker_liveness.token(), "gone"}) == {worker_liveness.token()}
    assert worker_liveness.refresh_interval() == 3


def test_after_redis_was_replaced_the_sweep_sends_every_waiting_job_once(alice, monkeypatch, redis_client):
    """A failover (or a restart that kept its data) can lose a message a worker's BRPOP took from
    the old server while its `queued` marker survived: the soak saw such a job wait for the
    visibility timeout. The first sweep to see the new server sends every waiting job again."""
    from basic.core.keys import redis_server_key

    services.recover_lost_jobs()  # the sweep has seen this server
    queued = Job.objects.create(kind="students_by_age", owner=alice)  # just now: the normal sweep waits for it
    soon = Job.objects.create(kind="students_by_age", owner=alice, status=Job.Status.SCHEDULED,
                              not_before=timezone.now() + timezone.timedelta(seconds=20))
    for job in (queued, soon):  # both sent, their markers say so
        with queue_markers.sending(job.id):
            pass
    later = Job.objects.create(kind="students_by_age", owner=alice, status=Job.Status.SCHEDULED,
                               not_before=timezone.now() + timezone.timedelta(hours=2))
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda job, countdown=None: sent.append(job.id))
    assert services.recover_lost_jobs() == []  # the same server: its markers are trusted
    redis_client.set(redis_server_key(), "the-old-master")
    assert set(services.recover_lost_jobs()) == {queued.id, soon.id}
    assert later.id not in sent
    assert services.recover_lost_jobs() == []  # once
    for job in (queued, soon):
        queue_markers.clear(job.id)


def test_an_ended_job_leaves_no_queue_marker(alice, redis_client):
    """A marker written for a message that never arrives (sent during a failover to the old
    master) outlived the job that another delivery ended, for hours: the chaos soak found one.
    Ending a job drops it."""
    from basic.jobs import transitions

    job = Job.objects.create(kind="students_by_age", owner=alice)
    with queue_markers.sending(job.id):
        pass
    assert marker(redis_client, job.id) == queue_markers.QUEUED
    assert transitions.cancel(job)
    assert marker(redis_client, job.id) is None


def test_a_second_look_a_requeue_period_after_the_change_sends_what_still_waits(alice, monkeypatch, redis_client,
                                                                                 settings):
    """After the first sweep saw the new server, a sender's broker connection can still reach the
    old one: its message is lost there while its `queued` marker lands on the new server, where the
    first look already passed. One requeue period later, one sweep looks again."""
    from basic.core.keys import recheck_key, redis_server_key

    settings.JOB_REQUEUE_AFTER_SECONDS = 30
    services.recover_lost_jobs()  # the sweep has seen this server
    redis_client.set(redis_server_key(), "the-old-master")
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda job, countdown=None: sent.append(job.id))
    services.recover_lost_jobs()  # the first look: nothing waits yet
    stranded = Job.objects.create(kind="students_by_age", owner=alice)
    with queue_markers.sending(stranded.id):
        pass  # its message went to the old master; its marker says queued
    assert services.recover_lost_jobs() == []  # the marker is trusted until the second look
    clock = [time.time()]
    monkeypatch.setattr(queue_markers.time, "time", lambda: clock[0])
    clock[0] += 29
    assert services.recover_lost_jobs() == []
    clock[0] += 2
    assert services.recover_lost_jobs() == [stranded.id]
    assert sent == [stranded.id]
    assert services.recover_lost_jobs() == []  # once
    assert not redis_client.exists(recheck_key())
    queue_markers.clear(stranded.id)


def _take_message(redis_client, job_id) -> dict:
    """The job's message, taken out of whichever priority list of its queue holds it."""
    for key in redis_client.keys("default*"):
        for raw in redis_client.lrange(key, 0, -1):
            message = json.loads(raw)
            if message["headers"]["id"] == str(job_id):
                redis_client.lrem(key, 1, raw)
                return message
    raise AssertionError(f"no message for job {job_id}")


def test_enqueue_writes_the_marker_with_the_message_in_one_round_trip(alice, redis_client, settings, monkeypatch):
    settings.QUEUE_MARKERS_WITH_MESSAGE = True  # QUEUE_MARKERS_WITH_MESSAGE=1, and the test Redis is the broker
    monkeypatch.setattr(queue_markers, "sending", None)  # the two writes around the send are not used
    commands = []
    real_execute = type(redis_client).execute_command

    def counted(self, *args, **options):
        commands.append(args[0])
        return real_execute(self, *args, **options)

    first, job = (Job.objects.create(kind="students_by_age", owner=alice) for _ in range(2))
    services.enqueue(first)  # the broker's connection made, and the script loaded
    monkeypatch.setattr(type(redis_client), "execute_command", counted)
    services.enqueue(job)
    monkeypatch.undo()
    assert commands == ["EVALSHA"]
    assert _take_message(redis_client, first.id)
    assert marker(redis_client, job.id) == queue_markers.QUEUED
    assert redis_client.ttl(queued_key(job.id)) > settings.JOB_REQUEUE_AFTER_SECONDS
    message = _take_message(redis_client, job.id)
    assert message["headers"]["task"] == services.RUN_JOB_TASK
    assert not any(name.startswith("x-set") for name in message["headers"])
    for each in (first, job):
        queue_markers.clear(each.id)


def test_with_a_broker_of_its_own_the_send_is_wrapped_in_two_writes(alice, redis_client, settings, monkeypatch):
    settings.QUEUE_MARKERS_WITH_MESSAGE = False
    job = Job.objects.create(kind="students_by_age", owner=alice)
    seen_during_the_send = []
    real_send = current_app.send_task

    def send(*args, **kwargs):
        seen_during_the_send.append((marker(redis_client, job.id), kwargs.get("headers")))
        return real_send(*args, **kwargs)

    monkeypatch.setattr(current_app, "send_task", send)
    services.enqueue(job)
    assert seen_during_the_send == [(queue_markers.SENDING, None)]
    assert marker(redis_client, job.id) == queue_markers.QUEUED
    _take_message(redis_client, job.id)
    queue_markers.clear(job.id)


def test_a_marker_written_while_the_job_ran_is_gone_once_its_run_ended_it(alice, redis_client, monkeypatch):
    """A duplicate message sent during the run (a failover's resend) leaves its marker; the run that
    ends the job drops it with its lease's release."""
    from basic.jobs.runner import run_job

    job = Job.objects.create(kind="students_by_age", owner=alice)
    real_check = JobLease.renew_unless_checked_within

    def duplicate_sent_meanwhile(self, seconds):
        redis_client.set(queued_key(job.id), queue_markers.QUEUED)
        return real_check(self, seconds)

    monkeypatch.setattr(JobLease, "renew_unless_checked_within", duplicate_sent_meanwhile)
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "done"
    assert marker(redis_client, job.id) is None
    assert not redis_client.exists(JobLease(job.id).key)
