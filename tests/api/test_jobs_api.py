import uuid

import pytest
from kombu.exceptions import OperationalError

from basic.jobs.event_store import read_events_sync
from basic.jobs.runner import UNEXPECTED_ERROR, run_job
from basic.kinds import students_by_age
from basic.models import Job, Student

pytestmark = pytest.mark.django_db


def test_trigger_answers_202_with_job_and_location(api, queued):
    response = api.post("/api/students/by-age-report/")
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= {"id", "kind", "status", "progress", "created", "url", "events_url", "params", "result"}
    assert (body["kind"], body["status"], body["progress"]) == ("students_by_age", "queued", 0)
    assert response["Location"] == body["url"] == f"http://testserver/api/jobs/{body['id']}/"
    assert body["events_url"] == f"ws://testserver/ws/jobs/{body['id']}/"
    assert queued[0]["name"] == "basic.run_job"
    assert queued[0]["task_id"] == body["id"] and queued[0]["args"] == [body["id"]]


def test_trigger_on_get_is_not_allowed(api, queued):
    assert api.get("/api/students/by-age-report/").status_code == 405
    assert not queued


def test_broker_down_is_503_and_the_job_is_marked_failed(api, monkeypatch):
    from app.celery import app

    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(app, "send_task", down)
    response = api.post("/api/students/by-age-report/")
    assert response.status_code == 503
    detail = response.json()["detail"]
    assert "unreachable" in detail and "127.0.0.1" not in detail  # what to do, not where it failed
    job = Job.objects.get()
    assert job.status == "failed" and "unreachable" in job.error and "111" not in job.error
    assert [e["type"] for e in read_events_sync(job.id)] == ["job.failed"]


def test_job_detail_and_download_lifecycle(api, alice, queued, settings):
    Student.objects.create(owner=alice, name="Bo", age=9)
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    assert api.get(f"/api/jobs/{job_id}/download/").status_code == 409
    run_job(job_id)  # what the worker would do
    detail = api.get(f"/api/jobs/{job_id}/").json()
    assert (detail["status"], detail["progress"]) == ("done", 100)
    assert detail["result_url"].endswith(f"/api/jobs/{job_id}/download/")
    download = api.get(f"/api/jobs/{job_id}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    assert download["Content-Disposition"] == f'attachment; filename="students-by-age-{job_id}.csv"'
    assert b"".join(download.streaming_content).decode().splitlines()[1].endswith(',"Bo",9')
    types = [e["type"] for e in read_events_sync(job_id)]
    assert types[0] == "job.started" and types[-1] == "job.done" and types.count("job.done") == 1


def test_running_the_task_twice_is_idempotent(api, queued):
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    run_job(job_id)
    run_job(job_id)
    assert [e["type"] for e in read_events_sync(job_id)].count("job.done") == 1


def test_failed_task_ends_with_job_failed(api, queued, monkeypatch):
    job_id = api.post("/api/students/by-age-report/").json()["id"]

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(students_by_age, "write_students_by_age", explode)
    run_job(job_id)
    job = Job.objects.get(id=job_id)
    # The user learns it failed and what to do; the exception's text stays in the log.
    assert job.status == "failed" and job.error == UNEXPECTED_ERROR
    events = read_events_sync(job_id)
    assert events[-1]["type"] == "job.failed" and events[-1]["error"] == UNEXPECTED_ERROR


def test_cancel_queued_job(api, queued):
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    response = api.post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert api.post(f"/api/jobs/{job_id}/cancel/").status_code == 409
    run_job(job_id)  # a worker that got it anyway does nothing
    assert [e["type"] for e in read_events_sync(job_id)] == ["job.cancelled"]


@pytest.mark.parametrize("path", ["/api/jobs/{}/", "/api/jobs/{}/download/"])
def test_unknown_or_malformed_job_is_404(api, path):
    assert api.get(path.format(uuid.uuid4())).status_code == 404
    assert api.get(path.format("nope")).status_code == 404
