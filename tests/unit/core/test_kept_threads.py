"""REST requests run on threads the web process keeps, with their SQLite connections kept
(basic/core/kept_threads.py, app/asgi.py). Django's ASGI handler gave every request a thread of its
own, so every request opened a database connection: on SQLite about 0.65 ms of CPU, as much as the
token lookup. A request that finds every kept thread busy waits for one while they keep finishing
calls (a burst of quick requests), and runs on a thread of its own once none has finished one for
KeptThreadsFirst.STALL_SECONDS (a slow database must not hold up a health probe for long)."""
import asyncio
import threading
from unittest import mock

import pytest
from django.db import OperationalError, connection, connections
from django.db.backends.signals import connection_created

from basic.core.kept_threads import KeptThreadsFirst
from tests.asgi_http import get

pytestmark = pytest.mark.django_db(transaction=True)  # the calls run on other threads


@pytest.fixture
def opened():
    """How many database connections were opened, on any thread."""
    count = [0]

    def note(**_kwargs):
        count[0] += 1

    connection_created.connect(note, weak=False)
    yield count
    connection_created.disconnect(note)


def query_and_say_where() -> threading.Thread:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return threading.current_thread()


sqlite_only = pytest.mark.skipif("connection.vendor != 'sqlite'", reason=(
    "PostgreSQL's connections go back to the web process's pool after each request"))


@sqlite_only
async def test_calls_in_turn_run_on_a_kept_thread_and_keep_its_sqlite_connection(opened):
    run = KeptThreadsFirst(query_and_say_where, count=4, name="test-kept")
    threads = {await run() for _ in range(12)}
    assert all(thread.name.startswith("test-kept") for thread in threads) and len(threads) <= 4
    assert opened[0] == len(threads)  # one each; Django's own way: a thread, and a connection, per call (12)


@sqlite_only
async def test_a_failed_call_closes_its_connection_and_the_next_does_not(monkeypatch):
    calls, closed = [], []
    wrapper = type(connections["default"])
    real_close = wrapper.close

    def close(self):
        closed.append(len(calls))
        real_close(self)  # (the tests' in-memory SQLite ignores it: it would lose the database)

    monkeypatch.setattr(wrapper, "close", close)

    def fail_once() -> None:
        query_and_say_where()
        calls.append(1)
        if len(calls) == 1:
            raise OperationalError("disk I/O error")

    run = KeptThreadsFirst(fail_once, count=1, name="test-kept")
    with pytest.raises(OperationalError):
        await run()
    await run()
    await run()
    assert closed == [1]  # once, right after the failed call


async def test_a_call_that_finds_every_kept_thread_stuck_runs_on_a_thread_of_its_own_soon():
    release = threading.Event()

    def work(block: bool) -> threading.Thread:
        if block:
            assert release.wait(10)
        return query_and_say_where()

    run = KeptThreadsFirst(work, count=2, name="test-kept")
    held = [asyncio.ensure_future(run(True)) for _ in range(2)]
    await asyncio.sleep(0.1)
    assert run.free == 0
    loop = asyncio.get_running_loop()
    began = loop.time()
    try:
        lone = await asyncio.wait_for(run(False), timeout=5)  # queued behind the two, it would time out
    finally:
        release.set()
    waited = loop.time() - began
    kept = set(await asyncio.gather(*held))
    assert len(kept) == 2 and lone not in kept and run.fresh_calls == 1
    assert KeptThreadsFirst.STALL_SECONDS <= waited < KeptThreadsFirst.STALL_SECONDS + 1
    assert run.free == 2


async def test_a_call_that_finds_every_kept_thread_busy_but_finishing_waits_for_one():
    """50 REST clients on 32 kept threads: the others queue, each for the next thread to finish,
    rather than each paying for a new thread and connection."""
    def work(seconds: float) -> threading.Thread:
        threading.Event().wait(seconds)
        return query_and_say_where()

    run = KeptThreadsFirst(work, count=2, name="test-kept")
    calls = [asyncio.ensure_future(run(0.03)) for _ in range(12)]  # 6 rounds of 2, each well under the stall
    threads = set(await asyncio.wait_for(asyncio.gather(*calls), timeout=10))
    assert len(threads) == 2 and run.fresh_calls == 0
    assert run.free == 2


