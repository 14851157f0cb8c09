"""`Idempotency-Key` on every job start (issue 20): the same key and body from the same user within
JOB_IDEMPOTENCY_HOURS answer with the first job (200, `Idempotent-Replayed: true`), another body is
a 422, a failed start leaves the key free, and concurrent duplicates make one job. The same for a
batch (`POST /api/batches/`, several images in the thumbnails form): one batch with all its members.

Real commits (`transaction=True`): a keyed start reserves its key and creates its job in a
transaction of its own, whose commit sends the task, as in production."""
import io
import threading
from datetime import timedelta

import httpx
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import connection
from django.utils import timezone
from kombu.exceptions import OperationalError
from PIL import Image

from basic.jobs import retention, services
from basic.models import Batch, IdempotencyKey, Job
from tests import job_kinds
from tests.live import live_stack, stack_root  # noqa: F401  (fixture)

pytestmark = pytest.mark.django_db(transaction=True)

KEY = "3f1c2a9e-6b7d-4e0a-9c1b-2d5e8f7a6b40"


def post_job(api, key=KEY, steps=2):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    return api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {"steps": steps}}, format="json", **headers)


def png(color=(10, 120, 10)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (40, 30), color).save(buffer, "PNG")
    return buffer.getvalue()


def upload(api, content: bytes, key=KEY, sizes="64x64"):
    return api.post("/api/thumbnails/", {"image": SimpleUploadedFile("photo.png", content), "sizes": sizes},
                    format="multipart", HTTP_IDEMPOTENCY_KEY=key)


def test_the_same_key_and_body_answer_200_with_the_first_job(api, queued):
    first = post_job(api)
    assert first.status_code == 202, first.json()
    assert "Idempotent-Replayed" not in first
    again = post_job(api)
    assert again.status_code == 200, again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert again["Location"] == first["Location"] == again.json()["url"]
    assert set(again.json()) == set(first.json())  # the same shape as the 202
    assert Job.objects.count() == 1 and len(queued) == 1


def test_a_replay_shows_the_job_as_it_is_now(api, queued):
    job_id = post_job(api).json()["id"]
    Job.objects.filter(id=job_id).update(status="running", progress=40)
    again = post_job(api).json()
    assert (again["status"], again["progress"]) == ("running", 40)


