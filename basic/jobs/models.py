"""Jobs (one row per long-running job, of any kind: the source of truth) and Schedules (a job started
again and again by `celery beat`). App label `basic`; basic/models.py is the index of every model."""
import uuid

from django.conf import settings
from django.db import models

from basic.jobs.registry import kind_choices


class Job(models.Model):
    class Status(models.TextChoices):
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        FAILED = "failed"
        CANCELLED = "cancelled"

    TERMINAL = (Status.DONE, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Kinds are declared in the registry (basic/jobs/registry.py), not here.
    kind = models.CharField(max_length=40, choices=kind_choices)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.CASCADE, related_name="jobs"
    )
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    progress = models.PositiveSmallIntegerField(default=0)
    message = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    params = models.JSONField(default=dict, blank=True)
    result = models.JSONField(null=True, blank=True)
    # The downloadable output's file name in the job's folder (basic/jobs/files.py).
    output_name = models.CharField(max_length=200, blank=True)
    # The seq of the last event pushed, so seq never goes backwards if Redis loses its counters.
    last_seq = models.PositiveBigIntegerField(default=0)
    # Bytes the job keeps in its folder (uploads from the start, outputs once done): the owner's
    # JOB_OUTPUT_QUOTA_MB is checked against the sum (basic/jobs/retention.py), not the file system.
    output_bytes = models.PositiveBigIntegerField(default=0)
    # Written by a running job at least every JOB_LEASE_SECONDS / 3: the recovery sweep leaves a
    # job whose row still moves alone, even if Redis lost its lease.
    heartbeat = models.DateTimeField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created = models.DateTimeField(auto_now_add=True)
    started = models.DateTimeField(null=True, blank=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["owner", "-created"], name="job_owner_created")]

    def __str__(self) -> str:
        return f"{self.kind} {self.id} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class Schedule(models.Model):
    """A job of one kind, started again and again by `celery beat` (basic/jobs/schedules.py).

    When it runs (`every` N seconds or a `crontab`) and whether beat sends it live in the linked
    django-celery-beat PeriodicTask; basic/jobs/schedules.py keeps the two in step. Each run is an
    ordinary job owned by the schedule's owner."""

    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="schedules")
    kind = models.CharField(max_length=40, choices=kind_choices)
    params = models.JSONField(default=dict, blank=True)
    enabled = models.BooleanField(default=True)
    periodic_task = models.OneToOneField("django_celery_beat.PeriodicTask", null=True, blank=True, editable=False,
                                         on_delete=models.CASCADE, related_name="job_schedule")
    last_job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    created = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created", "-id"]

    def __str__(self) -> str:
        return f"{self.kind} schedule {self.pk} of {self.owner}"
