"""Real database errors for tests that need one: sqlite3's own, wrapped as Django's backends wrap
them (so `__cause__` carries the library's error code, as basic/core/database_outages.py reads)."""
import sqlite3
import types
from collections.abc import Callable


def wrapped(statement: Callable[[sqlite3.Connection], object], database: str) -> Exception:
    """What Django raises for `statement` failing on a sqlite3 connection to `database`."""
    from django.db.utils import DatabaseErrorWrapper

    raw = None
    try:
        with DatabaseErrorWrapper(types.SimpleNamespace(Database=sqlite3, errors_occurred=False)):
            raw = sqlite3.connect(database, timeout=0)
            statement(raw)
    except Exception as error:  # noqa: BLE001 - the error is what the caller wants
        return error
    finally:
        if raw is not None:
            raw.close()
    raise AssertionError("the statement did not fail")


def a_bad_statement() -> Exception:
    """SQLite's OperationalError for a column that does not exist (a missed migration): a bug."""
    return wrapped(lambda raw: raw.execute("SELECT no_such_column FROM sqlite_master"), ":memory:")
