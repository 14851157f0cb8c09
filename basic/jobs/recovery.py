"""In every worker: a background loop that re-queues jobs whose worker died (see services), ends the
batches whose last member's worker died before ending them (basic/jobs/batch_events.py) and,
at most every JOB_RETENTION_SWEEP_SECONDS, deletes expired jobs (basic/jobs/retention.py)."""
import logging
import random
import threading
import time
from datetime import UTC, datetime

from celery.signals import task_received, worker_ready
from django.conf import settings
from django.db import close_old_connections

from basic.jobs import queue_markers, retention, worker_liveness
from basic.jobs.batch_events import finish_settled_batches
from basic.jobs.services import RUN_JOB_TASK, recover_lost_jobs

logger = logging.getLogger(__name__)


def recovery_loop(interval: float) -> None:
    # The first sweep a little after start-up, at a random moment, so workers started together
    # (a deploy) don't all sweep at once.
    sweeper = retention.PeriodicSweep(first_delay=random.uniform(interval, 4 * interval))
    while True:
        try:
            recover_lost_jobs()
        except Exception:  # a broker or database blip: try again next round
            logger.exception("recovering orphaned jobs failed")
        finally:
            close_old_connections()
        try:
            finish_settled_batches()
        except Exception:  # the same
            logger.exception("ending settled batches failed")
        finally:
            close_old_connections()
        try:
            sweeper.run_if_due()
        except Exception:  # the same: the sweep comes back sooner than its interval
            logger.exception("the retention sweep failed")
        finally:
            close_old_connections()
        time.sleep(interval)


def connect_signals() -> None:
    """Called from BasicConfig.ready(), so every worker starts the loop."""
    worker_ready.connect(start_recovery_loop, dispatch_uid="basic.start_recovery_loop")
    task_received.connect(mark_reserved, dispatch_uid="basic.mark_reserved")


def mark_reserved(request: object = None, **kwargs: object) -> None:
    """This worker holds the job's message now; if it dies before the run starts, the marker
    expires and the sweep sends the job again (basic/jobs/queue_markers.py)."""
    if getattr(request, "name", None) == RUN_JOB_TASK:
        try:
            queue_markers.mark_reserved(request.id, wait=_seconds_until(getattr(request, "eta", None)))
        except Exception:  # Redis is down: the sweep errs on the side of sending it again
            logger.warning("could not mark job %s reserved", request.id, exc_info=True)


def _seconds_until(eta: object) -> float:
    """Seconds until a message's ETA (an ISO string or a datetime; None: due now)."""
    if isinstance(eta, str):
        try:
            eta = datetime.fromisoformat(eta)
        except ValueError:
            return 0.0
    if not isinstance(eta, datetime):
        return 0.0
    if eta.tzinfo is None:
        eta = eta.replace(tzinfo=UTC)
    return max(0.0, (eta - datetime.now(UTC)).total_seconds())


def start_recovery_loop(**kwargs: object) -> None:
    worker_liveness.start()
    # Under the gevent pool threading is monkey-patched, so this is a greenlet beside the tasks.
    interval = max(1.0, settings.JOB_LEASE_SECONDS / 2)
    threading.Thread(target=recovery_loop, args=(interval,), name="job-recovery", daemon=True).start()
