"""Admin: staff see students and jobs (read-only, download link, cancel action); others don't."""
import pytest
from django.test import Client

from basic.models import Job, Student

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(charlie):
    client = Client()
    client.force_login(charlie)
    return client


@pytest.fixture
def jobs(alice):
    kind = Job._meta.get_field("kind").choices[0][0]
    file_field = {"output_name": "out.csv"} if "output_name" in {f.name for f in Job._meta.fields} else {}
    return {
        "queued": Job.objects.create(kind=kind, owner=alice),
        "done": Job.objects.create(kind=kind, owner=alice, status=Job.Status.DONE, progress=100, **file_field),
        "failed": Job.objects.create(kind=kind, owner=alice, status=Job.Status.FAILED, error="boom"),
    }


def test_student_changelist_search_and_filter(staff_client, alice, bob):
    Student.objects.create(owner=alice, name="Ada Lovelace", age=36)
    Student.objects.create(owner=bob, name="Alan Turing", age=41)  # staff see every owner's
    page = staff_client.get("/admin/basic/student/")
    assert page.status_code == 200
    searched = staff_client.get("/admin/basic/student/", {"q": "lovelace"}).content.decode()
    assert "Ada Lovelace" in searched and "Alan Turing" not in searched
    filtered = staff_client.get("/admin/basic/student/", {"age": "41"}).content.decode()
    assert "Alan Turing" in filtered and "Ada Lovelace" not in filtered


def test_job_changelist_with_download_link_for_done_jobs(staff_client, jobs):
    page = staff_client.get("/admin/basic/job/")
    assert page.status_code == 200
    html = page.content.decode()
    assert f'href="/api/jobs/{jobs["done"].id}/download/"' in html
    assert f"/api/jobs/{jobs['failed'].id}/download/" not in html
    for query in ({"status__exact": "done"}, {"kind__exact": jobs["done"].kind},
                  {"owner__id__exact": str(jobs["done"].owner_id)}):
        assert staff_client.get("/admin/basic/job/", query).status_code == 200


def test_job_search_is_by_exact_id(staff_client, jobs):
    html = staff_client.get("/admin/basic/job/", {"q": str(jobs["done"].id)}).content.decode()
    assert str(jobs["done"].id) in html and str(jobs["failed"].id) not in html
    partial = staff_client.get("/admin/basic/job/", {"q": str(jobs["done"].id)[:8]})
    assert partial.status_code == 200
    assert str(jobs["done"].id) not in partial.content.decode().split("result-list")[-1]


def test_job_change_page_is_read_only(staff_client, jobs):
    job = jobs["failed"]
    page = staff_client.get(f"/admin/basic/job/{job.id}/change/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "boom" in html
    assert 'name="_save"' not in html
    for field in ("status", "error", "progress", "owner", "kind"):
        assert f'name="{field}"' not in html
    staff_client.post(f"/admin/basic/job/{job.id}/change/", {"status": "done", "error": ""})
    job.refresh_from_db()
    assert (job.status, job.error) == (Job.Status.FAILED, "boom")
    assert staff_client.get("/admin/basic/job/add/").status_code == 403
    assert staff_client.get(f"/admin/basic/job/{job.id}/delete/").status_code == 403


def test_cancel_action_cancels_queued_jobs_and_leaves_finished_ones(staff_client, jobs):
    response = staff_client.post("/admin/basic/job/", {
        "action": "cancel_jobs", "_selected_action": [str(jobs["queued"].id), str(jobs["done"].id)]}, follow=True)
    assert response.status_code == 200
    html = response.content.decode()
    assert "Cancelled 1 job(s)" in html and "1 job(s) had already finished" in html
    jobs["queued"].refresh_from_db()
    jobs["done"].refresh_from_db()
    assert jobs["queued"].status == Job.Status.CANCELLED
    assert jobs["done"].status == Job.Status.DONE


def test_non_staff_are_sent_to_the_admin_login(bob, jobs):
    client = Client()
    client.force_login(bob)
    for path in ("/admin/basic/job/", "/admin/basic/student/", f"/admin/basic/job/{jobs['done'].id}/change/"):
        response = client.get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/admin/login/")
    assert Client().get("/admin/basic/job/").status_code == 302
