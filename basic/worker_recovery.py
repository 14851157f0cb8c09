"""In every worker: a background loop that re-queues jobs whose worker died (see services)."""
import logging
import threading
import time

from celery.signals import worker_ready
from django.conf import settings
from django.db import close_old_connections

from .services import recover_orphaned_jobs

logger = logging.getLogger(__name__)


def recovery_loop(interval: float) -> None:
    while True:
        try:
            recover_orphaned_jobs()
        except Exception:  # a broker or database blip: try again next round
            logger.exception("recovering orphaned jobs failed")
        finally:
            close_old_connections()
        time.sleep(interval)


def connect_signals() -> None:
    """Called from BasicConfig.ready(), so every worker starts the loop."""
    worker_ready.connect(start_recovery_loop, dispatch_uid="basic.start_recovery_loop")


def start_recovery_loop(**kwargs: object) -> None:
    # Under the gevent pool threading is monkey-patched, so this is a greenlet beside the tasks.
    interval = max(1.0, settings.JOB_LEASE_SECONDS / 2)
    threading.Thread(target=recovery_loop, args=(interval,), name="job-recovery", daemon=True).start()
