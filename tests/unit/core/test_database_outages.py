"""An outage told apart from a bug (basic/core/database_outages.py): SQLite raises OperationalError
for both, and only the file's own errors are worth waiting out. Real sqlite3 errors, wrapped the way
Django's backends wrap them."""
import sqlite3

import pytest
from django.db import InterfaceError, OperationalError, ProgrammingError

from basic.core.database_outages import is_outage
from tests.database_errors import wrapped


def test_sqlites_lock_held_elsewhere_is_an_outage(tmp_path):
    database = str(tmp_path / "db.sqlite3")
    holder = sqlite3.connect(database, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        error = wrapped(lambda raw: raw.execute("INSERT INTO t VALUES (1)"), database)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert isinstance(error, OperationalError) and "locked" in str(error)
    assert is_outage(error)


def test_a_database_file_that_cannot_be_opened_is_an_outage(tmp_path):
    error = wrapped(lambda raw: None, str(tmp_path / "missing-folder" / "db.sqlite3"))
    assert isinstance(error, OperationalError) and is_outage(error)


@pytest.mark.parametrize("statement", ["SELECT no_such_column FROM t", "UPDATE t SET", "SELECT * FROM no_such_table"])
def test_a_bad_statement_on_sqlite_is_not_an_outage(tmp_path, statement):
    """"no such column" after a missed migration is an OperationalError on SQLite too: waiting never
    mends it, so a job meeting it must fail once, not go back to the recovery again and again."""
    database = str(tmp_path / "db.sqlite3")
    sqlite3.connect(database).execute("CREATE TABLE t (x)").connection.close()
    error = wrapped(lambda raw: raw.execute(statement), database)
    assert isinstance(error, OperationalError)
    assert not is_outage(error)


def test_other_databases_outages_and_errors_are_told_by_their_class():
    """PostgreSQL raises OperationalError only for the server or the connection (a bad statement is
    a ProgrammingError there), and InterfaceError is always the connection."""
    assert is_outage(OperationalError("terminating connection due to administrator command"))
    assert is_outage(InterfaceError("connection already closed"))
    assert not is_outage(ProgrammingError('column "x" does not exist'))
    assert not is_outage(ValueError("not a database error"))
