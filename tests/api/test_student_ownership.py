"""Students belong to a user (issue 22): each user lists, reads, changes and deletes only their own
(another's id is a 404, never a 403: nobody learns it exists), `generate` adds to the caller's, the
students-by-age report reads only its job owner's, and the Django admin shows staff every student."""
import csv
import io

import pytest

from basic.jobs.runner import run_job
from basic.models import Student

pytestmark = pytest.mark.django_db


@pytest.fixture
def alices(alice):
    return [Student.objects.create(owner=alice, name=f"Alice's {i}", age=20 + i) for i in range(3)]


def test_a_user_lists_only_their_own_students(alices, alice, bob, charlie, client_for):
    Student.objects.create(owner=bob, name="Bob's", age=9)
    listed = client_for(alice).get("/api/students/").json()
    assert listed["count"] == 3 and {s["id"] for s in listed["results"]} == {s.id for s in alices}
    assert [s["name"] for s in client_for(bob).get("/api/students/").json()["results"]] == ["Bob's"]
    assert client_for(charlie).get("/api/students/").json()["count"] == 0  # staff: the admin shows all


@pytest.mark.parametrize("method, body", [
    ("get", None), ("patch", {"age": 1}), ("put", {"name": "Mallory", "age": 1}), ("delete", None)])
@pytest.mark.parametrize("who", ["bob", "charlie"])
def test_another_users_student_is_a_404_for_every_method(alices, who, method, body, client_for, request):
    intruder = client_for(request.getfixturevalue(who))
    target = alices[0]
    missing = Student.objects.order_by("-id").first().id + 1000
    answer = getattr(intruder, method)(f"/api/students/{target.id}/", body, format="json")
    never_existed = getattr(intruder, method)(f"/api/students/{missing}/", body, format="json")
    assert answer.status_code == never_existed.status_code == 404
    assert answer.json() == never_existed.json()  # the same answer: existence is not revealed
    target.refresh_from_db()
    assert (target.name, target.age) == ("Alice's 0", 20)


def test_the_owner_is_the_caller_whatever_the_body_says(api, alice, bob):
    created = api.post("/api/students/", {"name": "Ada", "age": 36, "owner": bob.pk}, format="json")
    assert created.status_code == 201 and "owner" not in created.json()
    assert Student.objects.get(id=created.json()["id"]).owner == alice
    student_id = created.json()["id"]
    assert api.patch(f"/api/students/{student_id}/", {"owner": bob.pk}, format="json").status_code == 200
    assert Student.objects.get(id=student_id).owner == alice


def test_generate_adds_to_the_callers_students_and_counts_only_theirs(alice, bob, client_for):
    Student.objects.create(owner=bob, name="Bob's", age=9)
    answer = client_for(alice).post("/api/students/generate/", {"count": 25}, format="json")
    assert answer.json() == {"created": 25, "total": 25}
    assert Student.objects.filter(owner=alice).count() == 25 and Student.objects.filter(owner=bob).count() == 1


def test_the_report_covers_only_the_job_owners_students(alices, alice, bob, client_for, queued):
    Student.objects.create(owner=bob, name="Bob's secret", age=21)
    bobs_job = client_for(bob).post("/api/students/by-age-report/").json()["id"]
    alices_job = client_for(alice).post("/api/students/by-age-report/").json()["id"]
    for job_id in (alices_job, bobs_job):
        run_job(job_id)

    def report(client, job_id):
        response = client.get(f"/api/jobs/{job_id}/download/")
        assert response.status_code == 200
        return list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))[1:]

    assert [row[1] for row in report(client_for(alice), alices_job)] == ["Alice's 0", "Alice's 1", "Alice's 2"]
    assert [row[1] for row in report(client_for(bob), bobs_job)] == ["Bob's secret"]
    assert client_for(alice).get(f"/api/jobs/{alices_job}/").json()["result"] == {"rows": 3}


def test_staff_see_every_student_in_the_admin(alices, bob, charlie):
    from django.test import Client

    Student.objects.create(owner=bob, name="Bob's", age=9)
    admin = Client()
    admin.force_login(charlie)
    page = admin.get("/admin/basic/student/")
    assert page.status_code == 200
    assert all(name in page.content.decode() for name in ("Alice&#x27;s 0", "Bob&#x27;s"))
