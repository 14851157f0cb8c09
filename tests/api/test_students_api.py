import pytest

from basic.models import Student

pytestmark = pytest.mark.django_db


def test_crud_round_trip(api):
    created = api.post("/api/students/", {"name": "Ada", "age": 36}, format="json")
    assert created.status_code == 201
    student_id = created.json()["id"]
    assert api.get(f"/api/students/{student_id}/").json()["name"] == "Ada"
    assert api.patch(f"/api/students/{student_id}/", {"age": 37}, format="json").json()["age"] == 37
    assert api.get("/api/students/").json()["count"] == 1
    assert api.delete(f"/api/students/{student_id}/").status_code == 204
    assert api.get(f"/api/students/{student_id}/").status_code == 404


@pytest.mark.parametrize(
    "body, field",
    [({"name": "", "age": 3}, "name"), ({"name": "x" * 101, "age": 3}, "name"),
     ({"name": "A", "age": 151}, "age"), ({"name": "A", "age": -1}, "age"), ({"name": "A"}, "age")],
)
def test_invalid_student_is_400_with_field_errors(api, body, field):
    response = api.post("/api/students/", body, format="json")
    assert response.status_code == 400
    assert field in response.json()
    assert Student.objects.count() == 0


def test_malformed_json_is_400_with_detail(api):
    response = api.post("/api/students/", "{not json", content_type="application/json")
    assert response.status_code == 400
    assert "detail" in response.json()


def test_generate_random_students(api):
    response = api.post("/api/students/generate/", {"count": 250}, format="json")
    assert response.status_code == 201
    assert response.json() == {"created": 250, "total": 250}
    assert Student.objects.filter(age__gte=0, age__lte=150).count() == 250
    assert api.post("/api/students/generate/", {"count": 0}, format="json").status_code == 400


def test_swagger_ui_is_served_without_a_cdn(api):
    page = api.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "/static/drf_spectacular_sidecar/swagger-ui-dist/" in html
    assert "cdn" not in html.lower()


def test_openapi_schema_is_served(api):
    response = api.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    assert "/api/students/by-age-report/" in response.json()["paths"]
