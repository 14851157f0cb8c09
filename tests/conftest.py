"""Shared fixtures. The test Redis and Django settings are set up by tests/session_setup.py.

The same people in every access test: alice owns things, bob must not see them, charlie is staff.
"""
import logging
import uuid
from pathlib import Path

import pytest

from tests import session_setup


@pytest.fixture(scope="session")
def scratch_dir() -> Path:
    return session_setup.scratch_dir()


@pytest.fixture(scope="session", autouse=True)
def kept_connections_closed_at_the_end(django_db_setup):
    """Connections kept for reuse (basic/core/kept_connections.py) are closed before the test
    database is dropped: PostgreSQL refuses to drop a database with sessions on it."""
    from basic.core.kept_connections import close_all_kept

    yield
    close_all_kept()


@pytest.fixture(scope="session", autouse=True)
def asgi_application_loaded():
    """app/asgi.py runs django.setup(), which configures logging again and so drops pytest's log
    capture from the root logger: imported first inside a test, that test's `caplog` saw nothing
    (a socket test failed alone and passed after others). Loaded once, before any test."""
    import app.asgi  # noqa: F401


@pytest.fixture(autouse=True)
def private_cache(settings):
    """Each test its own throttle counters (the app's cache is the shared Redis)."""
    settings.CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache",
                                   "LOCATION": uuid.uuid4().hex}}


@pytest.fixture(autouse=True)
def quick_password_hashing(settings):
    """Users made in-process (alice, bob, ...) hash their password with a cheap hasher: PBKDF2's
    million rounds cost about a second of CPU per user, minutes over the suite. Live stacks, which
    sign in as a browser does, keep the deployment's hashers."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def on_commit_as_in_production(monkeypatch):
    """A `django_db` test runs inside a transaction that never commits, so `transaction.on_commit`
    hooks (services.job_start sends its task by one) would never run. Code outside any atomic block
    of its own runs in autocommit in production, where the hook runs at once: do the same here when
    the only open blocks are the test's own (Django marks them `_from_testcase`, as it does for
    `durable`). Hooks registered inside a block the test or the code opens wait for its commit."""
    from django.db.backends.base.base import BaseDatabaseWrapper

    real_on_commit = BaseDatabaseWrapper.on_commit

    def on_commit(self, func, robust=False):
        if self.atomic_blocks and all(block._from_testcase for block in self.atomic_blocks):
            if not robust:
                return func()
            try:
                return func()
            except Exception:  # a robust hook's error is logged, not raised, as Django does
                logging.getLogger("django.db.backends.base").exception("on_commit hook %r failed", func)
                return None
        return real_on_commit(self, func, robust)

    monkeypatch.setattr(BaseDatabaseWrapper, "on_commit", on_commit)


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
    """Record what would be sent to the broker instead of queueing (no worker runs in these tests).
    A key the message would carry in with it (the job's queue marker) is set, as the broker's
    transport would (basic/core/broker_transport.py; tests/unit/core/test_broker_transport.py)."""
    from app.celery import app
    from basic.core.broker_transport import WITH_MESSAGE
    from basic.core.redis_clients import sync_redis

    calls = []

    def send_task(name, *args, **kwargs):
        if also := (kwargs.get("headers") or {}).get(WITH_MESSAGE):
            key, value, seconds = also
            sync_redis().set(key, value, ex=seconds)
        calls.append({"name": name, **kwargs})

    monkeypatch.setattr(app, "send_task", send_task)
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
