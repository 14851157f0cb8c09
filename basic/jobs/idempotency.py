"""Idempotency keys on job and batch starts (issue 20): a client that retries a start it never heard
back from sends the same `Idempotency-Key` and gets the first job (or batch), not a second one.

- **One start per key.** `(owner, key)` is unique in the database (`IdempotencyKey`). `start_once`
  inserts the key first and starts the job (or the batch with every member, basic/jobs/batches.py)
  in the same transaction, so nothing half-done is ever committed: a concurrent duplicate's insert
  waits for that transaction (PostgreSQL's unique index; SQLite's write lock, BEGIN IMMEDIATE), then
  fails with IntegrityError and answers with what the first one linked. If the first rolls back (a
  quota 409, a database error), the duplicate's insert succeeds and it starts it itself. So a
  duplicate never sees a key without its job; should it (it cannot with one transaction), it is
  told to retry (`KeyInFlight`, a 409).
- **Same body.** The key is bound to a fingerprint of the request: the kind and its validated
  parameters as canonical JSON (sorted keys), an upload by its name, size and sha256; a batch's is
  the list of its members' in request order (`batch_fingerprint`). The same key with another
  fingerprint is `KeyReused` (a 422), never the wrong job; a job's and a batch's never match.
- **Failed starts free the key.** A start that raises inside the transaction (quota, bad input)
  rolls the key back with it; one that was committed but could not be queued (the broker was down
  at the commit: the job, or the batch's members, are marked failed, the view answers 503) deletes
  the key afterwards, so a retry with the same key starts it again.
- **Expiry.** A key counts for JOB_IDEMPOTENCY_HOURS after it was first used; an older one is taken
  over by the next request as a new key, and `purge_expired_keys` (run by the retention sweep,
  basic/jobs/retention.py) deletes the rest. A deleted job (or batch) takes its key with it.
"""
import hashlib
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, TypeVar

from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser
from django.core.files import File
from django.core.serializers.json import DjangoJSONEncoder
from django.db import IntegrityError, transaction
from django.utils import timezone

from basic.jobs.models import Batch, IdempotencyKey, Job

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
    """The key is held by a request whose job (batch) is not linked yet (the 409's detail): retry."""


KEY_REUSED = (f"Not started: this {HEADER} was used with a different request (another kind, other "
              "parameters, another file or, for a batch, other jobs) within the last {hours} hours; use a new "
              "key for a new request.")
IN_FLIGHT = f"A request with this {HEADER} is still being processed; retry in a moment."


@dataclass(frozen=True)
class Started:
    """The job a keyed start answers with, and whether it was an earlier request's (a replay)."""

    job: Job
    replayed: bool


@dataclass(frozen=True)
class BatchStarted:
    """The batch a keyed batch start answers with, and whether it was an earlier request's."""

    batch: Batch
    replayed: bool


Startable = TypeVar("Startable", Job, Batch)


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


def _request(kind_name: str, params: Mapping[str, Any], options: Mapping[str, Any] | None) -> dict[str, Any]:
    request = {"kind": kind_name, "params": _canonical(params)}
    if options:
        request["options"] = dict(options)
    return request


def _digest(request: Any) -> str:
    body = json.dumps(request, sort_keys=True, separators=(",", ":"), cls=DjangoJSONEncoder)
    return hashlib.sha256(body.encode()).hexdigest()


def fingerprint(kind_name: str, params: Mapping[str, Any], options: Mapping[str, Any] | None = None) -> str:
    """What a key is bound to: sha256 of the kind, its validated parameters and the trigger's options
    as given (priority, run_at or delay_seconds) as canonical JSON, so the same request gives the same
    value however its fields were ordered or sent (JSON or form)."""
    return _digest(_request(kind_name, params, options))


def batch_fingerprint(members: Iterable[tuple[str, Mapping[str, Any], Mapping[str, Any] | None]]) -> str:
    """A batch's: every member's (kind, validated parameters, trigger options) as `fingerprint` reads
    them, in request order (the order numbers the members and their files in the zip), under a key
    of its own, so no batch matches a single job's request."""
    return _digest({"batch": [_request(kind_name, params, options) for kind_name, params, options in members]})


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
        held = (IdempotencyKey.objects.filter(owner=owner, key=key)
                .select_related("job__owner", "batch__owner").first())
        if held is not None and held.created >= _cutoff():
            return held
        if held is not None:  # expired: it no longer counts; take it over
            IdempotencyKey.objects.filter(pk=held.pk, created=held.created).delete()
    raise KeyInFlight(IN_FLIGHT)


def _once(*, owner: AbstractBaseUser, key: str, fingerprint: str, start: Callable[[], Startable],
          link: str) -> tuple[Startable, bool]:
    """The one implementation behind `start_once` and `start_batch_once`: what `start` made (linked to
    the key by its field `link`, "job" or "batch") and False, or the key's earlier one and True."""
    started: Startable | None = None
    try:
        with transaction.atomic():
            held = _reserve(owner=owner, key=key, digest=fingerprint)
            if held is None:
                started = start()
                IdempotencyKey.objects.filter(owner=owner, key=key).update(**{link: started})
    except Exception:
        if started is not None:  # committed, then not queued (the broker was down): let a retry start it
            IdempotencyKey.objects.filter(owner=owner, key=key, **{link: started}).delete()
        raise
    if held is None:
        return started, False
    if held.fingerprint != fingerprint:
        raise KeyReused(KEY_REUSED.format(hours=settings.JOB_IDEMPOTENCY_HOURS))
    earlier = getattr(held, link)
    if earlier is None:
        raise KeyInFlight(IN_FLIGHT)
    return earlier, True


def start_once(*, owner: AbstractBaseUser, key: str, fingerprint: str, start: Callable[[], Job]) -> Started:
    """Start a job with `start` unless `owner` used `key` within JOB_IDEMPOTENCY_HOURS; then answer
    with that request's job (KeyReused if its fingerprint differs, KeyInFlight if it has no job yet).

    `start` (services.job_start with its arguments bound) runs inside this function's transaction,
    which must be the outermost (the view's autocommit), so its task is sent once the key and the
    job are committed together. Whatever `start` raises is raised from here, with the key freed.
    """
    job, replayed = _once(owner=owner, key=key, fingerprint=fingerprint, start=start, link="job")
    return Started(job=job, replayed=replayed)


def start_batch_once(*, owner: AbstractBaseUser, key: str, fingerprint: str,
                     start: Callable[[], Batch]) -> BatchStarted:
    """`start_once` for a batch (`batch_fingerprint`): `start` creates the batch and every member
    (basic/jobs/batches.py), all in this function's transaction with the key, so concurrent
    duplicates make one batch and a refused member leaves no key."""
    batch, replayed = _once(owner=owner, key=key, fingerprint=fingerprint, start=start, link="batch")
    return BatchStarted(batch=batch, replayed=replayed)


def purge_expired_keys(now: datetime | None = None) -> int:
    """Delete the keys older than JOB_IDEMPOTENCY_HOURS (the retention sweep calls this): one
    statement on the `created` index; returns how many went."""
    deleted, _ = IdempotencyKey.objects.filter(created__lt=_cutoff(now)).delete()
    return deleted
