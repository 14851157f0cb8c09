"""Celery tasks: thin wrappers that take a job id and call the service that does the work."""
from celery import shared_task

from . import services, worker_recovery  # noqa: F401  (worker_recovery hooks worker_ready)
from .models import Job


@shared_task(name="basic.students_by_age_report", acks_late=True, reject_on_worker_lost=True)
def students_by_age_report(job_id: str) -> None:
    services.run_students_by_age_job(job_id=job_id)


TASKS_BY_KIND = {Job.Kind.STUDENTS_BY_AGE: students_by_age_report}
