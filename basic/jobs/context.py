"""What a kind's body gets: its parameters, `progress(...)` and `output(...)`.

`progress` is also where the lifecycle reaches into a running body: it renews the lease (and
stops a run that lost it), stops a cancelled job, and throttles what reaches the row and sockets.
Its own database statements (the cancel check, the progress and heartbeat writes) ride out an
outage: a PostgreSQL restart used to stop every body mid-step, to be run again from scratch by the
recovery (the chaos soak: 21 jobs in one run); now the step is skipped and the next one tries again.
"""
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any

from django.conf import settings
from django.utils import timezone

from basic.core.database_outages import unless_database_down
from basic.core.outside_text import outside_text
from basic.jobs import events, files, progress_budget, transitions
from basic.jobs.leases import JobLease
from basic.jobs.models import Job
from basic.jobs.publish import ProgressThrottle
from basic.jobs.time_limits import Deadline

logger = logging.getLogger(__name__)

class JobFailed(Exception):
    """Raised by a body to end the job as failed; str(exc) is shown to the user as the reason."""


class JobRetryable(JobFailed):
    """Raised by a body for a failure that may pass (a timeout, a refused connection): the job is
    tried again if its kind's `retries` allow, else it fails with str(exc) as JobFailed does."""


class JobCancelled(Exception):
    """Raised from `progress` when the job's cancel was requested; the body should not catch it."""


class JobContext:
    def __init__(self, job: Job, lease: JobLease, deadline: Deadline | None = None) -> None:
        self.job = job
        self._deadline = deadline
        self.params: dict[str, Any] = dict(job.params or {})
        self.summary = "Done"  # the message of the job.done event; a body may set it
        self._lease = lease
        # The start just sent job.started, renewed the lease and found no cancel: the first update
        # and check are one interval from now, so a job that ends sooner sends no job.progress (its
        # job.done says 100%) and spends no round trip on either (issue 19).
        self._throttle = ProgressThrottle()
        self._throttle.sent()
        self._min_interval = self._throttle.min_interval
        self._run = uuid.uuid4().hex[:12]
        self._outputs: dict[str, Path] = {}
        self._download: str | None = None
        self._beat_at = time.monotonic()
        self._beat_every = settings.JOB_LEASE_SECONDS / 3
        # Coalescing (issue 19): a body may call `progress` thousands of times a second. The lease
        # and the cancel flag are checked when an event goes out, on `force`, and otherwise at most
        # every JOB_CHECK_INTERVAL_SECONDS; the row is written at most every
        # JOB_PROGRESS_DB_INTERVAL_SECONDS (events still go out at up to ~10 a second). Both
        # intervals stretch while many bodies run in the process (basic/jobs/progress_budget.py).
        self._checked_at = time.monotonic()
        self._check_every = settings.JOB_CHECK_INTERVAL_SECONDS
        self._written_at = time.monotonic()  # the start wrote the row
        self._write_every = settings.JOB_PROGRESS_DB_INTERVAL_SECONDS

    @property
    def job_id(self) -> str:
        return str(self.job.id)

    @property
    def attempt(self) -> int:
        """1 for the first run; one more for each retry after a transient failure."""
        return self.job.attempt

    def progress(self, done: int, total: int, message: str = "", *, force: bool = False) -> None:
        """Report `done` of `total` steps. Raises JobCancelled if the job was cancelled, and
        JobTimedOut past its kind's time limit (neither is for the body to catch).

        Updates reach sockets at most about 10 a second and the row about once a second unless
        `force` is set (for bodies with few, slow steps where each one matters). The lease is renewed
        and a cancel noticed at every update sent, and otherwise at least every
        JOB_CHECK_INTERVAL_SECONDS (0.1 s), so calling this for every row costs little."""
        percent = min(99, done * 100 // total) if total > 0 else 0
        now = time.monotonic()
        # Both intervals grow while many bodies run in this process (its budget of updates).
        send = force or self._throttle.should_send(percent, progress_budget.interval(self._min_interval))
        if self._deadline is not None:
            self._deadline.check()
        check_every = progress_budget.interval(self._check_every)
        if send or now - self._checked_at >= check_every:
            self._lease.renew()
            if unless_database_down(Job.objects.filter(id=self.job.id, cancel_requested=True).exists, False):
                raise JobCancelled
            self._checked_at = time.monotonic()  # from the end: the round trips may have waited
        if not send:
            if now - self._beat_at > self._beat_every:  # quiet but alive: tell the recovery sweep
                self._beat_at = now
                self._beat()
            return
        # Cleaned: a body's message may quote a page or a file (a NUL would fail the row's update).
        self.job.progress, self.job.message = percent, outside_text(message, limit=transitions.MESSAGE_MAX)
        transitions.push(self.job, events.JOB_PROGRESS)
        self._throttle.sent()
        if force or now - self._written_at >= self._write_every:
            self._beat_at = self._written_at = now
            unless_database_down(lambda: Job.objects.filter(id=self.job.id, status=Job.Status.RUNNING).update(
                progress=self.job.progress, message=self.job.message, last_seq=self.job.last_seq,
                heartbeat=timezone.now(),
            ))
        elif now - self._beat_at > self._beat_every:
            self._beat_at = now
            self._beat()

    def _beat(self) -> None:
        unless_database_down(lambda: Job.objects.filter(id=self.job.id).update(heartbeat=timezone.now()))

    def output(self, name: str, *, download: bool = False) -> Path:
        """A path to write output `name` to. It appears under its name only if the job succeeds;
        the job's download is the output marked `download`, else the first one."""
        if name not in self._outputs:
            self._outputs[name] = files.temp_path(self.job.id, name, self._run)
            self._outputs[name].parent.mkdir(parents=True, exist_ok=True)
        if download or self._download is None:
            self._download = name
        return self._outputs[name]

    def input(self, name: str) -> Path:
        """A file the web process stored for this job when it was started (an upload)."""
        return files.input_dir(self.job.id) / files.check_name(name)

    # --- for the runner ----------------------------------------------------------------------

    def commit_outputs(self) -> str:
        """Rename every written output into place; returns the download's name ('' if none)."""
        for name, temp in self._outputs.items():
            if temp.exists():
                os.replace(temp, files.output_path(self.job.id, name))
        return self._download or ""

    def discard_outputs(self, *, committed: bool = False) -> None:
        """Best effort: the job's end must be recorded even if its folder is unusable."""
        for name, temp in self._outputs.items():
            paths = [temp, files.output_path(self.job.id, name)] if committed else [temp]
            for path in paths:
                try:
                    path.unlink(missing_ok=True)
                except OSError as exc:
                    logger.warning("job %s: could not remove %s: %s", self.job.id, path.name, exc)
