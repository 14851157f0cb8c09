"""Database connections a process keeps once Django closes them, for the next thread or task
greenlet that opens one (the database backends basic.core.sqlite_kept and basic.core.postgres_kept).

Django opens a connection per thread, and the gevent worker runs every task in a greenlet of its
own, which Django takes for a new thread: each job opened and closed a connection. On SQLite that
costs about 0.65 ms of CPU (the schema is parsed again, then Django's PRAGMAs and SQL functions),
on PostgreSQL a few milliseconds and a new server process. A kept connection has done all that.

Unlike a pool, nothing ever waits: with none kept, a new connection is opened as before. Only a
connection Django closes cleanly is kept (outside any transaction, in autocommit, no error since it
last committed), at most KEPT_DATABASE_CONNECTIONS per process; anything else is closed as before.
"""
from collections import deque
from typing import Any

from django.conf import settings

_kept: dict[str, deque] = {}  # where a connection goes (a file, a server and database) -> ready ones


class KeptConnections:
    """Mixed into a backend's DatabaseWrapper before it (see the module's docstring)."""

    def _shelf_key(self, conn_params: dict) -> str:
        raise NotImplementedError

    def _can_keep(self, raw: Any) -> bool:
        """Whether this connection, closed by Django, is clean enough to hand out again."""
        raise NotImplementedError

    def _still_good(self, raw: Any) -> bool:
        """Whether a kept connection still works (checked as it is taken)."""
        return True

    def _adopt(self, raw: Any) -> None:
        """What the backend's own get_new_connection would have set on the wrapper."""

    # Whether the connection just opened is a kept one: Django still sends `connection_created` for
    # it, and a receiver with nothing to redo for a connection it saw before can skip it (the SQLite
    # file's permissions: 1.5% of the gevent worker's CPU per trivial job, py-spy, issue 19).
    reused_kept_connection = False

    def get_new_connection(self, conn_params: dict) -> Any:
        shelf = self._shelf = _kept.setdefault(self._shelf_key(conn_params), deque())
        while True:
            try:
                raw = shelf.pop()  # atomic: threads and greenlets never get the same one
            except IndexError:
                self.reused_kept_connection = False
                return super().get_new_connection(conn_params)  # type: ignore[misc]
            if self._still_good(raw):
                self._adopt(raw)
                self.reused_kept_connection = True
                return raw
            _close_quietly(raw)

    def _close(self) -> None:
        raw = self.connection  # type: ignore[attr-defined]
        shelf = getattr(self, "_shelf", None)
        if (raw is not None and shelf is not None and not self.in_atomic_block  # type: ignore[attr-defined]
                and not self.errors_occurred and len(shelf) < settings.KEPT_DATABASE_CONNECTIONS  # type: ignore[attr-defined]
                and self._can_keep(raw)):
            shelf.append(raw)
            return
        super()._close()  # type: ignore[misc]


def _close_quietly(raw: Any) -> None:
    try:
        raw.close()
    except Exception:  # a dead connection may fail to close; it is dropped either way
        pass


def close_all_kept() -> None:
    """Close every kept connection (before dropping a database, e.g. at the end of a test run)."""
    for shelf in _kept.values():
        while shelf:
            _close_quietly(shelf.pop())
