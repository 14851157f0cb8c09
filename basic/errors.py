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


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, (RedisError, OperationalError)):
        logger.error("backing service down: %s", exc)
        exc = ServiceUnavailable(f"Redis or the job queue is unreachable: {exc}")
    elif isinstance(exc, DatabaseError):
        logger.exception("database error")
        exc = ServiceUnavailable("The database is unavailable.")
    response = exception_handler(exc, context)
    if response is None:
        logger.exception("unhandled API error", exc_info=exc)
        return Response({"detail": "Internal error."}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    return response
