"""What the product hands out is safe: 503s, 500s, job errors and readiness reasons say what failed
and what to do, never a host, port, file path or exception text; those go to the log."""
import pytest
from django.db import DatabaseError
from django.db import OperationalError as DjangoOperationalError
from kombu.exceptions import OperationalError

from basic.api import errors
from basic.core import redis_clients
from basic.jobs import services
from basic.models import Job
from basic.ops import health
from basic.ops.stack import free_port
from tests import job_kinds

pytestmark = pytest.mark.django_db

LEAKS = ("127.0.0.1", "10.1.2.3", "localhost", "/srv/", ".py", ".sqlite3", "Error 111", "refused",
         "Traceback", "Exception", "Error:")


def assert_clean(text: str, *also: str) -> None:
    for leak in (*LEAKS, *also):
        assert leak not in text, f"{leak!r} leaked into {text!r}"


@pytest.fixture
def redis_down(settings, monkeypatch):
    """The app's Redis client and Celery's broker pointed at a closed port (the real ones come back
    after the test)."""
    from app.celery import app as celery_app

    port = free_port()
    settings.REDIS_URL = f"redis://127.0.0.1:{port}/0"
    monkeypatch.setattr(redis_clients, "_sync_client", None)
    monkeypatch.setattr(redis_clients, "_scripts", {})
    monkeypatch.setattr(celery_app.conf, "broker_url", settings.REDIS_URL)
    monkeypatch.setattr(celery_app, "_pool", None)  # both pools are made again for that URL
    monkeypatch.setattr(celery_app.amqp, "_producer_pool", None)
    monkeypatch.setattr("basic.jobs.publish.TERMINAL_PUSH_ATTEMPTS", 1)  # no 5 s of retries for the failed event
    return port


def test_redis_down_is_a_503_that_names_no_host_or_port_and_the_log_has_them(api, alice, redis_down, caplog):
    job = Job.objects.create(kind=job_kinds.NAME, owner=alice)
    response = api.post(f"/api/jobs/{job.id}/cancel/")
    assert response.status_code == 503
    assert response.json() == {"detail": errors.REDIS_DOWN}
    assert_clean(response.content.decode(), str(redis_down))
    assert str(redis_down) in caplog.text and f"/api/jobs/{job.id}/cancel/" in caplog.text


def test_redis_down_at_start_is_a_503_and_the_failed_job_says_what_to_do(api, redis_down, caplog):
    response = api.post("/api/jobs/", {"kind": job_kinds.NAME}, format="json")
    assert response.status_code == 503
    assert response.json() == {"detail": services.BROKER_DOWN}
    assert_clean(response.content.decode(), str(redis_down))
    job = Job.objects.get()
    assert (job.status, job.error) == ("failed", services.BROKER_DOWN)
    assert str(job.id) in caplog.text and str(redis_down) in caplog.text


@pytest.mark.parametrize("error, status, detail", [
    (OperationalError("Error 111 connecting to 10.1.2.3:6380. Connection refused."), 503, errors.REDIS_DOWN),
    (DatabaseError("unable to open database file /srv/var/db.sqlite3"), 503, errors.DATABASE_DOWN),
    (DjangoOperationalError("connection to server at 10.1.2.3:6543 failed"), 503, errors.DATABASE_DOWN),
    (RuntimeError("KeyError in /srv/app/basic/jobs/services.py line 3: 'secret'"), 500, errors.INTERNAL_ERROR),
])
def test_internal_failures_answer_a_fixed_sentence(api, alice, monkeypatch, caplog, error, status, detail):
    job = Job.objects.create(kind=job_kinds.NAME, owner=alice)

    def broken(**kwargs):
        raise error

    monkeypatch.setattr(services, "job_cancel", broken)
    response = api.post(f"/api/jobs/{job.id}/cancel/")
    assert response.status_code == status
    assert response.json() == {"detail": detail}
    assert_clean(response.content.decode(), "6380", "secret")
    assert str(error) in caplog.text and str(job.id) in caplog.text  # the log has it, with the job


def test_a_database_outage_is_one_line_without_a_traceback_per_request(api, alice, monkeypatch, caplog):
    """A database restart fails every request in flight alike: a line every 10 s, not a traceback each."""
    jobs = [Job.objects.create(kind=job_kinds.NAME, owner=alice) for _ in range(3)]
    monkeypatch.setattr(errors.DATABASE_UNREACHABLE, "_quiet_until", 0.0)

    def unreachable(**kwargs):
        raise DjangoOperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(services, "job_cancel", unreachable)
    for job in jobs:
        response = api.post(f"/api/jobs/{job.id}/cancel/")
        assert (response.status_code, response.json()) == (503, {"detail": errors.DATABASE_DOWN})
    lines = [record for record in caplog.records if record.name == "basic.api.errors"]
    assert len(lines) == 1 and lines[0].exc_info is None and str(jobs[0].id) in lines[0].getMessage()


def test_every_fixed_sentence_says_what_to_do():
    for sentence in (errors.REDIS_DOWN, errors.DATABASE_DOWN, errors.INTERNAL_ERROR, services.BROKER_DOWN):
        assert "try again" in sentence.lower()
        assert_clean(sentence)


def test_a_crashing_readiness_check_names_no_exception():
    def crashing(timeout):
        raise ConnectionResetError("reset by 10.1.2.3:5432")

    result = health.run_checks({"database": crashing}, timeout=0.5)["database"]
    assert result["ok"] is False
    assert result["error"] == "The database check failed; the server log has the details."
    assert_clean(result["error"], "5432", "ConnectionResetError")
