import uuid

import pytest
from kombu.exceptions import OperationalError

from basic import services
from basic.event_store import read_events_sync
from basic.models import Job, Student
from basic.tasks import students_by_age_report

pytestmark = pytest.mark.django_db


@pytest.fixture
def queued(monkeypatch):
    """Record apply_async calls instead of queueing (no worker runs in these tests)."""
    calls = []
    monkeypatch.setattr(students_by_age_report, "apply_async", lambda *a, **kw: calls.append(kw))
    return calls


def test_trigger_answers_202_with_job_and_location(api, queued):
    response = api.post("/api/students/by-age-report/")
    assert response.status_code == 202
    body = response.json()
    assert set(body) >= {"id", "kind", "status", "progress", "created", "url", "events_url"}
    assert (body["kind"], body["status"], body["progress"]) == ("students_by_age", "queued", 0)
    assert response["Location"] == body["url"] == f"http://testserver/api/jobs/{body['id']}/"
    assert body["events_url"] == f"ws://testserver/ws/jobs/{body['id']}/"
    assert queued[0]["task_id"] == body["id"] and queued[0]["args"] == [body["id"]]


def test_trigger_on_get_is_not_allowed(api, queued):
    assert api.get("/api/students/by-age-report/").status_code == 405
    assert not queued


def test_broker_down_is_503_and_the_job_is_marked_failed(api, monkeypatch):
    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(students_by_age_report, "apply_async", down)
    response = api.post("/api/students/by-age-report/")
    assert response.status_code == 503
    assert "unreachable" in response.json()["detail"]
    job = Job.objects.get()
    assert job.status == "failed" and "unreachable" in job.error
    assert [e["type"] for e in read_events_sync(job.id)] == ["job.failed"]


def test_job_detail_and_download_lifecycle(api, queued, settings):
    Student.objects.create(name="Bo", age=9)
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    assert api.get(f"/api/jobs/{job_id}/download/").status_code == 409
    services.run_students_by_age_job(job_id=job_id)  # what the worker would do
    detail = api.get(f"/api/jobs/{job_id}/").json()
    assert (detail["status"], detail["progress"]) == ("done", 100)
    assert detail["result_url"].endswith(f"/api/jobs/{job_id}/download/")
    download = api.get(f"/api/jobs/{job_id}/download/")
    assert download.status_code == 200
    assert download["Content-Type"] == "text/csv"
    assert b"".join(download.streaming_content).decode().splitlines()[1].endswith(",Bo,9")
    types = [e["type"] for e in read_events_sync(job_id)]
    assert types[0] == "job.started" and types[-1] == "job.done" and types.count("job.done") == 1


def test_running_the_task_twice_is_idempotent(api, queued):
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    services.run_students_by_age_job(job_id=job_id)
    services.run_students_by_age_job(job_id=job_id)
    assert [e["type"] for e in read_events_sync(job_id)].count("job.done") == 1


def test_failed_task_ends_with_job_failed(api, queued, monkeypatch):
    job_id = api.post("/api/students/by-age-report/").json()["id"]

    def explode(*args, **kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(services, "write_students_by_age_report", explode)
    with pytest.raises(RuntimeError):
        services.run_students_by_age_job(job_id=job_id)
    job = Job.objects.get(id=job_id)
    assert job.status == "failed" and "disk full" in job.error
    events = read_events_sync(job_id)
    assert events[-1]["type"] == "job.failed" and "disk full" in events[-1]["error"]


def test_cancel_queued_job(api, queued):
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    response = api.post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code == 202
    assert response.json()["status"] == "cancelled"
    assert api.post(f"/api/jobs/{job_id}/cancel/").status_code == 409
    services.run_students_by_age_job(job_id=job_id)  # a worker that got it anyway does nothing
    assert [e["type"] for e in read_events_sync(job_id)] == ["job.cancelled"]


@pytest.mark.parametrize("path", ["/api/jobs/{}/", "/api/jobs/{}/download/"])
def test_unknown_or_malformed_job_is_404(api, path):
    assert api.get(path.format(uuid.uuid4())).status_code == 404
    assert api.get(path.format("nope")).status_code == 404
