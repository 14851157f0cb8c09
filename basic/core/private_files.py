"""Keep local state private to the user who runs the app: var/ holds the SQLite database (password
hashes, API tokens, sessions), the embedded Redis's files and the metrics, and the job files dir holds
users' uploads and results, so no other account on the machine may read them (0700 dirs, 0600 files).

Settings call `keep_private` at every start and `connect_signals` makes each new SQLite file private
as it is created. Settings load this module: it must not read settings.
"""
import os
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

DIR_MODE, FILE_MODE = 0o700, 0o600
SQLITE_SIDE_FILES = ("-wal", "-shm", "-journal")  # SQLite's files beside the database


def _restrict(path: Path, mode: int) -> None:
    """chmod `path` to `mode` if it exists, is ours and is not that already. Another user's path is
    left to its owner (chmod would fail); a chmod that fails (a read-only mount) is warned about."""
    try:
        info = path.stat()
    except (FileNotFoundError, NotADirectoryError):
        return
    if info.st_uid != os.getuid() or stat.S_IMODE(info.st_mode) == mode:
        return
    try:
        path.chmod(mode)
    except OSError as exc:
        warnings.warn(f"could not make {path} private ({oct(mode)}): {exc}", RuntimeWarning, stacklevel=2)


def private_dir(path: Path, *, create: bool = False) -> None:
    if create:
        path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    _restrict(path, DIR_MODE)


def sqlite_path(name: Any) -> Path | None:
    """The file of a SQLite database NAME, or None for an in-memory or URI one."""
    text = str(name or "")
    return None if not text or text == ":memory:" or text.startswith("file:") else Path(text)


def private_sqlite(database: Path) -> None:
    for suffix in ("", *SQLITE_SIDE_FILES):
        _restrict(database.with_name(database.name + suffix), FILE_MODE)


def keep_private(*, dirs: Iterable[Path], sqlite_files: Iterable[Path]) -> None:
    """At start: the given dirs 0700 and SQLite files 0600, those that exist (nothing is created)."""
    for path in dirs:
        private_dir(path)
    for path in sqlite_files:
        private_sqlite(path)


def _on_connection(sender: Any, connection: Any, **kwargs: Any) -> None:
    if getattr(connection, "reused_kept_connection", False):  # its file was seen when it was opened
        return
    if connection.vendor == "sqlite" and (path := sqlite_path(connection.settings_dict.get("NAME"))):
        private_sqlite(path)


def connect_signals() -> None:
    """A SQLite file is created by its first connection (`manage.py migrate`): make it 0600 then, not
    at the next start."""
    from django.db.backends.signals import connection_created

    connection_created.connect(_on_connection, dispatch_uid="basic.core.private_files")
