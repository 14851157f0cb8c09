"""The Celery app: configured from Django settings (CELERY_*), tasks autodiscovered."""
import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

app = Celery("app")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["basic.jobs"])  # basic/jobs/tasks.py
