"""A database outage in the middle of a running body (the chaos soak's PostgreSQL restart) is not
the body's failure: `ctx.progress`'s own statements (the cancel check, the progress and heartbeat
writes) skip the step and try again at the next, so the job goes on and ends done. Before, the
cancel check's OperationalError stopped the body as an "unexpected error" (21 jobs in one soak run,
each then run again from scratch by the recovery, or ended failed if the database was back).

Run in-process with the `test_steps` kind on the session's database (SQLite, then PostgreSQL).
"""
import logging

import pytest
from django.db import InterfaceError, OperationalError, connection
from django.db.models.query import QuerySet

from basic.core import database_outages
from basic.jobs import registry, services
from basic.jobs.event_store import read_events_sync
from basic.jobs.runner import run_job
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db(transaction=True)  # the skipped statement closes the connection


def ends_a_job(sql: str, params) -> str | None:
    """The terminal status an UPDATE of a job's row sets, if it sets one: the statement as the
    database gets it, however the code built it (the ORM, or basic/core/prepared_query.py)."""
    if not sql.lstrip().upper().startswith("UPDATE") or "basic_job" not in sql:
        return None
    return next((param for param in params or () if param in ("done", "failed", "cancelled")), None)


@pytest.fixture
def start(alice, queued):
    def make(steps: int) -> Job:
        kind = registry.get_kind(job_kinds.NAME)
        params = kind.params(data={"steps": steps})
        params.is_valid(raise_exception=True)
        return services.job_start(kind=kind, owner=alice, data=params.validated_data)
    return make


@pytest.mark.parametrize("error", [OperationalError("terminating connection due to administrator command"),
                                   InterfaceError("the connection is closed")])
def test_a_database_blip_while_a_body_reports_progress_skips_the_step_and_the_job_ends_done(
        start, monkeypatch, caplog, error):
    job = start(steps=4)
    failures = {"exists": 1, "update": 1}  # the cancel check, then a progress write, fail once each
    real_exists, real_update = QuerySet.exists, QuerySet.update

    def failing(name, real):
        def statement(self, *args, **kwargs):
            if self.model is Job and failures[name] and real_exists(Job.objects.filter(id=job.id, status="running")):
                failures[name] -= 1
                raise error
            return real(self, *args, **kwargs)
        return statement

    monkeypatch.setattr(database_outages.SKIPPED, "_quiet_until", 0.0)  # its warning once per 10 s, across tests
    monkeypatch.setattr(QuerySet, "exists", failing("exists", real_exists))
    monkeypatch.setattr(QuerySet, "update", failing("update", real_update))
    with caplog.at_level(logging.WARNING):
        run_job(job.id)
    assert failures == {"exists": 0, "update": 0}  # both outages happened mid-run
    job.refresh_from_db()
    assert (job.status, job.progress, job.result) == ("done", 100, {"steps": 4})
    kinds = [event["type"] for event in read_events_sync(job.id)]
    assert kinds[0] == "job.started" and kinds[-1] == "job.done" and kinds.count("job.done") == 1
    assert "database is unreachable" in caplog.text and "failed" not in caplog.text.replace("job.failed", "")


def test_a_database_blip_on_a_batch_floor_write_skips_it_and_the_member_and_batch_end_done(
        alice, queued, monkeypatch, caplog):
    """A batch member's progress also writes its batch's aggregate floor; the soak's second
    PostgreSQL restart stopped a member there."""
    from basic.jobs import batches
    from basic.models import Batch

    kind = registry.get_kind(job_kinds.NAME)
    params = kind.params(data={"steps": 4})
    params.is_valid(raise_exception=True)
    batch = batches.batch_start(owner=alice, members=[batches.MemberRequest(kind=kind, data=params.validated_data)])
    member = batches.members_of(batch)[0]
    failures = {"floor": 1}
    real_update = QuerySet.update

    def update(self, **fields):
        if self.model is Batch and "last_progress" in fields and failures["floor"] and fields["last_progress"] < 100:
            failures["floor"] -= 1
            raise OperationalError("terminating connection due to administrator command")
        return real_update(self, **fields)

    monkeypatch.setattr(database_outages.SKIPPED, "_quiet_until", 0.0)
    monkeypatch.setattr(QuerySet, "update", update)
    with caplog.at_level(logging.WARNING):
        run_job(member.id)
    assert failures == {"floor": 0}
    member.refresh_from_db()
    batch.refresh_from_db()
    assert (member.status, batch.status) == ("done", "done")
    assert "database is unreachable" in caplog.text


