"""PostgreSQL connections kept once closed, for the next task greenlet of a worker
(basic/core/kept_connections.py, basic/core/postgres_kept). Opening one was a third of a trivial
job's worker CPU. One the server dropped meanwhile (a restart) must not fail the job that takes it,
and one closed inside a transaction must never be handed out. Runs in the PostgreSQL pass."""
import time

import pytest
from django.db import connection, connections  # noqa: F401 (the skipif reads connection)

from basic.core import kept_connections
from basic.core.postgres_kept import base as kept

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif("connection.vendor != 'postgresql'", reason="the PostgreSQL pass runs it"),
]


@pytest.fixture
def wrapper_for(monkeypatch):
    monkeypatch.setattr(kept_connections, "_kept", {})
    settings_dict = {**connection.settings_dict, "ENGINE": "basic.core.postgres_kept", "CONN_MAX_AGE": 0}
    settings_dict["OPTIONS"] = {}
    made = []

    def make():
        made.append(kept.DatabaseWrapper(dict(settings_dict), alias="kept-test"))
        return made[-1]
    yield make
    for wrapper in made:
        wrapper.close()
    kept_connections.close_all_kept()


def backend_pid(wrapper) -> int:
    with wrapper.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return cursor.fetchone()[0]


def test_a_cleanly_closed_connection_is_handed_to_the_next_opener(wrapper_for):
    first = wrapper_for()
    pid = backend_pid(first)
    first.close()
    second = wrapper_for()
    assert backend_pid(second) == pid
    assert second.connection.autocommit and second.isolation_level is not None


def test_a_kept_connection_the_server_dropped_is_replaced_not_handed_out(wrapper_for):
    first, admin = wrapper_for(), wrapper_for()
    pid = backend_pid(first)
    backend_pid(admin)  # open before `first` is kept, so it is not the one it takes
    first.close()
    with admin.cursor() as cursor:  # as a PostgreSQL restart would
        cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
        for _ in range(200):  # the signal is sent; wait until the backend is gone
            cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", [pid])
            if cursor.fetchone()[0] == 0:
                break
            time.sleep(0.01)
    second = wrapper_for()
    assert backend_pid(second) != pid  # a new one, and the statement worked


def test_a_connection_closed_inside_a_transaction_is_closed_not_kept(wrapper_for):
    from django.db import transaction

    wrapper = wrapper_for()
    pid = backend_pid(wrapper)
    connections[wrapper.alias] = wrapper  # atomic() finds a connection by its alias
    try:
        with pytest.raises(RuntimeError), transaction.atomic(using=wrapper.alias):
            backend_pid(wrapper)
            wrapper.close()  # e.g. a task killed mid-transaction
            raise RuntimeError("the task ends here")
    finally:
        del connections[wrapper.alias]
    assert all(not shelf for shelf in kept_connections._kept.values())
    assert backend_pid(wrapper_for()) != pid
