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


class KindContext(Protocol):
    """What a body may use of the JobContext it is given (basic/jobs/context.py). Declared here, not
    imported, so the registry imports nothing of the app and the model can read its choices from it."""

    params: dict[str, Any]

    @property
    def job_id(self) -> str: ...

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
    """

    name: str
    label: str
    params: type[serializers.Serializer]
    run: Callable[[KindContext], dict[str, Any]]
    media_type: str | None = "application/octet-stream"
    description: str = ""
    prepare: Callable[[dict[str, Any], Path], dict[str, Any]] | None = None
    route: str | None = None


_kinds: dict[str, JobKind] = {}


def register(kind: JobKind) -> JobKind:
    if not re.match(NAME_PATTERN, kind.name):
        raise ImproperlyConfigured(f"job kind name {kind.name!r} must match {NAME_PATTERN}")
    existing = _kinds.get(kind.name)
    if existing is not None and existing.run is not kind.run:
        raise ImproperlyConfigured(f"job kind {kind.name!r} is registered twice")
    _kinds[kind.name] = kind
    return kind


def load_kinds() -> None:
    """Import every module named in JOB_KIND_MODULES (each registers its kinds on import)."""
    for module in settings.JOB_KIND_MODULES:
        importlib.import_module(module)


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
