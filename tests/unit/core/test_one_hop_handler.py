"""The one-hop handler's request (basic/core/one_hop_handler.py) checks its host against
ALLOWED_HOSTS once per request, and refuses a host not allowed on every call."""
import io

import pytest
from django.core.exceptions import DisallowedHost
from django.http import request as django_request

from basic.core.one_hop_handler import HostOnceRequest, OneHopASGIHandler


def _request(host: bytes) -> HostOnceRequest:
    scope = {"type": "http", "method": "GET", "path": "/api/jobs/", "query_string": b"",
             "headers": [(b"host", host)], "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 8000)}
    return HostOnceRequest(scope, io.BytesIO())


def test_the_host_is_checked_once_per_request(monkeypatch):
    checks = []
    real = django_request.validate_host
    monkeypatch.setattr(django_request, "validate_host", lambda *args: checks.append(args) or real(*args))
    request = _request(b"localhost:8000")
    assert [request.get_host() for _ in range(3)] == ["localhost:8000"] * 3
    assert len(checks) == 1
    assert request.build_absolute_uri("/x") == "http://localhost:8000/x"
    assert len(checks) == 1


def test_a_host_not_allowed_is_refused_every_time():
    request = _request(b"evil.example")
    for _ in range(2):
        with pytest.raises(DisallowedHost):
            request.get_host()


def test_the_handler_makes_requests_of_that_kind():
    assert OneHopASGIHandler.request_class is HostOnceRequest
