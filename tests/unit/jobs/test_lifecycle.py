"""The lifecycle, once for every kind, with the tiny `test_steps` kind (tests/job_kinds.py) run
in-process on the real Redis: result, outputs, cancel, failure, crash, unknown kind, seq floor."""
import pytest

from basic.core.keys import seq_key, stream_key
from basic.core.redis_clients import sync_redis
from basic.jobs import files, services
from basic.jobs.context import JobContext
from basic.jobs.event_store import read_events_sync
from basic.jobs.registry import get_kind
from basic.jobs.runner import UNEXPECTED_ERROR, run_job
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db


@pytest.fixture
def start(alice, queued):
    def make(**params):
        kind = get_kind(job_kinds.NAME)
        validated = kind.params(data=params)
        validated.is_valid(raise_exception=True)
        return services.job_start(kind=kind, owner=alice, data=validated.validated_data)
    return make


def types(job):
    return [event["type"] for event in read_events_sync(job.id)]


def test_a_body_result_reaches_the_row_and_the_done_event_and_its_output_is_renamed_into_place(start):
    job = start(steps=3)
    run_job(job.id)
    job.refresh_from_db()
    assert (job.status, job.progress, job.message) == ("done", 100, "3 steps done")
    assert job.result == {"steps": 3} and job.output_name == "steps.txt"
    assert files.output_path(job.id, "steps.txt").read_text() == "step 1\nstep 2\nstep 3\n"
    assert sorted(p.name for p in files.job_dir(job.id).iterdir()) == ["steps.txt"]  # no temp left
    events = read_events_sync(job.id)
    assert [e["type"] for e in events] == ["job.started"] + ["job.progress"] * 3 + ["job.done"]
    assert [e["seq"] for e in events] == [1, 2, 3, 4, 5]
    assert events[-1]["result"] == {"steps": 3} and events[-1]["result_url"].endswith(f"/{job.id}/download/")
    assert job.last_seq == 5


def test_cancel_mid_run_leaves_no_output(start, monkeypatch):
    job = start(steps=5)
    real_progress = JobContext.progress

    def cancel_at_step_two(self, done, total, message="", **kwargs):
        if done == 2:
            services.job_cancel(job=Job.objects.get(id=job.id))
        real_progress(self, done, total, message, **kwargs)

    monkeypatch.setattr(JobContext, "progress", cancel_at_step_two)
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "cancelled" and job.result is None
    assert types(job)[-1] == "job.cancelled" and types(job).count("job.cancelled") == 1
    assert not files.job_dir(job.id).exists() or list(files.job_dir(job.id).iterdir()) == []


def test_a_crashing_body_ends_failed_with_a_reason_for_people_and_no_output(start, caplog):
    job = start(steps=3, crash_at=2)
    run_job(job.id)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", UNEXPECTED_ERROR)
    assert "secret internal detail" not in job.error
    assert "secret internal detail" in caplog.text  # ...but the log has it, with the job id
    assert str(job.id) in caplog.text
    assert types(job)[-1] == "job.failed" and types(job).count("job.failed") == 1
    assert list(files.job_dir(job.id).iterdir()) == []


def test_a_body_that_refuses_ends_failed_with_its_own_reason(start):
    job = start(steps=3, refuse_at=3)
    run_job(job.id)
    job.refresh_from_db()
    assert (job.status, job.error) == ("failed", "Step 3 was refused.")
    assert read_events_sync(job.id)[-1]["error"] == "Step 3 was refused."


def test_a_job_of_a_kind_this_server_does_not_know_fails_with_a_reason(alice):
    job = Job.objects.create(kind="retired_kind", owner=alice)
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "failed" and "retired_kind" in job.error


def test_seq_never_goes_backwards_when_redis_loses_the_jobs_counter_and_history(start, monkeypatch):
    job = start(steps=4)
    real_progress = JobContext.progress

    def forget_at_step_three(self, done, total, message="", **kwargs):
        if done == 3:  # as if Redis came back empty
            sync_redis().delete(seq_key(job.id), stream_key(job.id))
        real_progress(self, done, total, message, **kwargs)

    monkeypatch.setattr(JobContext, "progress", forget_at_step_three)
    run_job(job.id)
    seqs = [event["seq"] for event in read_events_sync(job.id)]
    assert seqs == [4, 5, 6], "events after the loss continue above the last seq the database kept"
    job.refresh_from_db()
    assert job.status == "done" and job.last_seq == 6


def test_the_registry_drives_the_model_choices():
    choices = dict(Job._meta.get_field("kind").choices)
    assert {"students_by_age", "thumbnails", "page_fetch", job_kinds.NAME} <= set(choices)
    assert choices["thumbnails"] == "Thumbnails"

