"""`/api/batches/`: start several jobs as one (all or nothing), see only your own, cancel the whole
batch, download one zip of every member's output; and the thumbnails form with several images."""
import io
import uuid
import zipfile

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from basic.jobs import files
from basic.jobs.event_store import batch_stream, read_events_sync
from basic.jobs.runner import run_job
from basic.models import Batch, Job
from tests import job_kinds

pytestmark = pytest.mark.django_db(transaction=True)  # a batch commits its own block, then sends


def steps(n=2, **extra):
    return {"kind": job_kinds.NAME, "params": {"steps": n, **extra}}


def start(api, jobs, **query):
    path = "/api/batches/" + ("?" + "&".join(f"{k}={v}" for k, v in query.items()) if query else "")
    return api.post(path, {"jobs": jobs}, format="json")


def png(size=(40, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (10, 120, 10)).save(buffer, "PNG")
    return buffer.getvalue()


def test_a_batch_starts_every_member_and_answers_202_with_location(api, queued):
    response = start(api, [steps(2), steps(3), {"kind": "students_by_age"}])
    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == body["url"] and body["url"].endswith(f"/api/batches/{body['id']}/")
    assert body["events_url"].endswith(f"/ws/batches/{body['id']}/") and body["events_url"].startswith("ws")
    assert (body["status"], body["total"], body["progress"], body["owner"]) == ("queued", 3, 0, "alice")
    assert body["counts"] == {"queued": 3, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    assert [m["kind"] for m in body["members"]] == [job_kinds.NAME, job_kinds.NAME, "students_by_age"]
    assert sorted(call["args"][0] for call in queued) == sorted(m["id"] for m in body["members"])
    assert set(Job.objects.values_list("batch_id", flat=True)) == {uuid.UUID(body["id"])}


def test_one_bad_member_is_a_400_naming_its_index_and_field_and_nothing_starts(api, queued):
    response = start(api, [steps(2), steps(0), {"kind": "nope"}, steps(2, delay="slow")])
    assert response.status_code == 400
    errors = response.json()["jobs"]
    assert set(errors) == {"1", "2", "3"}
    assert "steps" in errors["1"]["params"] and "kind" in errors["2"] and "delay" in errors["3"]["params"]
    assert not queued and not Job.objects.exists() and not Batch.objects.exists()


@pytest.mark.parametrize("body", [{"jobs": []}, {"jobs": "x"}, {}, {"jobs": [1]}, {"jobs": [steps(1) | {"x": 1}]},
                                  {"jobs": [steps(1) | {"priority": 42}]}, [1, 2]])
def test_malformed_batches_are_a_400_with_a_reason(api, queued, body):
    response = api.post("/api/batches/", body, format="json")
    assert response.status_code == 400 and response.json()
    assert not queued and not Batch.objects.exists()


def test_more_members_than_the_setting_allows_is_a_400(api, queued, settings):
    settings.BATCH_MAX_JOBS = 3
    response = start(api, [steps(1)] * 4)
    assert response.status_code == 400 and "at most 3" in response.json()["jobs"][0]
    assert start(api, [steps(1)] * 3).status_code == 202


def test_trigger_options_apply_to_the_batch_unless_a_member_gives_its_own(api, queued):
    response = start(api, [steps(1), steps(1) | {"priority": 2}], priority=6, delay_seconds=600)
    assert response.status_code == 202, response.json()
    first, second = Job.objects.order_by("created")
    assert (first.priority, second.priority) == (6, 2)
    assert first.status == second.status == "scheduled" and Batch.objects.get().status == "scheduled"
    assert not queued  # due in 10 minutes: the sweep sends them


def test_a_member_priority_above_the_users_allowance_is_refused_like_a_single_start(api, queued):
    response = start(api, [steps(1), steps(1) | {"priority": 9}])
    assert response.status_code == 400 and "priority" in response.json()["jobs"]["1"]


def test_a_batch_counts_as_one_start_against_the_trigger_rate(api, queued, settings):
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {
        **settings.REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"], "job_trigger": "2/min"}}
    assert start(api, [steps(1)] * 5).status_code == 202
    assert start(api, [steps(1)] * 5).status_code == 202
    refused = start(api, [steps(1)])
    assert refused.status_code == 429 and refused.json()["detail"]


def test_only_the_owner_and_staff_see_a_batch(api, queued, bob, charlie, client_for):
    batch_id = start(api, [steps(1)]).json()["id"]
    assert api.get(f"/api/batches/{batch_id}/").status_code == 200
    assert api.get(f"/api/batches/{batch_id.upper().replace('-', '')}/").status_code == 200
    as_bob = client_for(bob)
    for response in (as_bob.get(f"/api/batches/{batch_id}/"), as_bob.post(f"/api/batches/{batch_id}/cancel/"),
                     as_bob.get(f"/api/batches/{batch_id}/download/")):
        assert response.status_code == 404 and response.json()["detail"]
    assert as_bob.get("/api/batches/").json()["count"] == 0
    assert client_for(charlie).get(f"/api/batches/{batch_id}/").status_code == 200
    assert api.get("/api/batches/").json()["results"][0]["id"] == batch_id
    assert api.get(f"/api/batches/{uuid.uuid4()}/").status_code == 404
    assert api.get("/api/batches/not-a-uuid/").status_code == 404


def test_starting_needs_sign_in(anon):
    assert anon.post("/api/batches/", {"jobs": [steps(1)]}, format="json").status_code == 401
    assert anon.get("/api/batches/").status_code == 401


def test_cancel_ends_every_waiting_member_and_the_batch_once(api, queued):
    body = start(api, [steps(1), steps(1)]).json()
    response = api.post(f"/api/batches/{body['id']}/cancel/")
    assert response.status_code == 202, response.json()
    assert response.json()["status"] == "cancelled"
    assert set(Job.objects.values_list("status", flat=True)) == {"cancelled"}
    ends = [e for e in read_events_sync(batch_stream(body["id"])) if e["type"].startswith("batch.") and
            e["type"] != "batch.progress"]
    assert [e["type"] for e in ends] == ["batch.cancelled"] and ends[0]["cancelled"] == 2
    again = api.post(f"/api/batches/{body['id']}/cancel/")
    assert again.status_code == 409 and "cancelled" in again.json()["detail"]


def test_the_zip_holds_every_done_members_output_and_is_a_409_before(api, queued):
    body = start(api, [steps(2), steps(3), steps(2, refuse_at=1)]).json()
    early = api.get(f"/api/batches/{body['id']}/download/")
    assert early.status_code == 409 and "No member" in early.json()["detail"]
    for member in body["members"]:
        run_job(member["id"])
    batch = api.get(f"/api/batches/{body['id']}/").json()
    assert (batch["status"], batch["progress"]) == ("failed", 100)
    assert batch["counts"] == {"queued": 0, "running": 0, "done": 2, "failed": 1, "cancelled": 0}
    response = api.get(f"/api/batches/{body['id']}/download/")
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    assert "attachment" in response["Content-Disposition"]
    archive = zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content)))
    assert archive.namelist() == ["001-steps.txt", "002-steps.txt"]
    assert archive.read("002-steps.txt") == b"step 1\nstep 2\nstep 3\n"


