"""`POST /api/jobs/`: any registered kind with its params; the per-kind triggers; the schema."""
import pytest

from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db


def test_a_kind_starts_with_its_params_and_answers_202_with_location(api, queued):
    response = api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {"steps": 7}}, format="json")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert response["Location"] == body["url"]
    assert (body["kind"], body["status"]) == (job_kinds.NAME, "queued")
    assert body["params"] == {"steps": 7, "delay": 0.0} and body["result"] is None
    assert queued[0]["name"] == "basic.run_job" and queued[0]["args"] == [body["id"]]
    assert Job.objects.get(id=body["id"]).owner.username == "alice"


def test_params_default_to_an_empty_object(api, queued):
    response = api.post("/api/jobs/", {"kind": "students_by_age"}, format="json")
    assert response.status_code == 202 and response.json()["params"] == {}


@pytest.mark.parametrize("body, field", [
    ({"kind": "nope"}, "kind"),
    ({}, "kind"),
    ({"kind": ["students_by_age"]}, "kind"),
    ({"kind": job_kinds.NAME, "params": {"steps": 0}}, "params"),
    ({"kind": job_kinds.NAME, "params": {"steps": "many"}}, "params"),
    ({"kind": job_kinds.NAME, "params": [1, 2]}, "params"),
    ({"kind": job_kinds.NAME, "params": "steps=3"}, "params"),
])
def test_an_unknown_kind_or_bad_params_is_a_400_naming_the_field(api, queued, body, field):
    response = api.post("/api/jobs/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert not queued and not Job.objects.exists()


def test_a_bad_param_is_named_inside_params(api, queued):
    response = api.post("/api/jobs/", {"kind": job_kinds.NAME, "params": {"steps": 5000}}, format="json")
    assert response.status_code == 400
    assert "steps" in response.json()["params"]


def test_the_report_alias_still_starts_the_same_kind(api, queued):
    response = api.post("/api/students/by-age-report/")
    assert response.status_code == 202 and response.json()["kind"] == "students_by_age"


def test_starting_needs_sign_in(anon):
    assert anon.post("/api/jobs/", {"kind": "students_by_age"}, format="json").status_code == 401
    assert anon.post("/api/pages/", {"url": "https://example.com/"}, format="json").status_code == 401


def test_the_schema_lists_every_kind_and_its_params(api):
    schema = api.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    start = schema["paths"]["/api/jobs/"]["post"]
    assert {"202", "400", "429", "503"} <= set(start["responses"])
    shapes = schema["components"]["schemas"]
    # JSON shapes for kinds without an upload; every kind's fields in the multipart form.
    assert {"PageFetchJobStartRequest", "StudentsByAgeJobStartRequest", "JobStartFormRequest"} <= set(shapes)
    assert {"image", "sizes", "url", "refresh"} <= set(shapes["JobStartFormRequest"]["properties"])
    assert "/api/thumbnails/" in schema["paths"] and "/api/pages/" in schema["paths"]
    page_params = shapes["PageFetchParamsRequest"]["properties"]
    assert {"url", "refresh"} <= set(page_params)
