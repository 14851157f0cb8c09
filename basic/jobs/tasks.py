"""Celery tasks: one thin task runs a job of any kind (basic/jobs/runner.py)."""
from celery import shared_task

from basic.jobs.runner import run_job as run_job_body


@shared_task(name="basic.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> None:
    run_job_body(job_id)


@shared_task(name="basic.run_schedule", acks_late=False)
def run_schedule(schedule_id: int) -> None:
    """Sent by celery beat (basic/jobs/schedules.py). Acked on receipt: a worker lost here costs one
    run of the schedule, never a second job for the same tick."""
    from basic.jobs.schedules import run_schedule as run_schedule_body

    run_schedule_body(schedule_id)
