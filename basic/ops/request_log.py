"""One log line per HTTP request: method, path, status, duration_ms and user (logger `basic.requests`).

With LOG_FORMAT=json these are fields of the line; in text they read
`GET /api/jobs/ 200 3.1ms alice`. The query string is left out (it may carry a token).
"""
import logging
import time
from typing import Any

from django.http import HttpRequest, HttpResponseBase
from django.utils.functional import LazyObject, empty

from basic.core.middleware import SyncAndAsyncMiddleware

logger = logging.getLogger("basic.requests")


def _username(request: HttpRequest) -> str | None:
    """The user, if something during the request already loaded it: reading a lazy, unloaded
    `request.user` here would query the session in an async context."""
    user: Any = request.__dict__.get("user")
    if isinstance(user, LazyObject):
        if user._wrapped is empty:
            return None
        user = user._wrapped
    if user is None or not getattr(user, "is_authenticated", False):
        return None
    return user.get_username()


def log_request(request: HttpRequest, response: HttpResponseBase | None, started: float) -> None:
    try:
        duration_ms = round((time.perf_counter() - started) * 1000, 1)
        status = response.status_code if response is not None else 500
        user = _username(request)
        logger.info(
            "%s %s %s %sms%s", request.method, request.path, status, duration_ms, f" {user}" if user else "",
            extra={"method": request.method, "path": request.path, "status": status,
                   "duration_ms": duration_ms, "user": user},
        )
    except Exception:  # logging must never break a response
        logger.debug("request log line failed", exc_info=True)


class RequestLogMiddleware(SyncAndAsyncMiddleware):

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        started, response = time.perf_counter(), None
        try:
            response = self.get_response(request)
            return response
        finally:
            log_request(request, response, started)

    async def __acall__(self, request: HttpRequest) -> Any:
        started, response = time.perf_counter(), None
        try:
            response = await self.get_response(request)
            return response
        finally:
            log_request(request, response, started)
