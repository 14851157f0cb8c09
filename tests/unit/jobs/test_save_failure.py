"""A finished job whose end the database refuses ends failed (issue 22, item 2): it used to stay
running, so the recovery ran it again and again (6 times a minute) and DELETE answered 409. And text
a database refuses (NUL, lone surrogates) never gets that far: the lifecycle cleans what it stores.

Run in-process with the tiny `test_steps` kind, its body swapped per test, on the session's
database: SQLite, and PostgreSQL in the second pass of `make test` (tests/unit is in PG_TESTS)."""
import dataclasses
import logging

import pytest
from django.db import DatabaseError, DataError, connection, transaction

from basic.jobs import files, registry, services, transitions
from basic.jobs.event_store import read_events_sync
from basic.jobs.runner import NOT_SAVED, run_job
from basic.models import Job
from tests import job_kinds
from tests.unit.core.test_outside_text import unsafe_characters

pytestmark = pytest.mark.django_db

HOSTILE = "A\x00B \x1b]0;owned\x07\x1b[2J \ud800 \u202eexe"


@pytest.fixture
def kind_running(monkeypatch):
    """Make `test_steps` run `body` instead of its own."""
    def swap(body):
        kind = registry.get_kind(job_kinds.NAME)
        monkeypatch.setitem(registry._kinds, job_kinds.NAME, dataclasses.replace(kind, run=body))
    return swap


@pytest.fixture
def start(alice, queued):
    def make() -> Job:
        kind = registry.get_kind(job_kinds.NAME)
        params = kind.params(data={"steps": 2})
        params.is_valid(raise_exception=True)
        return services.job_start(kind=kind, owner=alice, data=params.validated_data)
    return make


def types(job: Job) -> list[str]:
    return [event["type"] for event in read_events_sync(job.id)]


def assert_ended_failed_for_good(job: Job, settings) -> None:
    """Failed with the reason, one terminal event, no output, not picked up again, deletable."""
    job.refresh_from_db()
    assert (job.status, job.error, job.message) == ("failed", NOT_SAVED, "Failed")
    assert types(job)[-1] == "job.failed" and "job.done" not in types(job)
    assert [e for e in types(job) if e in ("job.done", "job.failed", "job.cancelled")] == ["job.failed"]
    assert not files.job_dir(job.id).exists() or not any(files.job_dir(job.id).iterdir())
    settings.JOB_LEASE_SECONDS = 0  # a running job would count as lost at once
    assert job.id not in services.recover_lost_jobs()
    assert services.job_delete(job=job) is True


def test_a_result_the_database_refuses_ends_the_job_failed_not_running(start, kind_running, settings, caplog):
    """A real refused save: NaN is no JSON for PostgreSQL (DataError) nor for SQLite's JSON_VALID
    check (IntegrityError)."""
    def body(ctx):
        ctx.output("page.txt").write_text("written")
        return {"score": float("nan")}
    kind_running(body)
    job = start()
    run_job(job.id)
    assert_ended_failed_for_good(job, settings)
    assert "saving its end failed" in caplog.text and str(job.id) in caplog.text  # logged with the cause


def test_any_error_saving_the_end_ends_the_job_failed(start, settings, monkeypatch):
    real_finish = transitions.finish
    refused = []

    def finish(job, status, **fields):
        if status == Job.Status.DONE and not refused:
            refused.append(status)
            raise DataError("PostgreSQL text fields cannot contain NUL (0x00) bytes")
        return real_finish(job, status, **fields)

    monkeypatch.setattr(transitions, "finish", finish)
    job = start()
    run_job(job.id)
    assert refused == ["done"]
    assert_ended_failed_for_good(job, settings)


def test_outputs_that_cannot_be_moved_into_place_end_the_job_failed(start, settings, monkeypatch):
    from basic.jobs.context import JobContext

    def commit_outputs(self):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(JobContext, "commit_outputs", commit_outputs)
    job = start()
    run_job(job.id)
    assert_ended_failed_for_good(job, settings)


def test_a_database_that_is_down_leaves_the_job_to_the_recovery(start, monkeypatch):
    """Not every failure is the job's: when even the failed state cannot be saved, the job stays
    active and the recovery sends it again once the database is back."""
    def finish(job, status, **fields):
        raise DatabaseError("server closed the connection unexpectedly")

    monkeypatch.setattr(transitions, "finish", finish)
    job = start()
    with pytest.raises(DatabaseError):
        run_job(job.id)
    job.refresh_from_db()
    assert job.status == "running"


def test_text_a_database_refuses_is_stored_clean_and_the_job_ends_done(start, kind_running):
    def body(ctx):
        ctx.progress(1, 2, f"Reading {HOSTILE}", force=True)
        ctx.summary = f"Got {HOSTILE}"
        return {"title": HOSTILE, f"key{HOSTILE}": [HOSTILE, {"deep": "\x00"}]}
    kind_running(body)
    job = start()
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "done", job.error
    assert "\x00" not in str(job.result) and "\ud800" not in str(job.result)
    assert job.result["title"] == HOSTILE.replace("\x00", "\ufffd").replace("\ud800", "\ufffd")
    assert job.message.startswith("Got A\ufffdB") and unsafe_characters(job.message) == []
    progress = [e for e in read_events_sync(job.id) if e["type"] == "job.progress"]
    assert progress and all(unsafe_characters(e["message"]) == [] for e in progress)


def test_a_failure_reason_quoting_outside_text_is_stored_clean(start, kind_running):
    def body(ctx):
        raise job_kinds.JobFailed(f"The page said {HOSTILE}\nsecond line")
    kind_running(body)
    job = start()
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "failed" and job.error.startswith("The page said A\ufffdB")
    assert job.error.endswith("\nsecond line")  # a reason may have lines
    assert [c for c in unsafe_characters(job.error) if c != "\n"] == []
    assert read_events_sync(job.id)[-1]["error"] == job.error


@pytest.mark.skipif(connection.vendor != "postgresql", reason="what PostgreSQL refuses (SQLite takes it)")
def test_postgresql_does_refuse_what_the_lifecycle_cleans(alice):
    """Why the cleaning: without it, these are the saves that failed."""
    job = Job.objects.create(kind=job_kinds.NAME, owner=alice)
    for fields in ({"message": "a\x00b"}, {"result": {"title": "a\x00b"}}, {"error": "a\x00b"}):
        with pytest.raises((DataError, ValueError)), transaction.atomic():
            Job.objects.filter(id=job.id).update(**fields)


def test_a_refused_save_inside_a_transaction_leaves_it_usable(start, monkeypatch, caplog):
    """The finish has its own savepoint: after a refused update the caller's transaction (here the
    test's) still works, so the job can be ended failed in it."""
    job = start()
    Job.objects.filter(id=job.id).update(status=Job.Status.RUNNING)
    caplog.set_level(logging.INFO)
    with pytest.raises(Exception):  # noqa: B017 - whichever error the database gives
        transitions.finish(job, Job.Status.DONE, result={"score": float("nan")})
    assert transitions.fail(job, "after a refused save") is True
    job.refresh_from_db()
    assert job.status == "failed"