def test_deleting_a_finished_member_keeps_the_batch_until_its_last_goes(api, queued):
    body = start(api, [steps(1), steps(1)]).json()
    first, second = (member["id"] for member in body["members"])
    run_job(first)
    assert api.delete(f"/api/jobs/{first}/").status_code == 204
    batch = api.get(f"/api/batches/{body['id']}/").json()
    assert (batch["total"], [m["id"] for m in batch["members"]]) == (2, [second])
    assert batch["counts"] == {"queued": 1, "running": 0, "done": 0, "failed": 0, "cancelled": 0}
    run_job(second)
    assert api.get(f"/api/batches/{body['id']}/").json()["status"] == "done"
    assert api.delete(f"/api/jobs/{second}/").status_code == 204
    assert api.get(f"/api/batches/{body['id']}/").status_code == 404
    assert not read_events_sync(batch_stream(body["id"])), "its events went with it"


def test_several_images_in_the_thumbnails_form_make_a_batch_of_one_job_per_image(api, queued):
    response = api.post("/api/thumbnails/?priority=3", {
        "image": [SimpleUploadedFile("a.png", png()), SimpleUploadedFile("b.png", png((20, 50)))],
        "sizes": "32x32"}, format="multipart")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert body["total"] == 2 and response["Location"].endswith(f"/api/batches/{body['id']}/")
    jobs = Job.objects.order_by("created")
    assert [job.params["image"] for job in jobs] == ["a.png", "b.png"]
    assert {job.priority for job in jobs} == {3} and {job.params["sizes"][0][0] for job in jobs} == {32}
    assert all(files.input_dir(job.id).joinpath(job.params["image"]).is_file() for job in jobs)


def test_one_bad_image_among_several_is_a_400_naming_it_and_stores_nothing(api, queued):
    response = api.post("/api/thumbnails/", {
        "image": [SimpleUploadedFile("a.png", png()), SimpleUploadedFile("b.png", b"not pixels")]},
        format="multipart")
    assert response.status_code == 400
    assert "not an image" in " ".join(response.json()["jobs"]["1"]["image"])
    assert not Job.objects.exists() and not Batch.objects.exists() and not queued


def test_a_single_image_still_starts_a_plain_job(api, queued):
    response = api.post("/api/thumbnails/", {"image": SimpleUploadedFile("a.png", png())}, format="multipart")
    assert response.status_code == 202 and response.json()["kind"] == "thumbnails"
    assert not Batch.objects.exists()


def test_the_schema_documents_batches(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    assert {"/api/batches/", "/api/batches/{id}/", "/api/batches/{id}/cancel/",
            "/api/batches/{id}/download/"} <= set(schema["paths"])
