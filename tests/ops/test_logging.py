"""LOG_FORMAT=json lines with `extra` fields, text lines that show them too, and one log line per
HTTP request."""
import io
import json
import logging

import pytest
from django.test import AsyncClient, Client

from basic.ops.log_format import JsonFormatter, TextFormatter

from .conftest import manage


def json_lines(emit) -> list[dict]:
    return [json.loads(line) for line in formatted(emit, JsonFormatter()).splitlines()]


def formatted(emit, formatter: logging.Formatter) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    logger = logging.getLogger("tests.ops.json")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        emit(logger)
    finally:
        logger.removeHandler(handler)
    return stream.getvalue()


def test_a_text_line_shows_the_fields_the_message_does_not_say():
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    def emit(logger):
        logger.info("job started", extra={"job": "0e39-j1", "kind": "report", "owner": 7, "gone": None,
                                          "obj": Thing()})
        logger.info("%s %s %s", "POST", "/api/jobs/", 202, extra={"method": "POST", "path": "/api/jobs/",
                                                                  "status": 202, "user": "alice"})
        logger.info("plain")

    lines = [line.split(" tests.ops.json: ", 1)[1] for line in formatted(emit, TextFormatter()).splitlines()]
    assert lines == ["job started job=0e39-j1 kind=report owner=7",  # plain values only
                     "POST /api/jobs/ 202 user=alice",  # what the message says is not said again
                     "plain"]


def test_one_json_object_per_line_with_extra_fields():
    class Thing:
        def __str__(self) -> str:
            return "a thing"

    def emit(logger):
        logger.info("job %s started\nsecond line", "j1", extra={"job": "j1", "kind": "report", "n": 3,
                                                                "obj": Thing(), "level": "clash"})
        try:
            raise ValueError("bad")
        except ValueError:
            logger.exception("it failed", extra={"job": "j2"})

    first, second = json_lines(emit)
    assert first["level"] == "INFO" and first["logger"] == "tests.ops.json"
    assert first["message"] == "job j1 started\nsecond line"
    assert first["ts"].endswith("Z") and "T" in first["ts"]
    assert (first["job"], first["kind"], first["n"], first["obj"]) == ("j1", "report", 3, "a thing")
    assert first["extra_level"] == "clash"
    assert "exc" not in first and "args" not in first and "msg" not in first
    assert second["level"] == "ERROR" and second["job"] == "j2"
    assert "ValueError: bad" in second["exc"]


def test_values_json_cannot_hold_still_give_a_line():
    (line,) = json_lines(lambda logger: logger.warning("odd", extra={"mapping": {1: "a", (2, 3): "b"}}))
    assert line["message"] == "odd" and "mapping" in line


@pytest.mark.django_db
def test_one_line_per_request_with_method_path_status_duration_and_user(caplog, alice):
    client = Client()
    client.force_login(alice)
    with caplog.at_level(logging.INFO, logger="basic.requests"):
        assert client.get("/api/students/?limit=1&token=secret").status_code == 200
        assert Client().get("/api/students/").status_code in (401, 403)
    records = [r for r in caplog.records if r.name == "basic.requests"]
    assert len(records) == 2
    first, second = records
    assert (first.method, first.path, first.status, first.user) == ("GET", "/api/students/", 200, "alice")
    assert isinstance(first.duration_ms, float)
    assert "secret" not in first.getMessage()
    assert (second.status, second.user) in ((401, None), (403, None))


@pytest.mark.django_db
def test_token_users_are_logged_too(caplog, alice):
    with caplog.at_level(logging.INFO, logger="basic.requests"):
        Client().get("/api/students/", HTTP_AUTHORIZATION=f"Token {alice.token}")
    (record,) = [r for r in caplog.records if r.name == "basic.requests"]
    assert (record.status, record.user) == (200, "alice")


async def test_async_requests_are_logged_once(caplog):
    with caplog.at_level(logging.INFO, logger="basic.requests"):
        await AsyncClient().get("/healthz")
    (record,) = [r for r in caplog.records if r.name == "basic.requests"]
    assert (record.path, record.status, record.user) == ("/healthz", 200, None)


def test_log_format_json_configures_every_logger():
    done = manage("shell", "-c", "import logging; logging.getLogger('basic.x').warning('hi', extra={'job': 'j'})",
                  LOG_FORMAT="json", LISTEN_LOOPBACK_ONLY="1")
    assert done.returncode == 0, done.stderr
    line = json.loads(done.stderr.strip().splitlines()[-1])
    assert (line["level"], line["logger"], line["message"], line["job"]) == ("WARNING", "basic.x", "hi", "j")


@pytest.mark.parametrize(("name", "value", "says"), [
    ("LOG_FORMAT", "xml", "LOG_FORMAT='xml': use one of text, json"),
    ("DEBUG", "maybe", "DEBUG='maybe' is not a boolean"),
    ("SECURE_SSL_REDIRECT", "enabled", "SECURE_SSL_REDIRECT='enabled' is not a boolean"),
])
def test_settings_are_parsed_strictly(name, value, says):
    done = manage("check", LISTEN_LOOPBACK_ONLY="1", **{name: value})
    assert done.returncode != 0
    assert says in done.stderr
