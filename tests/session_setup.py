"""Pytest plugin (loaded with `-p tests.session_setup`): a private Redis before Django loads.

Settings read REDIS_URL when they load, and pytest-django loads them while it loads the first
conftest files, so the test Redis has to be up before that: this hook runs first.
With TEST_DATABASE=postgres the same goes for PostgreSQL (tests/databases.py): the test process's
own database (pytest-django's) and every live stack's are then on it.
"""
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from basic.ops import stack
from tests import databases

_state: dict = {}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, parser: pytest.Parser, args: list[str]) -> None:
    scratch = Path(tempfile.mkdtemp(prefix="jobs-tests-"))
    _state["scratch"] = scratch
    os.environ.setdefault("MEDIA_ROOT", str(scratch / "media"))
    os.environ["DJANGO_SETTINGS_MODULE"] = "app.settings"
    os.environ.setdefault("CHANNEL_PREFIX", f"test{os.getpid()}")
    # A tiny job kind for lifecycle tests, in this process and in every worker the tests start.
    os.environ.setdefault("JOB_KIND_EXTRA_MODULES", "tests.job_kinds")
    # Every server the tests start binds 127.0.0.1, so the built-in SECRET_KEY is allowed.
    os.environ.setdefault("LISTEN_LOOPBACK_ONLY", "1")
    if databases.chosen_database() == "postgres" and not databases.external_postgres_url():
        reason = databases.postgres_unavailable_reason()
        if reason and databases.in_ci():  # before anything is started that would be left running
            raise pytest.UsageError(f"TEST_DATABASE=postgres: {reason}; CI is set, so it must run")
        if reason:
            _state["postgres_missing"] = reason
        else:  # pytest-django creates test_jobs on it
            os.environ["DATABASE_URL"] = databases.postgres_server(scratch).database_url("jobs")
    if not os.environ.get("REDIS_URL"):
        port = stack.free_port()
        _state["redis"] = stack.start_redis(port, scratch / "redis")
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if "postgres_missing" in _state:
        skip = pytest.mark.skip(reason=f"TEST_DATABASE=postgres: {_state['postgres_missing']}")
        for item in items:
            item.add_marker(skip)


def pytest_unconfigure(config: pytest.Config) -> None:
    if "redis" in _state:
        stack.stop(_state.pop("redis"))
    databases.stop_private_postgres()
    if "scratch" in _state:
        shutil.rmtree(_state.pop("scratch"), ignore_errors=True)


def scratch_dir() -> Path:
    return _state["scratch"]
