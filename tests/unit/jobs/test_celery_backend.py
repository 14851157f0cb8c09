"""Celery's result backend is built once per process, not once per thread: on the gevent worker
every task runs in a greenlet that Celery sees as a new thread, so a per-thread backend was built
again for every task (issue 19: ~5% of the worker's CPU)."""
import threading

from app.celery import app


def test_the_result_backend_is_one_object_for_every_thread():
    first = app.backend
    seen = []
    threads = [threading.Thread(target=lambda: seen.append(app.backend)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 3 and all(backend is first for backend in seen)
    assert type(first).__name__ == "DisabledBackend"  # no result is stored (CELERY_TASK_IGNORE_RESULT)