def test_a_database_outage_at_a_runs_start_or_end_is_one_line_and_the_job_runs_again(
        start, monkeypatch, caplog):
    """The worker's task, not the body: the job's row read (its start) and its end meet the outage.
    The task says so in one warning line every 10 s, with no traceback, and leaves the job for the
    recovery sweep; run again once the database is back, it ends done exactly once."""
    from basic.jobs import runner, tasks

    first, second = start(steps=2), start(steps=2)
    monkeypatch.setattr(tasks.STOPPED_BY_OUTAGE, "_quiet_until", 0.0)
    down = OperationalError("connection to server failed: Connection refused")

    def unreachable(*args, **kwargs):
        raise down

    with monkeypatch.context() as outage, caplog.at_level(logging.WARNING):
        outage.setattr(runner.JOB_BY_ID, "get", unreachable)
        tasks.run_job(str(first.id))  # no exception out of the task: Celery would log a traceback
        tasks.run_job(str(second.id))
    lines = [record for record in caplog.records if record.name == "basic.jobs.tasks"]
    assert len(lines) == 1 and "recovery sweep" in lines[0].getMessage() and lines[0].exc_info is None
    assert Job.objects.get(id=first.id).status == "queued"  # untouched: sent again by the sweep

    def refused_at_the_end(execute, sql, params, many, context):
        if ends_a_job(sql, params):  # the database goes away once the job is running, as the body ends
            raise down
        return execute(sql, params, many, context)

    with monkeypatch.context() as outage, caplog.at_level(logging.WARNING), \
            connection.execute_wrapper(refused_at_the_end):
        outage.setattr(tasks.STOPPED_BY_OUTAGE, "_quiet_until", 0.0)
        caplog.clear()
        tasks.run_job(str(first.id))
    # Not ended failed as a refused save would be: left running (its lease released) for the sweep.
    assert Job.objects.get(id=first.id).status == "running"
    assert not [record for record in caplog.records if record.exc_info], "no traceback for an outage"

    tasks.run_job(str(first.id))  # the recovery's delivery, the database back
    first.refresh_from_db()
    assert (first.status, first.progress) == ("done", 100)
    assert [event["type"] for event in read_events_sync(first.id)].count("job.done") == 1


def test_a_bad_statement_at_a_runs_end_fails_the_job_once_and_is_not_waited_out(start, monkeypatch):
    """A statement the database refuses (here a column that does not exist, as after a missed
    migration) is a bug, not an outage, even where SQLite calls it OperationalError: the job ends
    failed as a save that could not be made, instead of staying running for the recovery to run it
    again and again."""
    from basic.jobs import runner, tasks

    job = start(steps=2)
    refused = {"done": 1}

    def refused_at_the_end(execute, sql, params, many, context):
        if ends_a_job(sql, params) == "done" and refused["done"]:
            refused["done"] -= 1
            return execute("UPDATE basic_job SET no_such_column = 1", (), many, context)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(refused_at_the_end):
        tasks.run_job(str(job.id))
    assert refused == {"done": 0}
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", runner.NOT_SAVED)
    kinds = [event["type"] for event in read_events_sync(job.id)]
    assert kinds.count("job.failed") == 1 and "job.done" not in kinds
