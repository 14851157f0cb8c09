"""Celery tasks: one thin task runs a job of any kind (basic/jobs/runner.py)."""
import logging

from celery import shared_task

from basic.core.database_outages import DATABASE_OUTAGES, is_outage
from basic.core.repeated_log import RepeatedWarning
from basic.jobs.runner import run_job as run_job_body

logger = logging.getLogger(__name__)

# A database outage stops every run that reaches its start or its end meanwhile: one line every
# 10 s says so, not a traceback per job (the chaos soak's PostgreSQL restarts logged dozens). Nothing
# is lost: a job not started keeps its queue marker until it expires, and one left running is past
# its lease once it stops moving; the recovery sweep sends either again (basic/jobs/services.py).
STOPPED_BY_OUTAGE = RepeatedWarning(
    logger, "job runs stopped by a database outage; the recovery sweep runs them again once it is back")


@shared_task(name="basic.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> None:
    try:
        run_job_body(job_id)
    except DATABASE_OUTAGES as error:
        if not is_outage(error):
            raise
        STOPPED_BY_OUTAGE.warning(error)


@shared_task(name="basic.run_schedule", acks_late=False)
def run_schedule(schedule_id: int) -> None:
    """Sent by celery beat (basic/jobs/schedules.py). Acked on receipt: a worker lost here costs one
    run of the schedule, never a second job for the same tick."""
    from basic.jobs.schedules import run_schedule as run_schedule_body

    run_schedule_body(schedule_id)
