"""Which database the tests' stacks use: SQLite files (the default) or PostgreSQL
(`TEST_DATABASE=postgres`, the second pass of `make test`).

PostgreSQL comes from `DATABASE_URL` when it names a postgres server (its user must be allowed to
create databases), else from a private server this session starts
(tests/postgres.py) the first time a test needs one, as the embedded Redis is. Every live stack gets a
database of its own on it, so stacks never share state.

Without PostgreSQL's programs, tests that need it skip locally and fail in CI (`CI` set).
"""
import itertools
import os
import re
import threading
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests import postgres

CHOICES = ("sqlite", "postgres")
_lock = threading.Lock()
_state: dict = {}
_names = itertools.count(1)


def in_ci() -> bool:
    return bool(os.environ.get("CI"))


def chosen_database() -> str:
    """The session's database for live stacks (and, with postgres, for the test process itself)."""
    choice = os.environ.get("TEST_DATABASE", "").strip().lower() or "sqlite"
    if choice not in CHOICES:
        raise pytest.UsageError(f"TEST_DATABASE={choice!r}: use one of {', '.join(CHOICES)}")
    return choice


def external_postgres_url() -> str | None:
    url = os.environ.get("DATABASE_URL", "")
    return url if url.startswith(("postgres://", "postgresql://")) else None


@dataclass
class PostgresServer:
    """A server the tests may create databases on: `admin_url` is any database on it."""

    admin_url: str

    def database_url(self, name: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit((parts.scheme, parts.netloc, f"/{name}", parts.query, ""))

    def create_database(self, name: str) -> str:
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)

    def fresh_database(self, label: str) -> str:
        """A new empty database named after `label` (and this process), for one stack."""
        clean = re.sub(r"[^a-z0-9_]", "_", label.lower())[:40]
        return self.create_database(f"it_{clean}_{os.getpid()}_{next(_names)}")


def postgres_unavailable_reason() -> str | None:
    if external_postgres_url():
        return None
    return postgres.postgres_missing_reason()


def postgres_server(scratch: Path | None = None) -> PostgresServer:
    """The session's PostgreSQL: DATABASE_URL's server, or a private one started now (once)."""
    with _lock:
        if "server" not in _state:
            external = external_postgres_url()
            if external:
                _state["server"] = PostgresServer(external)
            else:
                private = postgres.start_postgres(scratch / "postgres" if scratch else None)
                _state["private"] = private
                _state["server"] = PostgresServer(private.url)
        return _state["server"]


def require_postgres(scratch: Path | None = None) -> PostgresServer:
    """For a test that needs PostgreSQL: skip without it (fail in CI)."""
    reason = postgres_unavailable_reason()
    if reason:
        if in_ci():
            pytest.fail(f"{reason}; CI is set, so the PostgreSQL tests must run")
        pytest.skip(reason)
    return postgres_server(scratch)


def stop_private_postgres() -> None:
    with _lock:
        private = _state.pop("private", None)
        _state.pop("server", None)
    if private is not None:
        postgres.stop_postgres(private)
