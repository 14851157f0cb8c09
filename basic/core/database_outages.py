"""The database being unreachable, told apart from a bug, and statements that may wait it out.

A PostgreSQL restart shows as OperationalError ("terminating connection due to administrator
command", "connection refused") and then InterfaceError ("the connection is closed") on the
connection that saw it; SQLite's "database is locked" is an OperationalError too. None of them is
the caller's fault, so a best-effort statement (a progress write, a floor for Redis) skips and the
next one tries again, and a socket being opened is told to come back (basic/realtime/refusals.py).
"""
import logging
from collections.abc import Callable
from typing import TypeVar

from django.db import InterfaceError, OperationalError, connection

from basic.core.repeated_log import RepeatedWarning

logger = logging.getLogger(__name__)

DATABASE_OUTAGES = (OperationalError, InterfaceError)
SKIPPED = RepeatedWarning(logger, "best-effort statements skipped (job progress, cancel checks, heartbeats, "
                                  "batch floors): the database is unreachable")
T = TypeVar("T")


def unless_database_down(statement: Callable[[], T], otherwise: T | None = None) -> T | None:
    """`statement()`, or `otherwise` if the database is unreachable. The broken connection is
    closed, so the next statement opens a new one (Django would only do it at a request's end)."""
    try:
        return statement()
    except DATABASE_OUTAGES as error:
        SKIPPED.warning(error)
        try:
            connection.close()
        except Exception:  # it is broken already; the next statement connects afresh
            logger.debug("closing the broken database connection failed", exc_info=True)
        return otherwise
