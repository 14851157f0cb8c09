"""`/api/schedules/`: CRUD, who sees what (alice owns, bob must not see, charlie is staff), 400s
naming the field, the periodic task beat reads kept in step, and a run starting an ordinary job."""
from datetime import timedelta

import pytest
from django.utils import timezone
from django_celery_beat.models import PeriodicTask

from basic.jobs import schedules
from basic.models import Job, Schedule
from tests import job_kinds

pytestmark = pytest.mark.django_db

EVERY = {"kind": job_kinds.NAME, "params": {"steps": 2}, "every": 10}


def create(client, **changes) -> dict:
    response = client.post("/api/schedules/", {**EVERY, **changes}, format="json")
    assert response.status_code == 201, response.json()
    return response.json()


def test_a_schedule_every_n_seconds_is_a_periodic_task_beat_runs(api):
    body = create(api)
    assert {k: body[k] for k in ("kind", "params", "every", "crontab", "enabled", "owner", "last_job")} == {
        "kind": job_kinds.NAME, "params": {"steps": 2}, "every": 10, "crontab": None, "enabled": True,
        "owner": "alice", "last_job": None}
    next_run = timezone.datetime.fromisoformat(body["next_run"])
    assert timezone.now() < next_run <= timezone.now() + timedelta(seconds=11)
    task = Schedule.objects.get(id=body["id"]).periodic_task
    assert (task.task, task.args, task.enabled) == ("basic.run_schedule", f"[{body['id']}]", True)
    assert task.interval.every == 10 and task.interval.period == "seconds" and task.crontab is None
    assert task.expire_seconds == 10  # a run no worker took before the next is due is dropped


def test_a_crontab_schedule(api):
    body = create(api, every=None, crontab="*/5 1-3 * * mon-fri")
    assert (body["crontab"], body["every"]) == ("*/5 1-3 * * mon-fri", None)
    cron = PeriodicTask.objects.get(job_schedule__id=body["id"]).crontab
    assert (cron.minute, cron.hour, cron.day_of_month, cron.month_of_year, cron.day_of_week) == (
        "*/5", "1-3", "*", "*", "mon-fri")
    assert body["next_run"] is not None


@pytest.mark.parametrize("changes, fields", [
    ({"kind": "nope"}, {"kind"}),
    ({"kind": None}, {"kind"}),
    ({"kind": "thumbnails", "params": {}}, {"kind"}),  # needs an upload: can't be scheduled
    ({"params": {"steps": 0}}, {"params"}),
    ({"params": {"steps": "many"}}, {"params"}),
    ({"params": [1, 2]}, {"params"}),
    ({"every": None, "crontab": "61 * * * *"}, {"crontab"}),
    ({"every": None, "crontab": "* * *"}, {"crontab"}),
    ({"every": None, "crontab": "x * * * *"}, {"crontab"}),
    ({"every": None, "crontab": "0 0 31 2 *"}, {"crontab"}),  # never happens
    ({"every": 9}, {"every"}),
    ({"every": "often"}, {"every"}),
    ({"crontab": "*/5 * * * *"}, {"crontab", "every"}),  # both
    ({"every": None}, {"crontab", "every"}),  # neither
])
def test_a_bad_schedule_is_a_400_naming_the_field(api, changes, fields):
    response = api.post("/api/schedules/", {**EVERY, **changes}, format="json")
    assert response.status_code == 400
    assert set(response.json()) == fields, response.json()
    assert not Schedule.objects.exists() and not PeriodicTask.objects.exists()


def test_bad_params_are_named_inside_params(api):
    response = api.post("/api/schedules/", {**EVERY, "params": {"steps": 5000}}, format="json")
    assert "steps" in response.json()["params"]
    upload = api.post("/api/schedules/", {**EVERY, "kind": "thumbnails"}, format="json").json()
    assert "cannot be scheduled" in upload["kind"][0]


def test_users_see_and_change_only_their_own_and_staff_see_all(api, alice, bob, charlie, client_for, anon):
    mine = create(api)
    as_bob, as_charlie = client_for(bob), client_for(charlie)
    bobs = create(as_bob, every=60)
    assert [s["id"] for s in api.get("/api/schedules/").json()["results"]] == [mine["id"]]
    assert [s["id"] for s in as_bob.get("/api/schedules/").json()["results"]] == [bobs["id"]]
    assert {s["id"] for s in as_charlie.get("/api/schedules/").json()["results"]} == {mine["id"], bobs["id"]}
    url = f"/api/schedules/{mine['id']}/"
    assert as_bob.get(url).status_code == 404
    assert as_bob.patch(url, {"enabled": False}, format="json").status_code == 404
    assert as_bob.delete(url).status_code == 404
    assert Schedule.objects.get(id=mine["id"]).enabled
    changed = as_charlie.patch(url, {"every": 30}, format="json")
    assert changed.status_code == 200 and changed.json()["every"] == 30 and changed.json()["owner"] == "alice"
    assert anon.get("/api/schedules/").status_code == 401
    assert api.put(url, {**EVERY}, format="json").status_code == 405  # PATCH only


