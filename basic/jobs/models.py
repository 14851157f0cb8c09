"""Jobs (one row per long-running job, of any kind: the source of truth), Batches (jobs started
together and watched as one), Schedules (a job started
again and again by `celery beat`), the Idempotency-Keys of job and batch starts and what each
owner's jobs keep (for the quota). App label `basic`;
basic/models.py is the index of every model."""
import uuid

from django.conf import settings
from django.db import models
from django.utils import timezone

from basic.jobs.registry import kind_choices


class RunStatus(models.TextChoices):
    """Where a job (or a batch) is."""

    SCHEDULED = "scheduled"  # started with a delay (`run_at`, `delay_seconds`): waits for `not_before`
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


class Batch(models.Model):
    """Jobs started together by one request (basic/jobs/batches.py): one aggregate progress, one end,
    one cancel and one zip. Its members are the jobs whose `batch` is this; the row is the truth
    about the end (`finished` is set once, by a conditional update) and keeps the `seq` and percent
    of the last event of the batch's own stream. The retention sweep deletes it once it has ended
    and has no member left (basic/jobs/retention.py)."""

    # A batch's status, in a job's words: scheduled while every member waits for a delayed start,
    # running from its first member's start, then done (every member done), failed (a member
    # failed) or cancelled (the batch, or with none failed a member, was cancelled).
    Status = RunStatus
    TERMINAL = (Status.DONE, Status.FAILED, Status.CANCELLED)

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="batches")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.QUEUED)
    total = models.PositiveIntegerField(default=0)  # members, fixed at the start
    cancel_requested = models.BooleanField(default=False)
    # The seq and percent of the last aggregate event stored: the floors its aggregate restarts from
    # when Redis comes back empty, so neither goes back (basic/jobs/batch_events.py, docs/design.md trap 7).
    last_seq = models.PositiveBigIntegerField(default=0)
    last_progress = models.PositiveSmallIntegerField(default=0)
    created = models.DateTimeField(auto_now_add=True)
    finished = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created"]
        indexes = [models.Index(fields=["owner", "-created"], name="batch_owner_created")]

    def __str__(self) -> str:
        return f"batch {self.id} of {self.total} ({self.status})"

    @property
    def is_terminal(self) -> bool:
        return self.status in self.TERMINAL


class Job(models.Model):
    Status = RunStatus

    TERMINAL = (Status.DONE, Status.FAILED, Status.CANCELLED)
    ACTIVE = (Status.SCHEDULED, Status.QUEUED, Status.RUNNING)
    WAITING = (Status.SCHEDULED, Status.QUEUED)  # not started: cancelling ends it at once

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
    # Which run this is (1 for the first; a retry of a transient failure adds one, a worker's crash
    # does not) and, while a delayed start or a retry waits, when it may start (docs/design.md,
    # "Job policies").
    attempt = models.PositiveSmallIntegerField(default=1)
    not_before = models.DateTimeField(null=True, blank=True)
    # 0-9, 9 first: queued jobs of a higher priority are taken before lower ones (the kind's
    # default, or the caller's choice within their allowance).
    priority = models.PositiveSmallIntegerField(default=5)
    # The batch this job was started in, if any (basic/jobs/batches.py).
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.SET_NULL, related_name="jobs")
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


class IdempotencyKey(models.Model):
    """A client's `Idempotency-Key` on a job or batch start (basic/jobs/idempotency.py): the same key
    from the same owner within JOB_IDEMPOTENCY_HOURS answers with `job` (or `batch`) instead of
    starting another. The unique (owner, key) is what makes concurrent duplicates start one: the
    second insert fails."""

    # No index of its own: the unique constraint's index starts with owner.
    owner = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+",
                              db_index=False)
    key = models.CharField(max_length=255)
    # sha256 (hex) of the kind and its validated parameters as canonical JSON (uploads by their
    # bytes); for a batch, of the list of its members' (basic/jobs/idempotency.py).
    fingerprint = models.CharField(max_length=64)
    # What the key started: a job or a batch. Both null only inside the transaction that reserves
    # the key and starts it, so never seen by others; a deleted job (batch) takes its key with it
    # (the key then starts a new one).
    job = models.ForeignKey(Job, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    batch = models.ForeignKey(Batch, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    created = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["owner", "key"], name="idempotency_key_per_owner"),
            models.CheckConstraint(condition=models.Q(job__isnull=True) | models.Q(batch__isnull=True),
                                   name="idempotency_key_job_or_batch"),
        ]
        indexes = [models.Index(fields=["created"], name="idempotency_key_created")]

    def __str__(self) -> str:
        return f"idempotency key {self.key!r} of {self.owner_id} -> {self.job_id or self.batch_id}"


class StoredOutput(models.Model):
    """What one owner's jobs keep, in bytes: the sum of their `Job.output_bytes`, kept by the
    database itself (triggers on basic_job, migration 0011), so the quota check reads one row
    instead of summing every job the owner kept, which grew with the jobs kept (38 ms per start
    at 100,000 jobs on SQLite). The triggers run in the writing transaction, whatever writes the
    row (a start, a run's end, a delete, the admin), so the total never drifts from the sum.
    Read only: never written by the app."""

    owner = models.OneToOneField(settings.AUTH_USER_MODEL, primary_key=True, on_delete=models.CASCADE,
                                 related_name="+")
    bytes = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.bytes} bytes kept by {self.owner_id}"
