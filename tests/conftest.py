"""Shared fixtures. The test Redis and Django settings are set up by tests/session_setup.py.

The same people in every access test: alice owns things, bob must not see them, charlie is staff.
"""
import uuid
from pathlib import Path

import pytest

from tests import session_setup


@pytest.fixture(scope="session")
def scratch_dir() -> Path:
    return session_setup.scratch_dir()


@pytest.fixture(autouse=True)
def private_cache(settings):
    """Each test its own throttle counters (the app's cache is the shared Redis)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": uuid.uuid4().hex}}


@pytest.fixture
def redis_client():
    from basic.core.redis_clients import sync_redis

    return sync_redis()


def _user(username: str, staff: bool = False):
    from basic.accounts.tokens import user_with_token

    user, token = user_with_token(username=username, password=f"{username}-pw", staff=staff)
    user.token = token
    return user


@pytest.fixture
def alice(db):
    return _user("alice")


@pytest.fixture
def bob(db):
    return _user("bob")


@pytest.fixture
def charlie(db):
    return _user("charlie", staff=True)


@pytest.fixture
def queued(monkeypatch):
    """Record what would be sent to the broker instead of queueing (no worker runs in these tests)."""
    from app.celery import app

    calls = []
    monkeypatch.setattr(app, "send_task", lambda name, *args, **kwargs: calls.append({"name": name, **kwargs}))
    return calls


@pytest.fixture
def anon():
    from rest_framework.test import APIClient

    return APIClient()


@pytest.fixture
def client_for():
    from rest_framework.test import APIClient

    def make(user):
        client = APIClient()
        client.force_authenticate(user)
        return client
    return make


@pytest.fixture
def api(alice, client_for):
    """A REST client signed in as alice."""
    return client_for(alice)
