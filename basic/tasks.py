"""Celery tasks: one thin task runs a job of any kind (basic/lifecycle/runner.py)."""
from celery import shared_task

from .lifecycle.runner import run_job as run_job_body


@shared_task(name="basic.run_job", acks_late=True, reject_on_worker_lost=True)
def run_job(job_id: str) -> None:
    run_job_body(job_id)
