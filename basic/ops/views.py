"""/healthz, /readyz and /metrics: thin views over basic/ops/health.py and basic/ops/metrics.py.

OpsEndpointsMiddleware (first in MIDDLEWARE, after the request log) answers these three paths
before host validation and the HTTPS redirect: a probe or scraper calls a pod by its address over
plain HTTP, which ALLOWED_HOSTS and SECURE_SSL_REDIRECT would refuse. Under ASGI it runs the views
off the event loop in their own thread, not the one thread Django shares among sync views, so a
slow readiness check holds up no other request. app/urls.py routes the same views by name.
"""
import hmac
import ipaddress
from typing import Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from prometheus_client import CONTENT_TYPE_LATEST

from basic.core.middleware import SyncAndAsyncMiddleware
from basic.ops import health, metrics

# Set by proxies: a request that carries one came through a proxy, even if it arrives from loopback.
FORWARDING_HEADERS = ("HTTP_X_FORWARDED_FOR", "HTTP_FORWARDED", "HTTP_X_REAL_IP")


@never_cache
def healthz(request: HttpRequest) -> HttpResponse:
    return JsonResponse(health.liveness())


@never_cache
def readyz(request: HttpRequest) -> HttpResponse:
    ready, body = health.readiness(trusted=is_loopback_client(request) or has_metrics_token(request))
    response = JsonResponse(body, status=200 if ready else 503)
    # basic.ops.health already logs what is down (WARNING); skip Django's ERROR line for every probe.
    response._has_been_logged = True  # type: ignore[attr-defined]
    return response


def is_loopback_client(request: HttpRequest) -> bool:
    """From this machine and not relayed by a proxy on it (which would make everyone loopback)."""
    if any(request.META.get(header) for header in FORWARDING_HEADERS):
        return False
    try:
        return ipaddress.ip_address(request.META.get("REMOTE_ADDR", "")).is_loopback
    except ValueError:
        return False


def _refuse(status: int, detail: str, **headers: str) -> HttpResponse:
    response = JsonResponse({"detail": detail}, status=status)
    for name, value in headers.items():
        response[name.replace("_", "-")] = value
    return response


def has_metrics_token(request: HttpRequest) -> bool:
    """The request carries METRICS_TOKEN (set): it may see what only operators should."""
    token = settings.METRICS_TOKEN
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return bool(token) and scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


@never_cache
def metrics_view(request: HttpRequest) -> HttpResponse:
    token = settings.METRICS_TOKEN
    if token:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not given.strip():
            return _refuse(401, "Send Authorization: Bearer <METRICS_TOKEN>.",
                           WWW_Authenticate='Bearer realm="metrics"')
        if not hmac.compare_digest(given.strip().encode(), token.encode()):
            return _refuse(403, "That metrics token is not valid.")
    elif not is_loopback_client(request):
        return _refuse(403, "Metrics are served to loopback clients only; set METRICS_TOKEN to scrape from elsewhere.")
    return HttpResponse(metrics.render(), content_type=CONTENT_TYPE_LATEST)


OPS_VIEWS = {"/healthz": healthz, "/readyz": readyz, "/metrics": metrics_view}


class OpsEndpointsMiddleware(SyncAndAsyncMiddleware):

    def _view(self, request: HttpRequest) -> Any:
        view = OPS_VIEWS.get(request.path_info.rstrip("/") or "/")
        return view if view is not None and request.method in ("GET", "HEAD") else None

    def __call__(self, request: HttpRequest) -> Any:
        if self.is_async:
            return self.__acall__(request)
        view = self._view(request)
        return view(request) if view else self.get_response(request)

    async def __acall__(self, request: HttpRequest) -> Any:
        view = self._view(request)
        if view is None:
            return await self.get_response(request)
        if view is healthz:
            return healthz(request)
        return await sync_to_async(view, thread_sensitive=False)(request)
