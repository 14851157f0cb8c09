"""The one place a job kind is declared. Model choices, the REST trigger, the console's start
controls, the download's media type and the OpenAPI schema are all read from here."""
import importlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from rest_framework import serializers

NAME_PATTERN = r"^[a-z][a-z0-9_]{0,39}$"

# Where a kind runs (docs/design.md, "Job policies"), and the Celery queue each place is.
IO = "io"  # the gevent pool: jobs that mostly wait (network, disk, database); hundreds at once
CPU = "cpu"  # the prefork pool: jobs that compute; one process per core, so they stall nobody
CELERY_QUEUES = {IO: "default", CPU: "cpu"}
POLICY_FIELDS = ("queue", "time_limit", "retries", "retry_backoff", "priority", "concurrency",
                 "per_user_concurrency")  # JOB_KIND_POLICIES may set these (null removes a cap)
PRIORITIES = range(10)  # a job's priority: 9 is taken first
# What any trigger accepts beside a kind's parameters (basic/api/trigger_options.py): no kind may
# have a parameter of these names.
TRIGGER_OPTION_NAMES = ("priority", "run_at", "delay_seconds")
RETRY_DELAY_MAX = 600.0  # seconds: the longest wait before a retry, however many came before
CONCURRENCY_MAX = 10000  # the largest cap a kind may set on its running jobs


class KindContext(Protocol):
    """What a body may use of the JobContext it is given (basic/jobs/context.py). Declared here, not
    imported, so the registry imports nothing of the app and the model can read its choices from it."""

    params: dict[str, Any]

    @property
    def job_id(self) -> str: ...

    @property
    def attempt(self) -> int: ...

    def progress(self, done: int, total: int, message: str = "", *, force: bool = False) -> None: ...

    def output(self, name: str, *, download: bool = False) -> Path: ...

    def input(self, name: str) -> Path: ...


@dataclass(frozen=True)
class JobKind:
    """One kind of job.

    - `params`: a DRF serializer class validating what a caller sends to start the job.
    - `run`: the body, `run(ctx) -> result dict` (JSON-able); `ctx.params` holds the parameters.
    - `media_type`: the downloadable output's content type; None when each result names its own
      (`result["content_type"]`).
    - `prepare`: optional, runs in the web process before the job is queued: it receives the
      validated data and the job's input folder (for uploads) and returns the JSON parameters
      to store. Without it the validated data is stored as it is.
    - `route`: optional path under /api/ of a kind-specific trigger (e.g. "thumbnails").

    Policies (how it is run; a deployment overrides them in JOB_KIND_POLICIES, see `policy`):
    - `queue`: IO (default) or CPU. A body that computes for more than a few milliseconds at a
      time belongs on CPU: on the gevent pool it would stop every other job while it computes.
    - `time_limit`: seconds a run may take before it ends failed ("timed out after N s");
      None: JOB_TIME_LIMIT_SECONDS.
    - `retries`: how many times a run that failed on a transient error is tried again (a worker's
      crash is not the job's failure and is not counted), after `retry_backoff` seconds, doubled
      each time, jittered, at most RETRY_DELAY_MAX. Transient: `JobRetryable` raised by the body,
      or an exception of a type in `retry_on`.
    - `priority`: 0-9, the default of its jobs (a caller may choose another within their
      allowance, JOB_PRIORITY_MAX_USER); queued jobs of a higher priority are taken first.
    - `concurrency`: at most this many of its jobs run at once in the whole deployment, and
      `per_user_concurrency` at most this many of one user's; None: no cap. A job over a cap waits
      `queued`, saying why, and starts in its turn when a slot frees (basic/jobs/slots.py).
    """

    name: str
    label: str
    params: type[serializers.Serializer]
    run: Callable[[KindContext], dict[str, Any]]
    media_type: str | None = "application/octet-stream"
    description: str = ""
    prepare: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None
    route: str | None = None
    queue: str = IO
    time_limit: int | None = None
    retries: int = 0
    retry_backoff: float = 2.0
    retry_on: tuple[type[BaseException], ...] = ()
    priority: int = 5
    concurrency: int | None = None
    per_user_concurrency: int | None = None


@dataclass(frozen=True)
class Policy:
    """A kind's policies as this deployment runs it: the kind's own, then JOB_KIND_POLICIES."""

    queue: str
    time_limit: int
    retries: int = 0
    retry_backoff: float = 2.0
    priority: int = 5
    concurrency: int | None = None
    per_user_concurrency: int | None = None

    def retry_delay(self, attempt: int, jitter: float) -> float:
        """Seconds before the attempt after `attempt` (1-based), `jitter` in [0, 1]: between half and
        all of retry_backoff * 2^(attempt-1), so retries of jobs that failed together spread out."""
        ceiling = min(RETRY_DELAY_MAX, self.retry_backoff * 2 ** min(attempt - 1, 20))
        return ceiling * (0.5 + jitter / 2)

    @property
    def celery_queue(self) -> str:
        return CELERY_QUEUES[self.queue]


