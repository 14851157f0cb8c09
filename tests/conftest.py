"""Shared fixtures. The test Redis and Django settings are set up by tests/session_setup.py."""
from pathlib import Path

import pytest

from tests import session_setup


@pytest.fixture(scope="session")
def scratch_dir() -> Path:
    return session_setup.scratch_dir()


@pytest.fixture
def redis_client():
    from basic.event_store import sync_redis

    return sync_redis()
