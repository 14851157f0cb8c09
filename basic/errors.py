"""Every API error is JSON with a `detail`; an outage of Redis or the broker is a 503, not a 500."""
import logging
from typing import Any

from django.db import DatabaseError
from kombu.exceptions import OperationalError
from redis import RedisError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

logger = logging.getLogger(__name__)


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; try again shortly."
    default_code = "service_unavailable"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


# What a user reads: what failed and what to do. Never the exception's text, which names hosts,
# ports and file paths; that goes to the log, with the request and the job id.
REDIS_DOWN = "Redis or the job queue is unreachable right now; try again in a minute."
DATABASE_DOWN = "The database is unavailable right now; try again in a minute."
INTERNAL_ERROR = "Internal error. It has been logged; try again, or report what you did and when."


def _where(context: dict[str, Any]) -> str:
    """The request, for the log (a job's path holds its id)."""
    request = context.get("request")
    return f"{request.method} {request.path}" if request is not None else "the API"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, (RedisError, OperationalError)):
        logger.error("backing service down on %s: %r", _where(context), exc)
        exc = ServiceUnavailable(REDIS_DOWN)
    elif isinstance(exc, DatabaseError):
        logger.exception("database error on %s", _where(context))
        exc = ServiceUnavailable(DATABASE_DOWN)
    response = exception_handler(exc, context)
    if response is None:
        logger.error("unhandled API error on %s", _where(context), exc_info=exc)
        return Response({"detail": INTERNAL_ERROR}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return response
