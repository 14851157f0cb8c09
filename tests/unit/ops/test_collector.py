"""The web process's garbage collector (basic/core/collector.py, called by app/asgi.py).

Issue 19, goal 2: a full garbage collection walked every object Django and the libraries loaded, a
pause of tens of milliseconds in whichever request it fell on (trigger -> 202 p99 48-81 ms against
14-29 ms with them frozen, bench_jobs open loop). Issue 18, goal 1: young collections every 700 new
objects were the largest single cost of a connect storm (1.2 -> 0.93 ms of CPU per socket with
batches of 50,000). Young batches of 10,000 while few requests are in flight keep each pause a
fifth of that (trigger -> 202 p99 41-109 -> 19-31 ms); with many in flight they would promote the
requests' live objects and the middle generation would walk them all at once (~1 s), so the batch
grows back to 50,000 then."""
import gc

import pytest

from basic.core import collector


def test_the_asgi_application_leaves_what_it_loaded_out_of_the_collectors_sight():
    import app.asgi  # noqa: F401  (imported once per process; the freeze happens at its end)

    assert gc.get_freeze_count() > 10_000


def test_the_web_process_collects_in_batches():
    import app.asgi  # noqa: F401

    assert gc.get_threshold() == collector.QUIET == collector.THRESHOLDS
    quiet_young, quiet_middle, _ = collector.QUIET
    busy_young, busy_middle, _ = collector.BUSY
    assert quiet_young == 10_000  # a storm's sockets in batches (not 700), REST's cycles in short pauses (not 50,000)
    assert busy_young >= 50_000  # past the requests in flight
    # The middle generation no more often per object allocated in either.
    assert quiet_young * quiet_middle >= 1_000_000 and busy_young * busy_middle >= 1_000_000


@pytest.fixture
def quiet(monkeypatch):
    monkeypatch.setattr(collector, "_in_flight", 0)
    gc.set_threshold(*collector.QUIET)
    yield
    gc.set_threshold(*collector.QUIET)


def test_batches_grow_past_busy_at_requests_in_flight_and_shrink_back(quiet):
    for _ in range(collector.BUSY_AT):
        collector.request_began()
    assert gc.get_threshold() == collector.QUIET
    collector.request_began()
    assert gc.get_threshold() == collector.BUSY
    collector.request_began()
    collector.request_ended()
    assert gc.get_threshold() == collector.BUSY
    collector.request_ended()
    assert gc.get_threshold() == collector.QUIET
    for _ in range(collector.BUSY_AT):
        collector.request_ended()
    assert collector._in_flight == 0 and gc.get_threshold() == collector.QUIET


@pytest.mark.django_db(transaction=True)  # the requests run on other threads
async def test_every_rest_request_is_counted_in_and_out_a_404_too(quiet, monkeypatch, alice):
    from app.asgi import django_asgi_app
    from tests.asgi_http import get

    seen = []
    monkeypatch.setattr(collector, "request_began", lambda: seen.append("in"))
    monkeypatch.setattr(collector, "request_ended", lambda: seen.append("out"))
    assert [await get(django_asgi_app, path, alice.token) for path in ("/api/jobs/", "/no/such/page/")] == [200, 404]
    assert seen == ["in", "out", "in", "out"]
