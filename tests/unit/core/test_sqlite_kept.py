"""SQLite connections kept once closed, for the next thread or task greenlet that opens one
(basic/core/kept_connections.py). Each gevent task, and each request on a thread of its own, opened a
connection: ~0.65 ms of CPU, a tenth of a trivial job's worker CPU. Only a connection closed cleanly
may be handed out again: never one inside a transaction or after an error."""
import threading

import pytest
from django.db import OperationalError, connections, transaction
from django.db.backends.sqlite3 import base as django_sqlite

from basic.core import kept_connections
from basic.core.sqlite_kept import base as kept


@pytest.fixture(autouse=True)
def its_own_database(django_db_blocker):
    """These tests use a file database of their own, not the session's test database."""
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def wrapper_for(tmp_path, monkeypatch):
    """DatabaseWrappers of one file database, with an empty shelf and a count of real opens."""
    monkeypatch.setattr(kept_connections, "_kept", {})
    opened = []
    real = django_sqlite.DatabaseWrapper.get_new_connection

    def counting(self, conn_params):
        opened.append(1)
        return real(self, conn_params)

    monkeypatch.setattr(django_sqlite.DatabaseWrapper, "get_new_connection", counting)
    settings_dict = {**connections["default"].settings_dict, "NAME": str(tmp_path / "kept.sqlite3"),
                     "ENGINE": "basic.core.sqlite_kept", "CONN_MAX_AGE": 0}
    settings_dict["OPTIONS"] = {"init_command": "PRAGMA journal_mode=WAL;", "timeout": 5}

    def make():
        return kept.DatabaseWrapper(dict(settings_dict), alias="kept-test")
    make.opened = opened
    first = make()
    with first.cursor() as cursor:
        cursor.execute("CREATE TABLE item (name TEXT UNIQUE)")
    first.close()
    return make


def shelf(wrapper) -> list:
    return list(kept_connections._kept[f"sqlite:{wrapper.settings_dict['NAME']}"])


def query(wrapper) -> object:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM item")
        cursor.fetchone()
    return wrapper.connection


def test_a_cleanly_closed_connection_is_handed_to_the_next_opener(wrapper_for):
    first_raw = query(first := wrapper_for())
    first.close()
    second = wrapper_for()
    assert query(second) is first_raw
    assert wrapper_for.opened == [1]  # the fixture's; no other real open
    assert second.connection.isolation_level is None  # autocommit, as Django set it


def test_writes_through_a_kept_connection_are_seen_by_the_next_user_on_another_thread(wrapper_for):
    writer = wrapper_for()
    with writer.cursor() as cursor:
        cursor.execute("INSERT INTO item VALUES ('a')")
    writer.close()
    seen = []

    def read() -> None:
        reader = wrapper_for()
        with reader.cursor() as cursor:
            cursor.execute("SELECT name FROM item")
            seen.extend(row[0] for row in cursor.fetchall())
        reader.close()

    thread = threading.Thread(target=read)
    thread.start()
    thread.join(10)
    assert seen == ["a"] and wrapper_for.opened == [1]


def test_two_openers_at_once_never_share_a_connection(wrapper_for):
    one, two = wrapper_for(), wrapper_for()
    assert query(one) is not query(two)
    one.close()
    two.close()
    assert len(shelf(one)) == 2


def test_a_connection_closed_inside_a_transaction_is_closed_not_kept(wrapper_for):
    wrapper = wrapper_for()
    connections[wrapper.alias] = wrapper  # atomic() finds a connection by its alias
    try:
        with pytest.raises(RuntimeError), transaction.atomic(using=wrapper.alias):
            with wrapper.cursor() as cursor:
                cursor.execute("INSERT INTO item VALUES ('half-written')")
            raw = wrapper.connection
            wrapper.close()  # e.g. a worker killing the task mid-transaction
            raise RuntimeError("the task ends here")
    finally:
        del connections[wrapper.alias]
    assert raw not in shelf(wrapper)
    reader = wrapper_for()
    with reader.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM item")
        assert cursor.fetchone()[0] == 0  # nothing half-written reached the next user


def test_a_connection_with_an_error_since_its_last_commit_is_closed_not_kept(wrapper_for):
    wrapper = wrapper_for()
    with wrapper.cursor() as cursor:
        with pytest.raises(OperationalError):  # Django marks the connection (not for IntegrityError)
            cursor.execute("SELECT * FROM no_such_table")
    assert wrapper.errors_occurred
    wrapper.close()
    assert not shelf(wrapper)


def test_no_more_are_kept_than_the_setting_allows(wrapper_for, settings):
    settings.KEPT_DATABASE_CONNECTIONS = 1
    wrappers = [wrapper_for() for _ in range(3)]
    for wrapper in wrappers:
        query(wrapper)
    for wrapper in wrappers:
        wrapper.close()
    assert len(shelf(wrappers[0])) == 1



def test_a_kept_connection_is_not_made_private_again_but_a_new_one_is(wrapper_for, monkeypatch):
    from basic.core import private_files

    checked = []
    monkeypatch.setattr(private_files, "private_sqlite", checked.append)
    first = wrapper_for()
    query(first)  # the fixture's connection, from the shelf: its file was checked when it was opened
    assert first.reused_kept_connection and checked == []
    second = wrapper_for()
    query(second)  # the shelf is empty while the first holds its connection: a new one
    assert not second.reused_kept_connection and len(checked) == 1
