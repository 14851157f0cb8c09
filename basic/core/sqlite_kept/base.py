"""Django's SQLite backend, but a closed connection is kept for the next one to open instead of
closed, up to SQLITE_KEPT_CONNECTIONS a process.

Django opens a connection per thread, and the gevent worker runs every task in a greenlet of its
own, which Django takes for a new thread: each job opened and closed a SQLite connection. Opening
one costs about 0.65 ms of CPU (the schema is parsed again, then Django's PRAGMAs and its SQL
functions), nearly a tenth of a trivial job's worker CPU. A kept connection has done all that.

Only a connection Django closes cleanly is kept: outside any transaction, in autocommit, with no
error since it last committed. Anything else is closed as before. A SQLite connection holds nothing
on a server, and it sees other connections' writes and schema changes as a new one would.
"""
from collections import deque

from django.conf import settings
from django.db.backends.sqlite3 import base

_kept: dict[str, deque] = {}  # the database file -> connections ready to hand out


def _shelf(conn_params: dict) -> deque:
    return _kept.setdefault(str(conn_params["database"]), deque())


class DatabaseWrapper(base.DatabaseWrapper):
    def get_new_connection(self, conn_params: dict):  # type: ignore[no-untyped-def]
        shelf = _shelf(conn_params)
        self._shelf = shelf
        try:
            return shelf.pop()  # atomic: threads and greenlets never get the same one
        except IndexError:
            return super().get_new_connection(conn_params)

    def _close(self) -> None:
        raw = self.connection
        shelf = getattr(self, "_shelf", None)
        if (raw is not None and shelf is not None and not self.in_atomic_block and not self.errors_occurred
                and not raw.in_transaction and raw.isolation_level is None
                and len(shelf) < settings.SQLITE_KEPT_CONNECTIONS):
            shelf.append(raw)
            return
        super()._close()
