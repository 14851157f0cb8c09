"""The database being unreachable, told apart from a bug, and statements that may wait it out.

A PostgreSQL restart shows as OperationalError ("terminating connection due to administrator
command", "connection refused") and then InterfaceError ("the connection is closed") on the
connection that saw it; SQLite's "database is locked" is an OperationalError too. None of them is
the caller's fault, so a best-effort statement (a progress write, a floor for Redis) skips and the
next one tries again, and a socket being opened is told to come back (basic/realtime/refusals.py).

SQLite raises OperationalError for a bad statement too ("no such column" after a missed migration),
which waiting never mends: `is_outage` tells the two apart by SQLite's own error code, so such a bug
fails a job once instead of leaving it to the recovery again and again.
"""
import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

from basic.core.repeated_log import RepeatedWarning

logger = logging.getLogger(__name__)

DATABASE_OUTAGES = (OperationalError, InterfaceError)
# SQLite's result codes (and their extended forms, e.g. SQLITE_IOERR_FSYNC) that are the file or its
# lock, not the statement: https://www.sqlite.org/rescode.html
SQLITE_OUTAGE_CODES = ("SQLITE_BUSY", "SQLITE_LOCKED", "SQLITE_CANTOPEN", "SQLITE_IOERR", "SQLITE_FULL",
                       "SQLITE_PROTOCOL", "SQLITE_NOMEM")
SKIPPED = RepeatedWarning(logger, "best-effort statements skipped (job progress, cancel checks, heartbeats, "
                                  "batch floors): the database is unreachable")
T = TypeVar("T")


def is_outage(error: BaseException) -> bool:
    """True if `error` is the database being unreachable (worth waiting out), not a bug.

    InterfaceError is always the connection. PostgreSQL's OperationalErrors are the server or the
    connection (a bad statement is a ProgrammingError there); SQLite's carry the library's error
    code on the sqlite3 error Django raised them from, and only the file's codes count."""
    if isinstance(error, InterfaceError):
        return True
    if not isinstance(error, OperationalError):
        return False
    code = getattr(error.__cause__, "sqlite_errorname", None)
    return code is None or code.startswith(SQLITE_OUTAGE_CODES)


def unless_database_down(statement: Callable[[], T], otherwise: T | None = None) -> T | None:
    """`statement()`, or `otherwise` if the database is unreachable. The broken connection is
    closed, so the next statement opens a new one (Django would only do it at a request's end)."""
    try:
        return statement()
    except DATABASE_OUTAGES as error:
        if not is_outage(error):
            raise
        SKIPPED.warning(error)
        try:
            connection.close()
        except Exception:  # it is broken already; the next statement connects afresh
            logger.debug("closing the broken database connection failed", exc_info=True)
        return otherwise
