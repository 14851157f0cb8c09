"""What every trigger takes beside a kind's parameters (issue 20): `priority` within the caller's
allowance, and a delayed start (`run_at` or `delay_seconds`) that makes the job `scheduled`."""
import pytest
from django.utils import timezone

from basic.jobs import services
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db


def start(api, **options):
    return api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {"steps": 1}, **options}, format="json")


def test_a_priority_goes_with_the_job_and_its_message(api, queued):
    response = start(api, priority=6)
    assert response.status_code == 202, response.json()
    assert Job.objects.get(id=response.json()["id"]).priority == 6
    assert queued[0]["priority"] == services.celery_priority(6) == 3  # Redis serves low numbers first


def test_without_one_a_job_has_its_kinds_priority(api, queued):
    assert Job.objects.get(id=start(api).json()["id"]).priority == 5
    assert queued[0]["priority"] == 4


def test_priority_above_the_users_allowance_is_refused_but_staff_may(api, client_for, queued, settings):
    settings.JOB_PRIORITY_MAX_USER = 6
    refused = start(api, priority=9)
    assert refused.status_code == 400 and "at most 6" in str(refused.json()["priority"])
    assert not queued and not Job.objects.exists()
    from tests.conftest import _user

    assert start(client_for(_user("boss", staff=True)), priority=9).status_code == 202


@pytest.mark.parametrize("options, field", [
    ({"priority": 10}, "priority"), ({"priority": -1}, "priority"), ({"priority": "high"}, "priority"),
    ({"delay_seconds": -5}, "delay_seconds"), ({"delay_seconds": 10**9}, "delay_seconds"),
    ({"run_at": "tomorrow"}, "run_at"), ({"run_at": "2001-01-01T00:00:00Z"}, "run_at"),
    ({"run_at": "2999-01-01T00:00:00Z"}, "run_at"),
    ({"run_at": "2999-01-01T00:00:00Z", "delay_seconds": 5}, "run_at"),
])
def test_bad_options_are_a_400_naming_the_option(api, queued, options, field):
    response = start(api, **options)
    assert response.status_code == 400, response.json()
    assert field in str(response.json())
    assert not queued and not Job.objects.exists()


def test_a_delayed_start_far_ahead_is_scheduled_and_sent_later_by_the_sweep(api, queued):
    response = start(api, delay_seconds=3600)
    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "scheduled" and body["not_before"]
    assert not queued  # sent by a worker's sweep once it is due within a minute
    job = Job.objects.get(id=body["id"])
    assert 3590 < (job.not_before - timezone.now()).total_seconds() <= 3600


def test_a_delayed_start_within_a_minute_is_sent_at_once_with_its_countdown(api, queued):
    run_at = (timezone.now() + timezone.timedelta(seconds=30)).isoformat()
    response = api.post(f"/api/jobs/?run_at={run_at.replace('+', '%2B')}",
                        {"kind": job_kinds.NAME, "params": {"steps": 1}}, format="json")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "scheduled"
    assert 25 < queued[0]["countdown"] <= 30


def test_a_scheduled_job_can_be_cancelled_before_it_starts(api, queued):
    job_id = start(api, delay_seconds=3600).json()["id"]
    response = api.post(f"/api/jobs/{job_id}/cancel/")
    assert response.status_code in (200, 202), response.json()
    assert Job.objects.get(id=job_id).status == "cancelled"


def test_the_same_names_work_on_a_kinds_own_route_and_the_report_alias(api, queued):
    page = api.post("/api/pages/?priority=2", {"url": "https://example.com/", "delay_seconds": 120}, format="json")
    assert page.status_code == 202, page.json()
    job = Job.objects.get(id=page.json()["id"])
    assert (job.priority, job.status, job.params) == (2, "scheduled", {"url": "https://example.com/", "refresh": False})
    report = api.post("/api/students/by-age-report/?priority=1")
    assert report.status_code == 202 and Job.objects.get(id=report.json()["id"]).priority == 1


def test_an_option_given_twice_differently_is_refused(api, queued):
    response = api.post("/api/jobs/?priority=2", {"kind": job_kinds.NAME, "priority": 3}, format="json")
    assert response.status_code == 400 and "priority" in response.json()
