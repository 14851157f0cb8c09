"""Test session setup: a private Redis (embedded, unless REDIS_URL points at one) and Django.

Settings read REDIS_URL when they load, so Redis must be up before pytest-django loads them;
pytest-django's own `pytest_configure` runs last, after this one.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from basic import stack

_state: dict = {}


def pytest_configure(config: pytest.Config) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="jobs-tests-"))
    _state["scratch"] = scratch
    os.environ.setdefault("MEDIA_ROOT", str(scratch / "media"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "app.settings"
    os.environ.setdefault("CHANNEL_PREFIX", f"test{os.getpid()}")
    if not os.environ.get("REDIS_URL"):
        port = stack.free_port()
        _state["redis"] = stack.start_redis(port, scratch / "redis")
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    from django.conf import settings

    settings.INSTALLED_APPS  # noqa: B018  (load settings now, so pytest-django sets Django up)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "redis" in _state:
        stack.stop(_state["redis"])
    if "scratch" in _state:
        shutil.rmtree(_state["scratch"], ignore_errors=True)


@pytest.fixture(scope="session")
def scratch_dir() -> Path:
    return _state["scratch"]


@pytest.fixture
def redis_client():
    from basic.event_store import sync_redis

    return sync_redis()
