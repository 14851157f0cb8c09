"""Every list endpoint: `limit` 1..API_MAX_PAGE_SIZE and `offset` 0..10**9, else a 400 naming the
parameter (never silently clamped, never a database error)."""
import pytest

from basic.models import Job, Student

pytestmark = pytest.mark.django_db

LISTS = ["/api/students/", "/api/jobs/"]


@pytest.fixture(autouse=True)
def rows(alice):
    Student.objects.bulk_create(Student(owner=alice, name=f"S{i}", age=i % 100) for i in range(12))
    Job.objects.bulk_create(Job(kind="students_by_age", owner=alice) for _ in range(12))


@pytest.mark.parametrize("path", LISTS)
@pytest.mark.parametrize("query, parameter", [
    ("limit=2723802191873636629724562748080128&offset=-274", "limit"),
    ("limit=10&offset=-274", "offset"),
    ("limit=10&offset=2723802191873636629724562748080128", "offset"),
    ("offset=1000000001", "offset"),
    ("limit=0", "limit"),
    ("limit=-1", "limit"),
    ("limit=501", "limit"),
    ("limit=abc", "limit"),
    ("limit=1.5", "limit"),
    ("limit=%2B5", "limit"),  # "+5"
    ("limit=1_0", "limit"),
    ("limit=%D9%A3", "limit"),  # an Arabic-Indic digit three
    ("offset=x", "offset"),
])
def test_out_of_range_values_are_400_naming_the_parameter(api, path, query, parameter):
    response = api.get(f"{path}?{query}")
    assert response.status_code == 400, response.content
    assert list(response.json()) == [parameter]


@pytest.mark.parametrize("path", LISTS)
def test_values_in_range_page_as_asked(api, path):
    body = api.get(f"{path}?limit=5&offset=10").json()
    assert (body["count"], len(body["results"])) == (12, 2)
    assert len(api.get(f"{path}?limit=500").json()["results"]) == 12
    assert api.get(f"{path}?offset=1000000000").json()["results"] == []
    assert len(api.get(f"{path}?limit=&offset=").json()["results"]) == 12  # empty counts as absent


def test_the_maximum_comes_from_settings(api, settings):
    settings.API_MAX_PAGE_SIZE = 3
    assert api.get("/api/students/?limit=4").status_code == 400
    assert len(api.get("/api/students/?limit=3").json()["results"]) == 3
    assert len(api.get("/api/students/").json()["results"]) == 3  # the default page shrinks with it
