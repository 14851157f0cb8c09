"""Schedules start work under the same per-user limits as REST starts (issue 22):

- each scheduled run takes one start of its owner's `job_trigger` budget (JOB_TRIGGER_RATE), the
  one the REST triggers' throttle takes from (`basic.core.rate_limit.take`); over it the run is not
  started but recorded once as a failed job saying why, then skipped until starts are allowed again;
- SCHEDULES_MAX_PER_USER and STUDENTS_MAX are checked in the transaction that inserts, after locking
  the owner's row (parallel requests: tests/integration/test_schedules_race.py)."""
import pytest

from basic.core import rate_limit
from basic.jobs import schedules
from basic.jobs.registry import get_kind
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db


@pytest.fixture
def trigger_rate(settings, monkeypatch):
    """Set JOB_TRIGGER_RATE (the stock DRF throttle class reads its own copy of the rates too)."""
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    def set_rate(rate: str) -> None:
        rates = {**api_settings.DEFAULT_THROTTLE_RATES, "job_trigger": rate}
        settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}
        monkeypatch.setattr(ScopedRateThrottle, "THROTTLE_RATES", rates)
    return set_rate


@pytest.fixture
def clock(monkeypatch):
    """rate_limit's clock, moved by hand."""
    now = [1_000_000.0]
    monkeypatch.setattr(rate_limit, "clock", lambda: now[0])
    return now


def every_ten_seconds(owner, steps: int = 1):
    return schedules.schedule_create(owner=owner, kind=get_kind(job_kinds.NAME), params={"steps": steps}, every=10)


def test_scheduled_runs_and_rest_starts_share_one_budget(alice, bob, client_for, queued, trigger_rate, clock):
    trigger_rate("3/min")
    schedule = every_ten_seconds(alice)
    api = client_for(alice)
    assert api.post("/api/students/by-age-report/").status_code == 202
    assert schedules.run_schedule(schedule.pk).status == "queued"
    assert api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {}}, format="json").status_code == 202
    refused = schedules.run_schedule(schedule.pk)  # the 4th start in a minute
    assert refused.status == "failed" and refused.error.startswith("Not started: you started as many jobs")
    assert "3 a minute" in refused.error and f"schedule {schedule.pk}" in refused.error
    assert len(queued) == 3  # nothing was queued for the refused run
    # The owner sees it: in their job list, and as the schedule's last job.
    listed = api.get("/api/jobs/", {"status": "failed"}).json()["results"]
    assert [job["error"] for job in listed] == [refused.error]
    assert api.get(f"/api/schedules/{schedule.pk}/").json()["last_job"]["id"] == str(refused.id)
    # REST is refused too (one budget); bob's is his own.
    over = api.post("/api/students/by-age-report/")
    assert over.status_code == 429 and int(over["Retry-After"]) > 0
    assert client_for(bob).post("/api/students/by-age-report/").status_code == 202


def test_over_budget_runs_fail_once_then_are_skipped_until_starts_are_allowed(alice, queued, trigger_rate, clock,
                                                                            caplog):
    trigger_rate("2/min")
    schedule = every_ten_seconds(alice)
    assert [schedules.run_schedule(schedule.pk).status for _ in range(2)] == ["queued", "queued"]
    assert schedules.run_schedule(schedule.pk).status == "failed"
    for _ in range(5):
        clock[0] += 10
        assert schedules.run_schedule(schedule.pk) is None  # no pile of failed jobs
    assert Job.objects.filter(status="failed").count() == 1
    assert "still over their start budget" in caplog.text
    clock[0] += 60  # the window has passed
    assert schedules.run_schedule(schedule.pk).status == "queued"
    assert len(queued) == 3


def test_many_schedules_start_no_more_than_the_trigger_limit(alice, queued, trigger_rate, clock):
    """The attack: 48 schedules every 10 s made ~270 jobs a minute against a 30/min limit."""
    trigger_rate("30/min")
    many = [every_ten_seconds(alice) for _ in range(48)]

    def one_minute_of_beat() -> tuple[int, int]:
        for _tick in range(6):
            for schedule in many:
                schedules.run_schedule(schedule.pk)
            clock[0] += 10
        return (Job.objects.filter(owner=alice).exclude(status="failed").count(),
                Job.objects.filter(owner=alice, status="failed").count())

    started, refused = one_minute_of_beat()
    assert started == len(queued) == 30
    assert refused == 48  # each schedule said once why it did not start; then its runs were skipped
    more_started, more_refused = one_minute_of_beat()
    assert more_started - started == 30
    # A schedule is refused again only after a run of it started: never more refusals than starts.
    assert more_refused - refused <= more_started - started


def test_a_rest_throttle_fills_the_budget_for_schedules_too(alice, client_for, queued, trigger_rate, clock):
    trigger_rate("2/min")
    api = client_for(alice)
    assert [api.post("/api/students/by-age-report/").status_code for _ in range(3)] == [202, 202, 429]
    schedule = every_ten_seconds(alice)
    assert schedules.run_schedule(schedule.pk).status == "failed"
    assert len(queued) == 2


def test_the_schedule_cap_is_counted_where_the_schedule_is_inserted(alice, bob, settings):
    kind = get_kind(job_kinds.NAME)
    for _ in range(2):
        schedules.schedule_create(owner=alice, kind=kind, params={}, every=60, limit=2)
    with pytest.raises(schedules.TooManySchedules, match="You have 2 schedules"):
        schedules.schedule_create(owner=alice, kind=kind, params={}, every=60, limit=2)
    assert schedules.schedule_create(owner=bob, kind=kind, params={}, every=60, limit=2).owner == bob
    # Staff in the admin pass no limit.
    assert schedules.schedule_create(owner=alice, kind=kind, params={}, every=60).owner == alice


def test_the_shared_budget_is_drfs_own_window(alice, trigger_rate, clock):
    """A view still on DRF's stock ScopedRateThrottle counts in the same budget (same key, same list)."""
    from django.core.cache import cache

    trigger_rate("2/min")
    assert rate_limit.take("job_trigger", alice.pk).allowed
    assert cache.get(f"throttle_job_trigger_{alice.pk}") == [clock[0]]
    assert rate_limit.take("job_trigger", alice.pk).allowed
    refused = rate_limit.take("job_trigger", alice.pk)
    assert not refused.allowed and refused.retry_after == 60 and refused.describe() == "2 a minute"
    clock[0] += 60.5
    assert rate_limit.take("job_trigger", alice.pk).allowed
