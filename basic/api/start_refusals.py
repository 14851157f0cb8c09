"""Why a start (one job or a batch) is refused, as the API answers it: one place for both views."""
from collections.abc import Iterator
from contextlib import contextmanager

from rest_framework.request import Request

from basic.api.errors import BadRequest, Conflict, IdempotencyKeyReused, ServiceUnavailable
from basic.jobs import idempotency, services


def idempotency_key(request: Request) -> str | None:
    """The request's Idempotency-Key, or None without one; a malformed one is a 400 saying why."""
    try:
        return idempotency.key_from_header(request.headers.get(idempotency.HEADER))
    except idempotency.InvalidKey as exc:
        raise BadRequest(str(exc)) from exc


@contextmanager
def refusals_answered() -> Iterator[None]:
    """The job queue unreachable: 503 (the job or members are marked failed); the owner's stored
    output at its quota, or a request with the same key still in flight: 409; the key used before
    with another request: 422."""
    try:
        yield
    except services.BrokerUnavailable as exc:
        raise ServiceUnavailable(str(exc)) from exc
    except services.QuotaExceeded as exc:
        raise Conflict(str(exc)) from exc
    except idempotency.KeyReused as exc:
        raise IdempotencyKeyReused(str(exc)) from exc
    except idempotency.KeyInFlight as exc:
        raise Conflict(str(exc)) from exc