def policy(kind: JobKind) -> Policy:
    declared = {"queue": kind.queue, "time_limit": kind.time_limit or settings.JOB_TIME_LIMIT_SECONDS,
                "retries": kind.retries, "retry_backoff": kind.retry_backoff, "priority": kind.priority,
                "concurrency": kind.concurrency, "per_user_concurrency": kind.per_user_concurrency}
    return Policy(**{**declared, **settings.JOB_KIND_POLICIES.get(kind.name, {})})


def _check_policy(where: str, queue: object, time_limit: object, retries: object = 0,
                  retry_backoff: object = 1.0, priority: object = 5, concurrency: object = None,
                  per_user_concurrency: object = None) -> None:
    if queue not in CELERY_QUEUES:
        raise ImproperlyConfigured(f"{where}: queue must be one of {', '.join(CELERY_QUEUES)}, not {queue!r}")
    if time_limit is not None and (type(time_limit) is not int or time_limit < 1):
        raise ImproperlyConfigured(f"{where}: time_limit must be a whole number of seconds >= 1, not {time_limit!r}")
    if type(retries) is not int or not 0 <= retries <= 100:
        raise ImproperlyConfigured(f"{where}: retries must be a whole number from 0 to 100, not {retries!r}")
    if type(retry_backoff) not in (int, float) or not 0 < retry_backoff <= RETRY_DELAY_MAX:
        raise ImproperlyConfigured(f"{where}: retry_backoff must be seconds above 0, at most {RETRY_DELAY_MAX:g}, "
                                   f"not {retry_backoff!r}")
    if type(priority) is not int or priority not in PRIORITIES:
        raise ImproperlyConfigured(f"{where}: priority must be a whole number from 0 to 9, not {priority!r}")
    for name, cap in (("concurrency", concurrency), ("per_user_concurrency", per_user_concurrency)):
        if cap is not None and (type(cap) is not int or not 1 <= cap <= CONCURRENCY_MAX):
            raise ImproperlyConfigured(f"{where}: {name} must be null or a whole number from 1 to {CONCURRENCY_MAX}, "
                                       f"not {cap!r}")


def check_policy_overrides() -> None:
    """JOB_KIND_POLICIES names only loaded kinds and known policies with valid values."""
    for name, overrides in settings.JOB_KIND_POLICIES.items():
        where = f"JOB_KIND_POLICIES[{name!r}]"
        if name not in _kinds:
            raise ImproperlyConfigured(f"{where}: no job kind {name!r} is loaded (known: {', '.join(_kinds)})")
        if not isinstance(overrides, dict) or set(overrides) - set(POLICY_FIELDS):
            raise ImproperlyConfigured(f"{where} must be an object with some of: {', '.join(POLICY_FIELDS)}")
        merged = policy(_kinds[name])
        _check_policy(where, merged.queue, merged.time_limit, merged.retries, merged.retry_backoff, merged.priority,
                      merged.concurrency, merged.per_user_concurrency)


_kinds: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if not re.match(NAME_PATTERN, kind.name):
        raise ImproperlyConfigured(f"job kind name {kind.name!r} must match {NAME_PATTERN}")
    clashes = set(TRIGGER_OPTION_NAMES) & set(kind.params._declared_fields)
    if clashes:
        raise ImproperlyConfigured(f"job kind {kind.name!r}: {', '.join(sorted(clashes))} is a trigger option "
                                   "(basic/api/trigger_options.py), not a name for a parameter")
    _check_policy(f"job kind {kind.name!r}", kind.queue, kind.time_limit, kind.retries, kind.retry_backoff,
                  kind.priority, kind.concurrency, kind.per_user_concurrency)
    existing = _kinds.get(kind.name)
    if existing is not None and existing.run is not kind.run:
        raise ImproperlyConfigured(f"job kind {kind.name!r} is registered twice")
    _kinds[kind.name] = kind
    return kind


def load_kinds() -> None:
    """Import every module named in JOB_KIND_MODULES (each registers its kinds on import)."""
    for module in settings.JOB_KIND_MODULES:
        importlib.import_module(module)
    check_policy_overrides()


def kinds() -> list[JobKind]:
    return list(_kinds.values())


def get_kind(name: str) -> JobKind | None:
    return _kinds.get(name)


def kind_choices() -> list[tuple[str, str]]:
    """For Job.kind's choices (a callable, so migrations don't change when a kind is added)."""
    return [(kind.name, kind.label) for kind in _kinds.values()]


def validate_params(kind: JobKind, params: object, context: dict, nest: str | None = None) -> dict:
    """The kind's validated parameters, or a DRF ValidationError naming each bad field (under `nest` if
    given): the API answers it as a 400, a schedule refuses to save with it."""
    serializer = kind.params(data=params, context=context)
    if not serializer.is_valid():
        raise serializers.ValidationError({nest: serializer.errors} if nest else serializer.errors)
    return serializer.validated_data
