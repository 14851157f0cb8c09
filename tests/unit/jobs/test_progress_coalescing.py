"""Issue 19: a body may call `ctx.progress` for every row. A thousand fast steps cost a few row
writes, lease renewals and cancel checks, yet sockets see a smooth bar that ends at job.done, 100%,
with gapless seqs, and the row ends with the terminal event's seq. Counts are bounded by the time the
loop took (not timed: the bounds grow with it), so a slow machine cannot fail them."""
import time

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from basic.core.keys import seq_key
from basic.core.redis_clients import sync_redis
from basic.jobs import events, transitions
from basic.jobs.context import JobCancelled, JobContext
from basic.jobs.event_store import read_events_sync
from basic.jobs.leases import JobLease
from basic.models import Job

pytestmark = pytest.mark.django_db


def test_a_thousand_fast_steps_make_few_writes_and_a_smooth_bar_that_ends_done(running, monkeypatch, settings):
    settings.JOB_PROGRESS_MIN_INTERVAL, settings.JOB_CHECK_INTERVAL_SECONDS = 0.1, 0.1
    settings.JOB_PROGRESS_DB_INTERVAL_SECONDS = 1.0
    job, lease = running
    renewals = []
    real_renew = JobLease.renew
    monkeypatch.setattr(JobLease, "renew", lambda self: (renewals.append(1), real_renew(self))[1])
    ctx = JobContext(job, lease)
    began = time.monotonic()
    with CaptureQueriesContext(connection) as queries:
        for done in range(1, 1001):
            time.sleep(0.0003)  # at least 0.3 s in all: several intervals, so the bar must move
            ctx.progress(done, 1000, f"Step {done} of 1000")
    took = time.monotonic() - began
    sent = [e for e in read_events_sync(job.id) if e["type"] == events.JOB_PROGRESS]
    writes = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    reads = [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("SELECT")]
    ticks = took / 0.1  # how many check intervals the loop spanned
    assert 1 <= len(sent) <= ticks + 2
    assert len(writes) <= took / 1.0 + 2 + ticks / 30  # progress about once a second (+ heartbeats)
    assert len(renewals) <= len(sent) + ticks + 2  # was 1,000: one per step
    assert len(reads) <= len(sent) + ticks + 2  # the cancel checks: was 1,000
    assert transitions.finish(job, Job.Status.DONE, progress=100, message="Done", result={"steps": 1000})
    history = read_events_sync(job.id)
    assert [e["seq"] for e in history] == list(range(1, len(history) + 1))  # gapless
    assert history[-1]["type"] == events.JOB_DONE and history[-1]["progress"] == 100
    bar = [e["progress"] for e in history]
    assert bar == sorted(bar)  # never goes back
    job.refresh_from_db()
    assert (job.status, job.progress, job.last_seq) == ("done", 100, history[-1]["seq"])


def test_a_body_that_ends_within_the_first_interval_sends_no_progress_and_makes_no_round_trip(
        running, monkeypatch, settings):
    """The start has just sent job.started, taken the lease and found no cancel: a trivial job's
    steps cost nothing more, and its job.done carries the 100% (before: an event, a lease renewal and
    a cancel read per job, a third of a trivial job's worker CPU with the connection it opened)."""
    settings.JOB_PROGRESS_MIN_INTERVAL, settings.JOB_CHECK_INTERVAL_SECONDS = 60, 60
    job, lease = running
    renewals = []
    monkeypatch.setattr(JobLease, "renew", lambda self: renewals.append(1))
    ctx = JobContext(job, lease)
    with CaptureQueriesContext(connection) as queries:
        for done in range(1, 101):
            ctx.progress(done, 100, f"Step {done} of 100")
    assert (queries.captured_queries, renewals) == ([], [])
    assert [e["type"] for e in read_events_sync(job.id)] == [events.JOB_STARTED]
    assert transitions.finish(job, Job.Status.DONE, progress=100, message="Done", result={"steps": 100})
    assert [(e["type"], e["progress"]) for e in read_events_sync(job.id)][-1] == (events.JOB_DONE, 100)


def test_forced_steps_still_write_the_row_each_time(running, settings):
    settings.JOB_PROGRESS_DB_INTERVAL_SECONDS = 3600
    job, lease = running
    ctx = JobContext(job, lease)
    for done in (1, 2, 3):
        ctx.progress(done, 4, f"Step {done}", force=True)
        job.refresh_from_db()
        assert (job.progress, job.message) == (done * 25, f"Step {done}")


def test_a_cancel_is_noticed_within_the_check_interval_even_in_a_tight_loop(running, settings):
    settings.JOB_CHECK_INTERVAL_SECONDS = 0.05
    settings.JOB_PROGRESS_MIN_INTERVAL = 3600  # no event after the first: only the interval checks
    job, lease = running
    ctx = JobContext(job, lease)
    ctx.progress(0, 400, "Starting")
    Job.objects.filter(id=job.id).update(cancel_requested=True)
    with pytest.raises(JobCancelled):
        for done in range(1, 401):  # at least 0.4 s in all: several check intervals
            time.sleep(0.001)
            ctx.progress(done, 400, f"Step {done}")


def test_the_terminal_seq_is_written_with_the_status(running):
    job, _ = running
    with CaptureQueriesContext(connection) as queries:
        assert transitions.finish(job, Job.Status.DONE, progress=100, message="Done", result={})
    updates = [q for q in queries.captured_queries if q["sql"].lstrip().upper().startswith("UPDATE")]
    assert len(updates) == 1  # was two: the status, then the seq
    job.refresh_from_db()
    assert job.last_seq == read_events_sync(job.id)[-1]["seq"] == 2


def test_a_terminal_seq_above_the_expected_one_still_reaches_the_row(running):
    job, _ = running
    sync_redis().set(seq_key(job.id), 9)  # another process pushed events the run did not see
    assert transitions.cancel(job)
    job.refresh_from_db()
    assert job.last_seq == read_events_sync(job.id)[-1]["seq"] == 10
