"""Ownership and auth on every REST endpoint: alice owns, bob must not see, charlie is staff."""
import pytest
from rest_framework.test import APIClient

from basic.models import Job

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def no_queue(queued):
    return queued


@pytest.fixture
def alices_job(alice):
    return Job.objects.create(kind="students_by_age", owner=alice, status="done")


JOB_PATHS = [("get", "/api/jobs/{}/"), ("get", "/api/jobs/{}/download/"), ("post", "/api/jobs/{}/cancel/")]


@pytest.mark.parametrize("method, path", [("get", "/api/jobs/"), ("get", "/api/students/"),
                                          ("post", "/api/students/"), ("post", "/api/students/by-age-report/"),
                                          ("post", "/api/students/generate/")] + JOB_PATHS)
def test_anonymous_gets_401_everywhere(anon, alices_job, method, path):
    response = getattr(anon, method)(path.format(alices_job.id))
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"
    assert "detail" in response.json()


@pytest.mark.parametrize("method, path", JOB_PATHS)
def test_another_users_job_is_404_on_every_endpoint(client_for, bob, alices_job, method, path):
    response = getattr(client_for(bob), method)(path.format(alices_job.id))
    assert response.status_code == 404
    assert Job.objects.get(id=alices_job.id).status == "done"


def test_job_list_shows_only_your_own(client_for, alice, bob, alices_job):
    Job.objects.create(kind="students_by_age", owner=bob)
    listed = client_for(alice).get("/api/jobs/").json()["results"]
    assert [job["id"] for job in listed] == [str(alices_job.id)]
    assert listed[0]["owner"] == "alice"


def test_staff_see_every_job(client_for, charlie, alices_job, bob):
    Job.objects.create(kind="students_by_age", owner=bob)
    assert client_for(charlie).get("/api/jobs/").json()["count"] == 2
    assert client_for(charlie).get(f"/api/jobs/{alices_job.id}/").status_code == 200


def test_started_job_belongs_to_the_caller(api, alice):
    job_id = api.post("/api/students/by-age-report/").json()["id"]
    assert Job.objects.get(id=job_id).owner == alice


def test_token_endpoint_and_token_auth(alice):
    client = APIClient()
    bad = client.post("/api/auth/token/", {"username": "alice", "password": "wrong"}, format="json")
    assert bad.status_code == 400
    token = client.post("/api/auth/token/", {"username": "alice", "password": "alice-pw"}, format="json")
    assert token.status_code == 200
    new_key = token.json()["token"]
    assert new_key != alice.token  # each sign-in makes a new token (tests/api/test_api_tokens.py)
    for key in (alice.token, new_key):
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        assert client.get("/api/jobs/").status_code == 200
    client.credentials(HTTP_AUTHORIZATION="Token forged")
    assert client.get("/api/jobs/").status_code == 401


def test_session_writes_need_csrf(alice):
    client = APIClient(enforce_csrf_checks=True)
    assert client.login(username="alice", password="alice-pw")
    refused = client.post("/api/students/", {"name": "Eve", "age": 20}, format="json")
    assert refused.status_code == 403
    assert "CSRF" in refused.json()["detail"]
    client.get("/accounts/login/")  # sets the csrftoken cookie
    ok = client.post("/api/students/", {"name": "Eve", "age": 20}, format="json",
                     HTTP_X_CSRFTOKEN=client.cookies["csrftoken"].value)
    assert ok.status_code == 201


def test_job_triggers_are_throttled_per_user(client_for, alice, bob, settings):
    from rest_framework.settings import api_settings
    from rest_framework.throttling import ScopedRateThrottle

    original = ScopedRateThrottle.THROTTLE_RATES
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"job_trigger": "3/min"}}
    ScopedRateThrottle.THROTTLE_RATES = api_settings.DEFAULT_THROTTLE_RATES
    try:
        codes = [client_for(alice).post("/api/students/by-age-report/").status_code for _ in range(4)]
        assert codes == [202, 202, 202, 429]
        assert client_for(bob).post("/api/students/by-age-report/").status_code == 202
        assert client_for(alice).get("/api/students/").status_code == 200  # only triggers are throttled
    finally:
        ScopedRateThrottle.THROTTLE_RATES = original  # the other scopes' rates too
