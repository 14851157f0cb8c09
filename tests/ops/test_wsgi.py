"""app/wsgi.py, the plain-HTTP entry point `bench_jobs --http-server gunicorn` measures beside
Daphne (docs/benchmarks.md): the same middleware answers through it as through app/asgi.py."""
import json
from wsgiref.util import setup_testing_defaults

import pytest

# Django's WSGI handler checks the database connection at each request's start and end.
pytestmark = pytest.mark.django_db


def call(path: str) -> tuple[str, dict[str, str], bytes]:
    from app.wsgi import application

    environ: dict = {"PATH_INFO": path, "REQUEST_METHOD": "GET", "HTTP_HOST": "127.0.0.1"}
    setup_testing_defaults(environ)
    answer: dict = {}

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> None:
        answer["status"], answer["headers"] = status, dict(headers)

    body = b"".join(application(environ, start_response))
    return answer["status"], answer["headers"], body


def test_the_liveness_probe_answers_through_wsgi():
    status, _, body = call("/healthz")
    assert status.startswith("200") and json.loads(body)["status"] == "ok"


def test_the_api_refuses_an_anonymous_call_with_its_json_reason_through_wsgi():
    status, headers, body = call("/api/jobs/")
    assert status.startswith("401") and headers["Content-Type"].startswith("application/json")
    assert "detail" in json.loads(body)
