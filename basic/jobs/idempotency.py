"""Idempotency keys on job starts (issue 20): a client that retries a start it never heard back from
sends the same `Idempotency-Key` and gets the first job, not a second one.

- **One job per key.** `(owner, key)` is unique in the database (`IdempotencyKey`). `start_once`
  inserts the key first and starts the job in the same transaction, so nothing half-done is ever
  committed: a concurrent duplicate's insert waits for that transaction (PostgreSQL's unique index;
  SQLite's write lock, BEGIN IMMEDIATE), then fails with IntegrityError and answers with the job
  the first one linked. If the first rolls back (a quota 409, a database error), the duplicate's
  insert succeeds and it starts the job itself. So a duplicate never sees a key without its job;
  should it (it cannot with one transaction), it is told to retry (`KeyInFlight`, a 409).
- **Same body.** The key is bound to a fingerprint of the request: the kind and its validated
  parameters as canonical JSON (sorted keys), an upload by its name, size and sha256. The same key
  with another fingerprint is `KeyReused` (a 422), never the wrong job.
- **Failed starts free the key.** A start that raises inside the transaction (quota, bad input)
  rolls the key back with it; one whose job was committed but could not be queued (the broker was
  down at the commit: the job is marked failed, the view answers 503) deletes the key afterwards,
  so a retry with the same key starts the job.
- **Expiry.** A key counts for JOB_IDEMPOTENCY_HOURS after it was first used; an older one is taken
  over by the next request as a new key, and `purge_expired_keys` (run by the retention sweep,
  basic/jobs/retention.py) deletes the rest. A deleted job takes its key with it.
"""
import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from basic.jobs.models import IdempotencyKey, Job

HEADER = "Idempotency-Key"
REPLAYED_HEADER = "Idempotent-Replayed"
MAX_LENGTH = 255
# How often a request retries taking a key that expired (or vanished with its job) meanwhile
# before it gives up with KeyInFlight; each failure means another request just took or freed it.
ATTEMPTS = 3


class InvalidKey(Exception):
    """The header is not 1-255 printable ASCII characters; str(exc) says so (the 400's detail)."""


class KeyReused(Exception):
    """The key was used, within its hours, with a different request (the 422's detail)."""


class KeyInFlight(Exception):
    """The key is held by a request whose job is not linked yet (the 409's detail): retry."""


KEY_REUSED = (f"Not started: this {HEADER} was used with a different request (another kind, other "
              "parameters or another file) within the last {hours} hours; use a new key for a new request.")
IN_FLIGHT = f"A request with this {HEADER} is still being processed; retry in a moment."


@dataclass(frozen=True)
class Started:
    """The job a keyed start answers with, and whether it was an earlier request's (a replay)."""

    job: Job
    replayed: bool


# --- the request -----------------------------------------------------------------------------------

def key_from_header(value: str | None) -> str | None:
    """The key, or None when the header is absent (the start is not idempotent, as before).
    InvalidKey if it is empty, longer than 255 or holds anything but printable ASCII."""
    if value is None:
        return None
    if not 1 <= len(value) <= MAX_LENGTH or not all(" " <= char <= "~" for char in value):
        raise InvalidKey(f"The {HEADER} header must be 1 to {MAX_LENGTH} printable ASCII characters "
                         "(e.g. a UUID).")
    return value


def _canonical(value: Any) -> Any:
    """`value` as plain JSON values; an uploaded file as its name, size and the sha256 of its bytes
    (read in chunks, then rewound, so the start can still store it)."""
    if isinstance(value, File):
        digest = hashlib.sha256()
        for chunk in value.chunks():
            digest.update(chunk)
        value.seek(0)
        return {"file": getattr(value, "name", None), "size": value.size, "sha256": digest.hexdigest()}
    if isinstance(value, Mapping):
        return {str(name): _canonical(item) for name, item in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(item) for item in value]
    return value


def fingerprint(kind_name: str, params: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> str:
    """What a key is bound to: sha256 of the kind, its validated parameters and the trigger's options
    as given (priority, run_at or delay_seconds) as canonical JSON, so the same request gives the same
    value however its fields were ordered or sent (JSON or form)."""
    request = {"kind": kind_name, "params": _canonical(params)}
    if options:
        request["options"] = dict(options)
    body = json.dumps(request, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(body.encode()).hexdigest()


# --- the service -----------------------------------------------------------------------------------

def _cutoff(now: datetime | None = None) -> datetime:
    return (now or timezone.now()) - timedelta(hours=settings.JOB_IDEMPOTENCY_HOURS)


def _reserve(*, owner: AbstractBaseUser, key: str, digest: str) -> IdempotencyKey | None:
    """Take the key for this request (None: the caller starts the job), or the live row of the
    request that holds it. Run inside the caller's transaction, which the insert makes wait for any
    other transaction holding the same key."""
    for _ in range(ATTEMPTS):
        try:
            with transaction.atomic():  # a savepoint: PostgreSQL refuses further queries after an error
                IdempotencyKey.objects.create(owner=owner, key=key, fingerprint=digest)
            return None
        except IntegrityError:
            pass
        held = IdempotencyKey.objects.filter(owner=owner, key=key).select_related("job__owner").first()
        if held is not None and held.created >= _cutoff():
            return held
        if held is not None:  # expired: it no longer counts; take it over
            IdempotencyKey.objects.filter(pk=held.pk, created=held.created).delete()
    raise KeyInFlight(IN_FLIGHT)


def start_once(*, owner: AbstractBaseUser, key: str, fingerprint: str, start: Callable[[], Job]) -> Started:
    """Start a job with `start` unless `owner` used `key` within JOB_IDEMPOTENCY_HOURS; then answer
    with that request's job (KeyReused if its fingerprint differs, KeyInFlight if it has no job yet).

    `start` (services.job_start with its arguments bound) runs inside this function's transaction,
    which must be the outermost (the view's autocommit), so its task is sent once the key and the
    job are committed together. Whatever `start` raises is raised from here, with the key freed.
    """
    job: Job | None = None
    try:
        with transaction.atomic():
            held = _reserve(owner=owner, key=key, digest=fingerprint)
            if held is None:
                job = start()
                IdempotencyKey.objects.filter(owner=owner, key=key).update(job=job)
    except Exception:
        if job is not None:  # committed, then not queued (the broker was down): let a retry start it
            IdempotencyKey.objects.filter(owner=owner, key=key, job=job).delete()
        raise
    if held is None:
        return Started(job=job, replayed=False)
    if held.fingerprint != fingerprint:
        raise KeyReused(KEY_REUSED.format(hours=settings.JOB_IDEMPOTENCY_HOURS))
    if held.job is None:
        raise KeyInFlight(IN_FLIGHT)
    return Started(job=held.job, replayed=True)


def purge_expired_keys(now: datetime | None = None) -> int:
    """Delete the keys older than JOB_IDEMPOTENCY_HOURS (the retention sweep calls this): one
    statement on the `created` index; returns how many went."""
    deleted, _ = IdempotencyKey.objects.filter(created__lt=_cutoff(now)).delete()
    return deleted
