"""The web process's garbage collector (basic/core/collector.py, called by app/asgi.py).

Issue 19, goal 2: a full garbage collection walked every object Django and the libraries loaded, a
pause of tens of milliseconds in whichever request it fell on (trigger -> 202 p99 48-81 ms against
14-29 ms with them frozen, bench_jobs open loop). Issue 18, goal 1: young collections every 700 new
objects were the largest single cost of a connect storm (1.2 -> 0.93 ms of CPU per socket with
batches of 50,000); batches of 10,000 keep each young pause a fifth of that one's (trigger -> 202
p99 41-109 -> 19 ms), with the middle generation as rare per object allocated."""
import gc

from basic.core import collector


def test_the_asgi_application_leaves_what_it_loaded_out_of_the_collectors_sight():
    import app.asgi  # noqa: F401  (imported once per process; the freeze happens at its end)

    assert gc.get_freeze_count() > 10_000


def test_the_web_process_collects_in_batches():
    import app.asgi  # noqa: F401

    assert gc.get_threshold() == collector.THRESHOLDS
    young, middle, _old = collector.THRESHOLDS
    assert young >= 10_000  # a storm's sockets in batches (issue 18)
    assert young <= 10_000  # a young collection frees each REST request's cycles: a short pause (issue 19)
    assert young * middle >= 1_000_000  # the middle generation no more often per object than before