async def test_a_waiting_call_that_is_cancelled_gives_up_its_place_and_loses_no_thread():
    release = threading.Event()

    def work(block: bool) -> threading.Thread:
        if block:
            assert release.wait(10)
        return query_and_say_where()

    run = KeptThreadsFirst(work, count=1, name="test-kept")
    held = asyncio.ensure_future(run(True))
    await asyncio.sleep(0.05)
    gone = asyncio.ensure_future(run(False))  # a client that hung up while waiting
    after = asyncio.ensure_future(run(False))
    await asyncio.sleep(0.05)
    gone.cancel()
    release.set()
    kept = await held
    assert await asyncio.wait_for(after, timeout=5) is kept and run.fresh_calls == 0
    with pytest.raises(asyncio.CancelledError):
        await gone
    assert run.free == 1


async def test_a_call_on_a_thread_of_its_own_gives_its_connection_back():
    """Django's request_finished closed a request's connections on its own thread; it runs on
    another one now. A PostgreSQL connection left checked out by a thread that ended never went back
    to the pool: 20 such requests emptied it, and the next waited 10 s for a 503."""
    used = []

    def work() -> None:
        query_and_say_where()
        used.append(connections["default"])  # this thread's connection wrapper (not the proxy)

    run = KeptThreadsFirst(work, count=0, name="test-kept")
    for _ in range(3):
        await run()
    # Closed, each (Django never closes the SQLite test run's in-memory database: the PostgreSQL pass is the check).
    assert len(used) == 3
    assert all(wrapper.connection is None or getattr(wrapper, "is_in_memory_db", lambda: False)() for wrapper in used)


async def test_no_kept_threads_means_a_thread_per_call_as_django_does():
    """Each call on a thread of its own, even at once: not asgiref's one thread-sensitive thread,
    which the handler (app/asgi.py) no longer scopes to a request."""
    release = threading.Event()

    def work() -> threading.Thread:
        assert release.wait(10)
        return query_and_say_where()

    run = KeptThreadsFirst(work, count=0, name="test-kept")
    calls = [asyncio.ensure_future(run()) for _ in range(3)]
    await asyncio.sleep(0.1)
    release.set()
    assert len(set(await asyncio.wait_for(asyncio.gather(*calls), timeout=5))) == 3


@sqlite_only
async def test_rest_requests_through_the_asgi_application_open_no_connection_each(alice, opened):
    from app.asgi import django_asgi_app

    started = []
    real_start = threading.Thread.start

    def start(thread):
        started.append(thread.name)
        real_start(thread)

    with mock.patch.object(threading.Thread, "start", start):
        statuses = [await get(django_asgi_app, "/api/jobs/", alice.token) for _ in range(20)]
    assert statuses == [200] * 20
    kept = [thread for thread in threading.enumerate() if thread.name.startswith("request")]
    assert 1 <= len(kept) < 20
    assert opened[0] <= len(kept)  # at most one per kept thread (Django's own way: 20)
    # No thread per request either: Django's handler started and joined one for each (20).
    assert len(started) <= len(kept) + 1, started  # the kept ones, and asgiref's thread-sensitive one


async def test_with_debug_on_a_kept_thread_forgets_the_queries_of_the_calls_before(settings):
    """DEBUG logs every query on its connection; Django forgets them at request_started, which
    runs on another thread than the kept one: without forgetting here, each kept thread's log grew."""
    settings.DEBUG = True

    def logged_after_one_query() -> int:
        query_and_say_where()
        return len(connection.queries_log)

    run = KeptThreadsFirst(logged_after_one_query, count=1, name="test-kept")
    assert [await run() for _ in range(4)] == [1, 1, 1, 1]
