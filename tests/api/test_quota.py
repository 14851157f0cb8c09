"""Each user's stored job output is capped (JOB_OUTPUT_QUOTA_MB): past it every start path is a 409
that says so; uploads and finished outputs count; `DELETE /api/jobs/{id}/` frees the space."""
import io

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from basic.core.keys import seq_key, stream_key
from basic.core.redis_clients import sync_redis
from basic.jobs import files, retention, schedules
from basic.jobs.event_store import read_events_sync
from basic.jobs.registry import get_kind
from basic.jobs.runner import run_job
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024
FULL = ("Your stored job output is 1.5 MB of your 1 MB quota; delete old jobs or wait for them to "
        "expire (after 7 days).")


@pytest.fixture(autouse=True)
def small_quota(settings, tmp_path):
    settings.JOB_OUTPUT_QUOTA_MB = 1
    settings.JOB_RETENTION_DAYS = 7
    settings.JOBS_DIR = tmp_path / "jobs"


def png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), (10, 120, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def stored_job(owner, size=int(1.5 * MIB), status="done"):
    job = Job.objects.create(kind=job_kinds.NAME, owner=owner, status=status, output_bytes=size)
    files.output_path(job.id, "steps.txt").parent.mkdir(parents=True)
    files.output_path(job.id, "steps.txt").write_bytes(b"x" * 100)
    return job


START_PATHS = {
    "jobs": lambda api: api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {"steps": 2}}, format="json"),
    "kind route": lambda api: api.post("/api/pages/", {"url": "https://example.com/"}, format="json"),
    "report alias": lambda api: api.post("/api/students/by-age-report/"),
    "upload": lambda api: api.post("/api/thumbnails/", {"image": SimpleUploadedFile("p.png", png())},
                                   format="multipart"),
}


@pytest.mark.parametrize("path", START_PATHS)
def test_past_the_quota_every_start_path_is_a_409_that_says_so(api, alice, queued, settings, path):
    assert START_PATHS[path](api).status_code == 202  # under the quota
    stored_job(alice)
    before = Job.objects.count()
    response = START_PATHS[path](api)
    assert response.status_code == 409, response.json()
    assert response.json() == {"detail": FULL}
    assert Job.objects.count() == before and len(queued) == 1
    assert len(list(settings.JOBS_DIR.iterdir())) == (2 if path == "upload" else 1), "no upload stored"


def test_only_the_owners_own_jobs_count(api, bob, queued):
    stored_job(bob, size=50 * MIB)
    assert START_PATHS["jobs"](api).status_code == 202
    assert retention.stored_output_bytes(bob) == 50 * MIB


def test_the_quota_is_reached_at_the_limit_not_one_byte_later(api, alice, queued):
    stored_job(alice, size=MIB - 1)
    assert START_PATHS["jobs"](api).status_code == 202
    stored_job(alice, size=1)
    response = START_PATHS["jobs"](api)
    assert response.status_code == 409 and response.json()["detail"].startswith(
        "Your stored job output is 1 MB of your 1 MB quota;")


def test_a_quota_of_zero_is_no_quota(api, alice, queued, settings):
    settings.JOB_OUTPUT_QUOTA_MB = 0
    stored_job(alice, size=10**12)
    assert START_PATHS["jobs"](api).status_code == 202


def test_without_retention_the_message_does_not_promise_expiry(api, alice, queued, settings):
    settings.JOB_RETENTION_DAYS = 0
    stored_job(alice, size=2 * MIB)
    assert START_PATHS["jobs"](api).json()["detail"] == (
        "Your stored job output is 2 MB of your 1 MB quota; delete old jobs or ask an administrator.")


def test_an_upload_counts_from_the_start_and_a_done_job_counts_all_it_keeps(api, alice, queued):
    image = png()
    upload = START_PATHS["upload"](api).json()
    assert upload["output_bytes"] == len(image) == Job.objects.get(id=upload["id"]).output_bytes
    job = START_PATHS["jobs"](api).json()
    assert job["output_bytes"] == 0
    run_job(job["id"])  # what the worker would do: steps.txt is "step 1\nstep 2\n"
    assert Job.objects.get(id=job["id"]).output_bytes == len("step 1\nstep 2\n")
    assert retention.stored_output_bytes(alice) == len(image) + 14


def test_deleting_a_finished_job_frees_its_space_and_removes_its_files_and_events(api, alice, queued):
    job_id = START_PATHS["jobs"](api).json()["id"]
    run_job(job_id)
    Job.objects.filter(id=job_id).update(output_bytes=2 * MIB)
    assert START_PATHS["jobs"](api).status_code == 409
    assert read_events_sync(job_id) and files.job_dir(job_id).exists()
    response = api.delete(f"/api/jobs/{job_id}/")
    assert response.status_code == 204
    assert api.get(f"/api/jobs/{job_id}/").status_code == 404
    assert not files.job_dir(job_id).exists()
    assert not sync_redis().exists(stream_key(job_id)) and not sync_redis().exists(seq_key(job_id))
    assert START_PATHS["jobs"](api).status_code == 202
    assert api.delete(f"/api/jobs/{job_id}/").status_code == 404  # gone


@pytest.mark.parametrize("status", ["queued", "running"])
def test_an_active_job_cannot_be_deleted(api, alice, status):
    job = stored_job(alice, status=status)
    response = api.delete(f"/api/jobs/{job.id}/")
    assert response.status_code == 409
    assert response.json() == {"detail": f"The job is {status}; cancel it first, then delete it once it has stopped."}
    assert Job.objects.filter(id=job.id).exists() and files.job_dir(job.id).exists()


@pytest.mark.parametrize("status", ["failed", "cancelled"])
def test_failed_and_cancelled_jobs_can_be_deleted(api, alice, status):
    job = stored_job(alice, status=status)
    assert api.delete(f"/api/jobs/{job.id}/").status_code == 204
    assert not Job.objects.filter(id=job.id).exists()


def test_only_the_owner_or_staff_may_delete(alice, bob, charlie, client_for, anon):
    job = stored_job(alice)
    assert anon.delete(f"/api/jobs/{job.id}/").status_code == 401
    assert client_for(bob).delete(f"/api/jobs/{job.id}/").status_code == 404  # not told it exists
    assert Job.objects.filter(id=job.id).exists()
    assert client_for(charlie).delete(f"/api/jobs/{job.id}/").status_code == 204
    assert not Job.objects.filter(id=job.id).exists() and not files.job_dir(job.id).exists()


def test_a_schedule_past_the_quota_fails_one_run_saying_why_then_skips(alice, queued, caplog):
    schedule = schedules.schedule_create(owner=alice, kind=get_kind(job_kinds.NAME), params={"steps": 2}, every=60)
    stored = stored_job(alice)
    job = schedules.run_schedule(schedule.pk)
    assert (job.status, job.error) == ("failed", FULL)
    assert read_events_sync(job.id)[-1]["error"] == FULL
    assert not queued
    assert schedules.run_schedule(schedule.pk) is None  # still full: skipped, no pile of failed jobs
    assert Job.objects.filter(status="failed").count() == 1
    assert "still at their output quota" in caplog.text
    assert retention.delete_job(stored)
    job = schedules.run_schedule(schedule.pk)
    assert job.status == "queued" and len(queued) == 1
