"""Issue 19, goal 2: a full garbage collection in the web process walked every object Django and the
libraries loaded, a pause of tens of milliseconds in whichever request it fell on (trigger -> 202 p99
48-81 ms against 14-29 ms with them frozen, bench_jobs open loop). app/asgi.py freezes them once loaded."""
import gc


def test_the_asgi_application_leaves_what_it_loaded_out_of_the_collectors_sight():
    import app.asgi  # noqa: F401  (imported once per process; the freeze happens at its end)

    assert gc.get_freeze_count() > 10_000
