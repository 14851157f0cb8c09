"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered."""
import os

from celery import Celery
from celery.signals import worker_process_init

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

app = Celery("app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["basic.jobs"])  # basic/jobs/tasks.py


@worker_process_init.connect
def lower_cpu_worker_priority(**kwargs: object) -> None:
    """Each process of a prefork (CPU queue) worker runs at CPU_WORKER_NICE, so jobs that compute
    leave the cores to the web process and the I/O worker when both want them."""
    from django.conf import settings

    os.nice(settings.CPU_WORKER_NICE)
