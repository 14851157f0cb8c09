"""Every API error is JSON with a `detail`; an outage of Redis or the broker is a 503, not a 500;
and an error that echoes input renders whatever that input held (a lone surrogate becomes U+FFFD).
Under /api/ that holds in every mode: JsonErrorsUnderApiMiddleware turns the error pages Django
makes outside DRF (with DEBUG on, its technical 404 and 500 pages) into `{"detail": …}` too."""
import logging
from typing import Any

from django.conf import settings
from django.core.exceptions import BadRequest as DjangoBadRequest
from django.core.exceptions import RequestDataTooBig, SuspiciousOperation, TooManyFieldsSent, TooManyFilesSent
from django.db import DatabaseError, DataError
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.defaults import page_not_found
from kombu.exceptions import OperationalError
from redis import RedisError
from rest_framework import status
from rest_framework.exceptions import APIException
from rest_framework.response import Response
from rest_framework.views import exception_handler

from basic.core import untrusted_json
from basic.core.database_outages import is_outage
from basic.core.middleware import SyncAndAsyncMiddleware
from basic.core.repeated_log import RepeatedWarning

logger = logging.getLogger(__name__)

# A database restart fails every request in flight the same way: one line every 10 s says so (with
# how many were left out), not a traceback per request. Other database errors keep theirs.
DATABASE_UNREACHABLE = RepeatedWarning(logger, "API requests answered 503: the database is unreachable")


class ServiceUnavailable(APIException):
    status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    default_detail = "A backing service is unavailable; try again shortly."
    default_code = "service_unavailable"


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_code = "conflict"


class PayloadTooLarge(APIException):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE
    default_code = "payload_too_large"


class BadRequest(APIException):
    status_code = status.HTTP_400_BAD_REQUEST
    default_code = "bad_request"


class IdempotencyKeyReused(APIException):
    """422: an Idempotency-Key sent again with a different request (basic/jobs/idempotency.py). The
    body names the `code` too, so a client can tell it from a validation error."""

    status_code = status.HTTP_422_UNPROCESSABLE_ENTITY
    default_code = "idempotency_key_reused"

    def __init__(self, detail: str) -> None:
        super().__init__({"detail": detail, "code": self.default_code})


# What a user reads: what failed and what to do. Never the exception's text, which names hosts,
# ports and file paths; that goes to the log, with the request and the job id.
REDIS_DOWN = "Redis or the job queue is unreachable right now; try again in a minute."
DATABASE_DOWN = "The database is unavailable right now; try again in a minute."
UNREADABLE_REQUEST = "The request could not be read (a malformed body or header); check how it is encoded."
BAD_VALUE = "The request holds a value the database can't store or compare (e.g. a NUL character)."
INTERNAL_ERROR = "Internal error. It has been logged; try again, or report what you did and when."


def _where(context: dict[str, Any]) -> str:
    """The request, for the log (a job's path holds its id)."""
    request = context.get("request")
    return f"{request.method} {request.path}" if request is not None else "the API"


def api_exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, (RedisError, OperationalError)):
        logger.error("backing service down on %s: %s: %s", _where(context), type(exc).__name__, exc)
        exc = ServiceUnavailable(REDIS_DOWN)
    elif isinstance(exc, RequestDataTooBig):  # Django's limit, met when the view reads the body
        limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE / (1024 * 1024)
        exc = PayloadTooLarge(f"The request body is too large: at most {limit:g} MB (files aside).")
    elif isinstance(exc, TooManyFieldsSent | TooManyFilesSent):
        exc = BadRequest("The request has too many form fields or files.")
    elif isinstance(exc, DjangoBadRequest | SuspiciousOperation):  # Django refusing to read the request
        logger.warning("unreadable request on %s: %s", _where(context), exc)
        exc = BadRequest(UNREADABLE_REQUEST)
    elif isinstance(exc, DataError):  # the request's value, not an outage: PostgreSQL refuses NUL characters
        logger.warning("database refused a value on %s: %s", _where(context), exc)
        exc = BadRequest(BAD_VALUE)
    elif is_outage(exc):
        DATABASE_UNREACHABLE.warning(exc, where=_where(context))
        exc = ServiceUnavailable(DATABASE_DOWN)
    elif isinstance(exc, DatabaseError):
        logger.exception("database error on %s", _where(context))
        exc = ServiceUnavailable(DATABASE_DOWN)
    response = exception_handler(exc, context)
    if response is None:
        logger.error("unhandled API error on %s", _where(context), exc_info=exc)
        return Response({"detail": INTERNAL_ERROR}, status=status.HTTP_500_INTERNAL_SERVER_ERROR)
    # A field error may quote the value it refused; whatever that holds, the answer must encode.
    response.data = untrusted_json.scrub(response.data)
    return response


def not_found(request: HttpRequest, exception: Exception) -> HttpResponse:
    """`handler404` (app/urls.py): under /api/ a URL that matches no route (e.g. a job id with
    characters no id has) is the same JSON 404 as a missing object; elsewhere Django's page."""
    if request.path.startswith("/api/"):
        return JsonResponse({"detail": "Not found."}, status=status.HTTP_404_NOT_FOUND)
    return page_not_found(request, exception)


# What an error answer Django made outside DRF says, by status (others: its reason phrase).
ERROR_DETAILS = {400: UNREADABLE_REQUEST, 404: "Not found.", 500: INTERNAL_ERROR}
_KEPT_HEADERS = ("allow", "retry-after", "vary", "www-authenticate")


def json_error(request: HttpRequest, response: HttpResponse) -> HttpResponse:
    """`response` itself unless it is an error under /api/ in something other than JSON; then the
    same status (and Allow, Retry-After, Vary, WWW-Authenticate) with a JSON `{"detail": …}`."""
    if response.status_code < 400 or not request.path.startswith("/api/"):
        return response
    content_type = response.get("Content-Type", "")
    if "json" in content_type.split(";")[0]:
        return response
    detail = ERROR_DETAILS.get(response.status_code, f"{response.reason_phrase}.")
    answer = JsonResponse({"detail": detail}, status=response.status_code)
    for name in _KEPT_HEADERS:
        if name in response:
            answer[name] = response[name]
    answer.cookies = response.cookies
    # Not `response.close()`: that sends `request_finished` (closing DB connections, in the
    # async path from the event loop) a second time; the handler sends it for `answer`. Error
    # pages hold no file or stream to close.
    return answer


class JsonErrorsUnderApiMiddleware(SyncAndAsyncMiddleware):
    """Every answer under /api/ is JSON in every mode: with DEBUG on, Django answers a URL that
    matches no route (`/api/jobs//`, `/api/schedules/2.6e-195/`) with its technical 404 page,
    never calling `handler404` (`not_found` below), and an error outside a view with its HTML 500."""

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        return json_error(request, self.get_response(request))

    async def __acall__(self, request: HttpRequest) -> Any:
        return json_error(request, await self.get_response(request))
