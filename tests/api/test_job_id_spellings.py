"""A job id in any spelling of its UUID reaches the same job; anything else is a 404, never a 500."""
import uuid

import pytest

from basic.models import Job

pytestmark = pytest.mark.django_db


def spellings(job_id: uuid.UUID) -> list[str]:
    text = str(job_id)
    return [text, text.upper(), job_id.hex, job_id.hex.upper(), "{" + text + "}", "{" + text.upper() + "}",
            f"urn:uuid:{text}", f"urn:uuid:{text.upper()}"]


@pytest.fixture
def alices_job(alice):
    return Job.objects.create(kind="students_by_age", owner=alice, status="queued")


def test_every_spelling_reaches_the_same_job(api, alices_job):
    for spelling in spellings(alices_job.id):
        response = api.get(f"/api/jobs/{spelling}/")
        assert response.status_code == 200, spelling
        assert response.json()["id"] == str(alices_job.id)


def test_every_spelling_reaches_the_job_actions(api, alices_job):
    for spelling in spellings(alices_job.id):
        assert api.get(f"/api/jobs/{spelling}/download/").status_code == 409, spelling  # not done yet
    assert api.post(f"/api/jobs/{alices_job.id.hex.upper()}/cancel/").status_code == 202


def test_another_users_job_is_404_in_every_spelling(client_for, bob, alices_job):
    for spelling in spellings(alices_job.id):
        assert client_for(bob).get(f"/api/jobs/{spelling}/").status_code == 404, spelling


@pytest.mark.parametrize("job_id", ["nope", "{}", "urn:uuid:", "g" * 32, "1" * 31, "1" * 33, "{" + "1" * 32,
                                    "urn:uuid:" + "z" * 36,
                                    "URN:UUID:" + "1" * 32, "%7B" + "1" * 32 + "%7D", "1" * 64, "1" * 200])
def test_malformed_ids_are_404(api, job_id):
    response = api.get(f"/api/jobs/{job_id}/")
    assert response.status_code == 404, job_id