def test_patch_switches_timing_and_keeps_the_periodic_task_in_step(api):
    body = create(api)
    url = f"/api/schedules/{body['id']}/"
    task_id = Schedule.objects.get(id=body["id"]).periodic_task_id
    cron = api.patch(url, {"crontab": "0 * * * *"}, format="json").json()
    assert (cron["crontab"], cron["every"]) == ("0 * * * *", None)
    task = PeriodicTask.objects.get(id=task_id)
    assert task.interval is None and task.crontab.minute == "0"
    back = api.patch(url, {"every": 20}, format="json").json()
    assert (back["crontab"], back["every"]) == (None, 20)
    both = api.patch(url, {"every": 20, "crontab": "0 * * * *"}, format="json")
    assert both.status_code == 400 and set(both.json()) == {"crontab", "every"}
    off = api.patch(url, {"enabled": False}, format="json").json()
    assert off["enabled"] is False and off["next_run"] is None
    assert PeriodicTask.objects.get(id=task_id).enabled is False
    assert api.patch(url, {"params": {"steps": -1}}, format="json").status_code == 400
    # A new kind must accept the kept params: page_fetch needs a url.
    other = api.patch(url, {"kind": "page_fetch"}, format="json")
    assert other.status_code == 400 and "url" in other.json()["params"]
    assert Schedule.objects.get(id=body["id"]).kind == job_kinds.NAME


def test_delete_removes_the_periodic_task(api):
    body = create(api)
    assert api.delete(f"/api/schedules/{body['id']}/").status_code == 204
    assert not Schedule.objects.exists() and not PeriodicTask.objects.exists()


def test_a_run_starts_an_ordinary_job_of_the_owner_and_is_the_last_job(api, alice, queued):
    body = create(api, params={"steps": 4, "delay": 0.5})
    job = schedules.run_schedule(body["id"])
    assert (job.kind, job.owner, job.params, job.status) == (job_kinds.NAME, alice, {"steps": 4, "delay": 0.5},
                                                           Job.Status.QUEUED)
    assert queued[-1]["name"] == "basic.run_job" and queued[-1]["args"] == [str(job.id)]
    last = api.get(f"/api/schedules/{body['id']}/").json()["last_job"]
    assert last["id"] == str(job.id) and last["status"] == "queued" and last["url"].endswith(f"/api/jobs/{job.id}/")
    assert api.get(f"/api/jobs/{job.id}/").status_code == 200  # in the owner's list like any job


def test_a_disabled_or_deleted_schedule_starts_nothing(api, queued):
    body = create(api, enabled=False)
    assert schedules.run_schedule(body["id"]) is None
    assert schedules.run_schedule(body["id"] + 1000) is None
    assert not queued and not Job.objects.exists()


def test_params_that_no_longer_validate_give_a_failed_job_saying_why(api, queued):
    body = create(api)
    Schedule.objects.filter(id=body["id"]).update(params={"steps": 0})
    job = schedules.run_schedule(body["id"])
    job.refresh_from_db()
    assert job.status == Job.Status.FAILED and "no longer valid" in job.error and not queued


def test_the_schedules_per_user_cap(api, settings):
    settings.SCHEDULES_MAX_PER_USER = 2
    create(api)
    create(api)
    assert api.post("/api/schedules/", EVERY, format="json").status_code == 409


def test_kinds_lists_fields_and_what_can_be_scheduled(api):
    kinds = {entry["kind"]: entry for entry in api.get("/api/kinds/").json()}
    assert kinds["thumbnails"]["schedulable"] is False and kinds["thumbnails"]["multipart"] is True
    assert [f["name"] for f in kinds["thumbnails"]["fields"] if f["type"] == "file"] == ["image"]
    assert kinds[job_kinds.NAME]["schedulable"] is True


def test_jobs_list_filters_by_status_and_kind(api, queued):
    api.post("/api/jobs/", {"kind": job_kinds.NAME}, format="json")
    api.post("/api/jobs/", {"kind": "students_by_age"}, format="json")
    Job.objects.filter(kind="students_by_age").update(status=Job.Status.DONE)
    assert [j["kind"] for j in api.get("/api/jobs/?kind=students_by_age").json()["results"]] == ["students_by_age"]
    assert [j["kind"] for j in api.get("/api/jobs/?status=queued").json()["results"]] == [job_kinds.NAME]


def test_staff_edit_schedules_in_the_admin(charlie, client, queued):
    client.force_login(charlie)
    form = {"owner": charlie.id, "kind": job_kinds.NAME, "params": '{"steps": 3}', "enabled": "on",
            "crontab": "", "every": "15"}
    assert client.post("/admin/basic/schedule/add/", form).status_code == 302
    schedule = Schedule.objects.get()
    assert schedules.timing(schedule) == (None, 15) and schedule.periodic_task.enabled
    bad = client.post(f"/admin/basic/schedule/{schedule.id}/change/", {**form, "crontab": "*/5 * * * *"})
    assert bad.status_code == 200 and "not both" in bad.content.decode()
    assert client.post(f"/admin/basic/schedule/{schedule.id}/change/",
                       {**form, "every": "", "crontab": "*/5 * * * *"}).status_code == 302
    assert schedules.timing(Schedule.objects.get()) == ("*/5 * * * *", None)
    assert client.get("/admin/basic/schedule/").status_code == 200
    assert client.post(f"/admin/basic/schedule/{schedule.id}/delete/", {"post": "yes"}).status_code == 302
    assert not PeriodicTask.objects.exists()