def test_every_start_route_replays(api, queued):
    alias = api.post("/api/students/by-age-report/", HTTP_IDEMPOTENCY_KEY="report-1")
    assert alias.status_code == 202
    # The same kind and parameters by another route is the same request.
    same = api.post("/api/jobs/", {"kind": "students_by_age"}, format="json", HTTP_IDEMPOTENCY_KEY="report-1")
    assert same.status_code == 200 and same.json()["id"] == alias.json()["id"]
    page = {"url": "https://example.com/"}
    first = api.post("/api/pages/", page, format="json", HTTP_IDEMPOTENCY_KEY="page-1")
    again = api.post("/api/pages/", page, format="json", HTTP_IDEMPOTENCY_KEY="page-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert Job.objects.count() == 2


def test_the_same_key_with_another_body_is_a_422_that_says_so(api, queued):
    first = post_job(api, steps=2)
    response = post_job(api, steps=3)
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "idempotency_key_reused"
    assert "this Idempotency-Key was used with a different request" in body["detail"]
    assert Job.objects.count() == 1
    assert post_job(api, steps=2).json()["id"] == first.json()["id"], "the key still answers its own request"


def test_another_kind_with_the_same_key_is_a_422(api, queued):
    post_job(api)
    response = api.post("/api/students/by-age-report/", HTTP_IDEMPOTENCY_KEY=KEY)
    assert response.status_code == 422 and response.json()["code"] == "idempotency_key_reused"


def test_keys_are_per_user(api, bob, client_for, queued):
    mine = post_job(api)
    theirs = post_job(client_for(bob))
    assert (mine.status_code, theirs.status_code) == (202, 202)
    assert mine.json()["id"] != theirs.json()["id"]
    assert Job.objects.get(id=theirs.json()["id"]).owner == bob


def test_without_the_header_every_start_makes_a_job(api, queued):
    first, second = post_job(api, key=None), post_job(api, key=None)
    assert (first.status_code, second.status_code) == (202, 202)
    assert first.json()["id"] != second.json()["id"]
    assert not IdempotencyKey.objects.exists()


@pytest.mark.parametrize("key", ["", "k" * 256, "caf\u00e9", "tab\there", "del\x7f"])
def test_a_bad_key_is_a_400_that_says_why(api, queued, key):
    response = post_job(api, key=key)
    assert response.status_code == 400, response.json()
    assert response.json() == {"detail": "The Idempotency-Key header must be 1 to 255 printable ASCII "
                                         "characters (e.g. a UUID)."}
    assert not Job.objects.exists() and not queued


def test_a_key_of_255_printable_characters_is_fine(api, queued):
    key = ("a b~!" * 51)[:255]
    assert post_job(api, key=key).status_code == 202
    assert post_job(api, key=key).status_code == 200


def test_keys_are_case_sensitive(api, queued):
    assert post_job(api, key="Key-A").status_code == 202
    assert post_job(api, key="key-a").status_code == 202


def test_bad_params_leave_the_key_free(api, queued):
    assert post_job(api, steps=0).status_code == 400
    assert post_job(api, steps=2).status_code == 202


def test_a_start_refused_for_the_quota_leaves_the_key_free(api, alice, queued, settings, tmp_path):
    settings.JOB_OUTPUT_QUOTA_MB = 1
    settings.JOBS_DIR = tmp_path / "jobs"
    full = Job.objects.create(kind=job_kinds.NAME, owner=alice, status="done", output_bytes=2 * 1024 * 1024)
    refused = post_job(api)
    assert refused.status_code == 409 and "quota" in refused.json()["detail"]
    assert not IdempotencyKey.objects.exists()
    full.delete()
    assert post_job(api).status_code == 202


def test_a_retry_after_a_503_starts_the_job(api, monkeypatch, queued):
    from app.celery import app

    working_send = app.send_task

    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(app, "send_task", down)
    failed = post_job(api)
    assert failed.status_code == 503
    assert Job.objects.get().status == "failed"
    monkeypatch.setattr(app, "send_task", working_send)
    retried = post_job(api)
    assert retried.status_code == 202, retried.json()
    assert retried.json()["status"] == "queued" and len(queued) == 1
    assert IdempotencyKey.objects.get().job_id == Job.objects.get(status="queued").id


def eight_at_once(post) -> list:
    """`post()` from eight threads released together; their answers."""
    answers, barrier = [], threading.Barrier(8)

    def one():
        barrier.wait()
        answers.append(post())

    threads = [threading.Thread(target=one) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return answers


@pytest.mark.skipif(connection.vendor == "sqlite", reason="the in-memory test database has one writer at "
                    "a time by table locks, which fail at once; the live test below covers SQLite")
def test_concurrent_duplicates_make_one_job(alice, client_for, queued):
    """Eight requests with the same key at once, each on its own connection: one 202, seven 200s."""
    def post():
        try:
            return post_job(client_for(alice))
        finally:
            connection.close()  # this thread's own

    answers = eight_at_once(post)
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [202], [a.json() for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert Job.objects.count() == 1 and len(queued) == 1


@pytest.mark.integration
def test_concurrent_duplicates_make_one_job_on_a_live_server(stack_root):  # noqa: F811
    """The same on a real Daphne and database file (or PostgreSQL): eight connections post one key."""
    with live_stack(stack_root, "idempotency-race", worker=False) as live:
        def post():
            with httpx.Client(base_url=live.base_url, headers=live.headers, timeout=60) as http:
                return http.post("/api/jobs/", json={"kind": job_kinds.NAME, "params": {"steps": 1}},
                                 headers={"Idempotency-Key": KEY})

        answers = eight_at_once(post)
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200] * 7 + [202], [answer.text for answer in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert live.query("SELECT count(*) FROM basic_job")[0][0] == 1
        assert live.query("SELECT count(*) FROM basic_idempotencykey")[0][0] == 1


def test_a_key_older_than_its_hours_starts_a_new_job_and_the_sweep_purges_it(api, alice, queued, settings):
    settings.JOB_IDEMPOTENCY_HOURS = 2
    first = post_job(api).json()["id"]
    IdempotencyKey.objects.update(created=timezone.now() - timedelta(hours=2, seconds=1))
    again = post_job(api, steps=5)  # another body too: an expired key binds nothing
    assert again.status_code == 202 and again.json()["id"] != first
    assert post_job(api, steps=5).json()["id"] == again.json()["id"]
    IdempotencyKey.objects.create(owner=alice, key="old", fingerprint="0" * 64,
                                  created=timezone.now() - timedelta(hours=3))
    retention.sweep()
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == [KEY]


def test_deleting_the_job_frees_its_key(api, queued):
    first = post_job(api).json()["id"]
    Job.objects.filter(id=first).update(status="done")
    assert services.job_delete(job=Job.objects.get(id=first))
    assert not IdempotencyKey.objects.exists()
    assert post_job(api).status_code == 202


def test_an_upload_replays_with_the_same_file_and_is_a_422_with_another(api, queued, settings, tmp_path):
    settings.JOBS_DIR = tmp_path / "jobs"
    first = upload(api, png())
    assert first.status_code == 202, first.json()
    again = upload(api, png())
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    other = upload(api, png(color=(200, 10, 10)))
    assert other.status_code == 422 and other.json()["code"] == "idempotency_key_reused"
    other_sizes = upload(api, png(), sizes="32x32")
    assert other_sizes.status_code == 422
    assert Job.objects.count() == 1
    assert len(list(settings.JOBS_DIR.iterdir())) == 1, "a replay stores no second upload"


def test_a_multipart_start_on_the_jobs_route_replays_too(api, queued, settings, tmp_path):
    settings.JOBS_DIR = tmp_path / "jobs"
    form = lambda: {"kind": "thumbnails", "image": SimpleUploadedFile("photo.png", png())}  # noqa: E731
    first = api.post("/api/jobs/", form(), format="multipart", HTTP_IDEMPOTENCY_KEY="form-1")
    again = api.post("/api/jobs/", form(), format="multipart", HTTP_IDEMPOTENCY_KEY="form-1")
    assert (first.status_code, again.status_code) == (202, 200)
    assert again.json()["id"] == first.json()["id"]


def test_the_schema_documents_the_header_and_the_answers(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    for path in ("/api/jobs/", "/api/students/by-age-report/", "/api/thumbnails/", "/api/pages/"):
        operation = schema["paths"][path]["post"]
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [p["name"] for p in headers] == ["Idempotency-Key"], path
        assert {"200", "202", "400", "409", "422"} <= set(operation["responses"]), path
        # A route taking uploads may have started a batch (several files in one form): either.
        answer = "ThumbnailsStarted" if path == "/api/thumbnails/" else "Job"
        for code in ("200", "202"):
            assert operation["responses"][code]["content"]["application/json"]["schema"] == \
                {"$ref": f"#/components/schemas/{answer}"}, (path, code)


def test_a_browser_on_an_allowed_origin_may_send_the_key_and_read_the_replay(api, queued, settings):
    settings.CORS_ALLOWED_ORIGINS = ["https://dashboard.example"]
    origin = {"HTTP_ORIGIN": "https://dashboard.example"}
    preflight = api.options("/api/jobs/", HTTP_ACCESS_CONTROL_REQUEST_METHOD="POST",
                            HTTP_ACCESS_CONTROL_REQUEST_HEADERS="content-type, idempotency-key", **origin)
    assert "idempotency-key" in preflight["Access-Control-Allow-Headers"]
    post_job(api)
    replay = api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {"steps": 2}}, format="json",
                      HTTP_IDEMPOTENCY_KEY=KEY, **origin)
    assert replay.status_code == 200
    assert "Idempotent-Replayed" in replay["Access-Control-Expose-Headers"]


# --- batches ---------------------------------------------------------------------------------------

def member(steps=2, **extra):
    return {"kind": job_kinds.NAME, "params": {"steps": steps}, **extra}


def post_batch(api, jobs=None, key=KEY, query=""):
    headers = {} if key is None else {"HTTP_IDEMPOTENCY_KEY": key}
    jobs = [member(2), member(3), {"kind": "students_by_age"}] if jobs is None else jobs
    return api.post("/api/batches/" + query, {"jobs": jobs}, format="json", **headers)


def member_ids(response) -> list[str]:
    return [m["id"] for m in response.json()["members"]]


def test_the_same_key_and_jobs_answer_200_with_the_first_batch_and_its_members(api, queued):
    first = post_batch(api)
    assert first.status_code == 202, first.json()
    assert "Idempotent-Replayed" not in first
    again = post_batch(api)
    assert again.status_code == 200, again.json()
    assert again["Idempotent-Replayed"] == "true"
    assert again.json()["id"] == first.json()["id"] and member_ids(again) == member_ids(first)
    assert again["Location"] == first["Location"] == again.json()["url"]
    assert set(again.json()) == set(first.json())
    assert Batch.objects.count() == 1 and Job.objects.count() == 3 and len(queued) == 3
    key = IdempotencyKey.objects.get()
    assert (str(key.batch_id), key.job_id) == (first.json()["id"], None)


def test_a_batch_replay_shows_it_as_it_is_now(api, queued):
    first = post_batch(api).json()
    Job.objects.filter(id=first["members"][0]["id"]).update(status="running", progress=40)
    again = post_batch(api).json()
    assert again["counts"]["running"] == 1 and again["members"][0]["progress"] == 40


@pytest.mark.parametrize("other", [
    [member(2), member(4), {"kind": "students_by_age"}],  # other parameters
    [member(3), member(2), {"kind": "students_by_age"}],  # another order: other numbers in the zip
    [member(2), member(3)],  # a member fewer
    [member(2), member(3), {"kind": "students_by_age", "priority": 2}],  # another option
])
def test_the_same_key_with_other_jobs_is_a_422(api, queued, other):
    first = post_batch(api)
    response = post_batch(api, other)
    assert response.status_code == 422, response.json()
    assert response.json()["code"] == "idempotency_key_reused"
    assert "this Idempotency-Key was used with a different request" in response.json()["detail"]
    assert Batch.objects.count() == 1 and Job.objects.count() == 3
    assert post_batch(api).json()["id"] == first.json()["id"], "the key still answers its own batch"


def test_batch_wide_options_count_as_each_members_own(api, queued):
    first = post_batch(api, [member(1), member(1)], query="?priority=4")
    assert first.status_code == 202, first.json()
    same = post_batch(api, [member(1, priority=4), member(1, priority=4)])
    assert same.status_code == 200 and same.json()["id"] == first.json()["id"]
    assert post_batch(api, [member(1), member(1)], query="?priority=5").status_code == 422
    # A member's own start time replaces the batch's, its priority alone does not.
    delayed = post_batch(api, [member(1), member(1, priority=2)], key="delayed", query="?delay_seconds=600")
    assert delayed.status_code == 202, delayed.json()
    assert post_batch(api, [member(1, delay_seconds=600), member(1, priority=2, delay_seconds=600)],
                      key="delayed").status_code == 200
    assert post_batch(api, [member(1, delay_seconds=600), member(1, priority=2)], key="delayed").status_code == 422


def test_a_key_that_started_a_job_is_a_422_for_a_batch_of_that_job_and_back(api, queued):
    assert post_job(api, key="one").status_code == 202
    assert post_batch(api, [member(2)], key="one").status_code == 422
    assert post_batch(api, [member(2)], key="two").status_code == 202
    assert post_job(api, key="two").status_code == 422
    assert Job.objects.count() == 2 and Batch.objects.count() == 1


def test_a_bad_key_on_a_batch_is_a_400_that_says_why(api, queued):
    response = post_batch(api, key="caf\u00e9")
    assert response.status_code == 400
    assert "1 to 255 printable ASCII" in response.json()["detail"]
    assert not Batch.objects.exists() and not queued


def test_a_refused_batch_leaves_the_key_free(api, alice, queued, settings, tmp_path):
    bad = post_batch(api, [member(2), member(0)])
    assert bad.status_code == 400 and "1" in bad.json()["jobs"]
    assert not IdempotencyKey.objects.exists() and not Batch.objects.exists()
    settings.JOB_OUTPUT_QUOTA_MB = 1
    settings.JOBS_DIR = tmp_path / "jobs"
    full = Job.objects.create(kind=job_kinds.NAME, owner=alice, status="done", output_bytes=2 * 1024 * 1024)
    refused = post_batch(api)
    assert refused.status_code == 409 and "quota" in refused.json()["detail"]
    assert not IdempotencyKey.objects.exists() and not Batch.objects.exists()
    full.delete()
    assert post_batch(api).status_code == 202
    assert post_batch(api).status_code == 200


def test_a_retry_after_a_503_starts_the_batch(api, monkeypatch, queued):
    from app.celery import app

    working_send = app.send_task

    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(app, "send_task", down)
    failed = post_batch(api)
    assert failed.status_code == 503
    assert set(Job.objects.values_list("status", flat=True)) == {"failed"}
    assert not IdempotencyKey.objects.exists()
    monkeypatch.setattr(app, "send_task", working_send)
    retried = post_batch(api)
    assert retried.status_code == 202, retried.json()
    assert len(queued) == 3 and Batch.objects.exclude(id=retried.json()["id"]).get().status == "failed"
    assert {m["status"] for m in retried.json()["members"]} == {"queued"}
    assert str(IdempotencyKey.objects.get().batch_id) == retried.json()["id"]


def test_several_images_in_one_form_replay_their_batch(api, queued, settings, tmp_path):
    settings.JOBS_DIR = tmp_path / "jobs"

    def form(*colors, key="images-1"):
        images = [SimpleUploadedFile(f"{n}.png", png(color)) for n, color in enumerate(colors)]
        return api.post("/api/thumbnails/", {"image": images, "sizes": "32x32"}, format="multipart",
                        HTTP_IDEMPOTENCY_KEY=key)

    first = form((10, 120, 10), (200, 10, 10))
    assert first.status_code == 202 and first.json()["total"] == 2, first.json()
    again = form((10, 120, 10), (200, 10, 10))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert member_ids(again) == member_ids(first)
    assert len(list(settings.JOBS_DIR.iterdir())) == 2, "a replay stores no second upload"
    assert form((10, 120, 10), (200, 10, 11)).status_code == 422  # another file
    assert form((10, 120, 10)).status_code == 422  # one image: a job, not that batch
    assert Batch.objects.count() == 1 and Job.objects.count() == 2


@pytest.mark.skipif(connection.vendor == "sqlite", reason="the in-memory test database has one writer at "
                    "a time by table locks, which fail at once; the live test below covers SQLite")
def test_concurrent_duplicates_make_one_batch(alice, client_for, queued):
    """Eight batches with the same key at once, each on its own connection: one 202, seven 200s, and
    one batch with its three members (the key, the batch and the members are one transaction)."""
    def post():
        try:
            return post_batch(client_for(alice))
        finally:
            connection.close()  # this thread's own

    answers = eight_at_once(post)
    assert sorted(answer.status_code for answer in answers) == [200] * 7 + [202], [a.json() for a in answers]
    assert len({answer.json()["id"] for answer in answers}) == 1
    assert {tuple(member_ids(answer)) for answer in answers} == {tuple(member_ids(answers[0]))}
    assert Batch.objects.count() == 1 and Job.objects.count() == 3 and len(queued) == 3
    assert IdempotencyKey.objects.count() == 1


@pytest.mark.integration
def test_concurrent_duplicates_make_one_batch_on_a_live_server(stack_root):  # noqa: F811
    """The same on a real Daphne and database file (or PostgreSQL): eight connections post one key."""
    with live_stack(stack_root, "idempotency-batch-race", worker=False) as live:
        jobs = [member(1), member(2), {"kind": "students_by_age"}]

        def post():
            with httpx.Client(base_url=live.base_url, headers=live.headers, timeout=60) as http:
                return http.post("/api/batches/", json={"jobs": jobs}, headers={"Idempotency-Key": KEY})

        answers = eight_at_once(post)
        codes = sorted(answer.status_code for answer in answers)
        assert codes == [200] * 7 + [202], [answer.text for answer in answers]
        assert len({answer.json()["id"] for answer in answers}) == 1
        assert {tuple(member_ids(answer)) for answer in answers} == {tuple(member_ids(answers[0]))}
        assert live.query("SELECT count(*) FROM basic_batch")[0][0] == 1
        assert live.query("SELECT count(*) FROM basic_job")[0][0] == 3
        assert live.query("SELECT count(*) FROM basic_idempotencykey WHERE batch_id IS NOT NULL")[0][0] == 1


def test_the_schema_documents_the_header_on_batches(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    operation = schema["paths"]["/api/batches/"]["post"]
    assert "Idempotency-Key" in [p["name"] for p in operation["parameters"] if p["in"] == "header"]
    assert {"200", "202", "400", "409", "422"} <= set(operation["responses"])
    assert operation["responses"]["200"]["content"]["application/json"]["schema"] == \
        {"$ref": "#/components/schemas/Batch"}
