"""Secrets at rest: var/ (the SQLite database with its tokens, Redis's files), the job files dir and
the SQLite file stay private to the user who runs the app: once world-readable, now 0700 dirs and
0600 files, from every start and from the moment a new database is created."""
import os
import signal
import stat
from pathlib import Path

import pytest

from basic.core import private_files
from basic.ops import stack

from .conftest import manage


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.fixture
def loose(tmp_path: Path) -> dict[str, Path]:
    """A world-readable layout, as `mkdir`, SQLite and Django made it with the usual 022 umask."""
    media, db = tmp_path / "media", tmp_path / "db.sqlite3"
    (media / "jobs" / "some-job").mkdir(parents=True)
    for path in (tmp_path, media, media / "jobs", media / "jobs" / "some-job"):
        path.chmod(0o755)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").write_bytes(b"tokens")
        Path(f"{db}{suffix}").chmod(0o644)
    return {"root": tmp_path, "media": media, "jobs": media / "jobs", "db": db}


def test_keep_private_closes_dirs_and_the_sqlite_files(loose):
    private_files.keep_private(dirs=[loose["root"], loose["jobs"], loose["root"] / "missing"],
                               sqlite_files=[loose["db"]])
    assert mode(loose["root"]) == 0o700 and mode(loose["jobs"]) == 0o700
    for suffix in ("", "-wal", "-shm"):
        assert mode(Path(f"{loose['db']}{suffix}")) == 0o600, suffix
    assert not (loose["root"] / "missing").exists()  # nothing is created at start


def test_in_memory_databases_have_no_file():
    assert private_files.sqlite_path(":memory:") is None
    assert private_files.sqlite_path("file:memorydb_default?mode=memory&cache=shared") is None
    assert private_files.sqlite_path("/srv/var/db.sqlite3") == Path("/srv/var/db.sqlite3")


def test_every_start_makes_the_job_files_dir_and_the_database_private(loose):
    done = manage("check", LISTEN_LOOPBACK_ONLY="1", MEDIA_ROOT=str(loose["media"]),
                  DATABASE_URL=f"sqlite:///{loose['db']}")
    assert done.returncode == 0, done.stderr
    assert mode(loose["jobs"]) == 0o700
    assert all(mode(Path(f"{loose['db']}{suffix}")) == 0o600 for suffix in ("", "-wal", "-shm"))


def test_a_new_database_is_private_from_its_creation(tmp_path):
    db = tmp_path / "new.sqlite3"
    done = manage("migrate", "--noinput", "-v0", LISTEN_LOOPBACK_ONLY="1", DATABASE_URL=f"sqlite:///{db}",
                  MEDIA_ROOT=str(tmp_path / "media"))
    assert done.returncode == 0, done.stderr
    assert mode(db) == 0o600


def test_settings_keep_the_real_var_dir_private():
    """var/ next to manage.py, where `make run` keeps the database: made 0700 by any start."""
    var = Path(stack.BASE_DIR) / "var"
    created = not var.exists()
    var.mkdir(exist_ok=True)
    try:
        var.chmod(0o755)
        assert manage("check", LISTEN_LOOPBACK_ONLY="1").returncode == 0
        assert mode(var) == 0o700
    finally:
        if created:
            var.rmdir()
        else:
            var.chmod(0o700)


def test_runstack_creates_var_private_and_its_processes_write_private_files(tmp_path, monkeypatch, settings):
    """`manage.py runstack` sets a 0077 umask that Redis, Daphne and the worker inherit."""
    from django.core.management import call_command

    class Stop(Exception):
        pass

    def first_process(*args, **kwargs):
        raise Stop

    var = settings.VAR_DIR = tmp_path / "var"
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "metrics"))
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setattr(stack, "start_worker", first_process)
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}  # runstack takes them
    old_umask = os.umask(0o022)
    try:
        with pytest.raises(Stop):
            call_command("runstack")
        assert os.umask(0o077) == 0o077  # (reading the umask sets it: to the same value here)
        assert mode(var) == 0o700
        (var / "db.sqlite3").write_bytes(b"tokens")  # as the processes it starts would create files
        assert mode(var / "db.sqlite3") == 0o600
    finally:
        os.umask(old_umask)
        for sig, handler in handlers.items():
            signal.signal(sig, handler)
