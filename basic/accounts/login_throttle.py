"""Sign-in throttling: LOGIN_RATE attempts per client address and per username, whichever runs out
first, shared by every form that checks a password: `POST /api/auth/token/`, the console's form at
`/accounts/login/`, the admin's `/admin/login/` and both password-change forms (so alternating
between them buys nothing).

Counters live in Django's cache (Redis in production, so every web process shares them) as
fixed windows: one INCR per attempt and key. An attempt over the limit gets 429: JSON with
`Retry-After` from the API, a page saying how long to wait from the form.
"""
import hashlib
import logging
import math
import time
from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.views import LoginView
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from drf_spectacular.utils import extend_schema
from rest_framework.authtoken.views import ObtainAuthToken
from rest_framework.exceptions import Throttled
from rest_framework.request import Request
from rest_framework.response import Response

from basic.accounts import tokens
from basic.accounts.serializers import NewApiTokenSerializer, SignInSerializer
from basic.core.keys import login_attempts_key

logger = logging.getLogger(__name__)

clock = time.time  # tests stop it
PERIODS = {"s": 1, "sec": 1, "second": 1, "m": 60, "min": 60, "minute": 60, "h": 3600, "hour": 3600,
           "d": 86400, "day": 86400}


def parse_rate(rate: str) -> tuple[int, int]:
    """"10/min" -> (10, 60). Accepts s, m, h, d and their longer spellings."""
    count, _, period = rate.partition("/")
    return int(count), PERIODS[period.strip().lower()]


def _count(kind: str, who: str, period: int, now: float) -> tuple[int, float]:
    """One more attempt in the current window for (kind, who): (attempts so far, seconds left)."""
    window = int(now // period)
    digest = hashlib.sha256(who.encode("utf-8", "surrogatepass")).hexdigest()[:32]
    key = login_attempts_key(kind, digest, window)
    cache.add(key, 0, timeout=period + 1)
    try:
        attempts = cache.incr(key)
    except ValueError:  # expired between add and incr
        cache.set(key, 1, timeout=period + 1)
        attempts = 1
    return attempts, (window + 1) * period - now


def client_address(request: HttpRequest) -> str:
    """The peer address Daphne saw (behind a proxy, start Daphne with --proxy-headers)."""
    return request.META.get("REMOTE_ADDR") or "unknown"


def seconds_to_wait(request: HttpRequest, username: Any) -> int | None:
    """Count a sign-in attempt; None if it may go ahead, else the whole seconds to wait."""
    limit, period = parse_rate(settings.LOGIN_RATE)
    subjects = [("ip", client_address(request))]
    if isinstance(username, str | int) and str(username).strip():
        subjects.append(("user", str(username).strip().casefold()[:256]))
    now = clock()
    waits = []
    try:
        for kind, who in subjects:
            attempts, left = _count(kind, who, period, now)
            if attempts > limit:
                waits.append(left)
    except Exception:  # the cache (Redis) is down: let sign-in work rather than lock everyone out
        logger.warning("sign-in throttle unavailable; attempt allowed", exc_info=True)
        return None
    return max(1, math.ceil(max(waits))) if waits else None


def _username(data: Any) -> Any:
    return data.get("username") if hasattr(data, "get") else None


def _refusal(request: HttpRequest, username: Any) -> HttpResponse | None:
    """Count a form's sign-in attempt; the 429 page saying how long to wait, or None to go ahead."""
    wait = seconds_to_wait(request, username)
    if wait is None:
        return None
    response = render(request, "registration/login_throttled.html", {"wait": wait}, status=429)
    response["Retry-After"] = str(wait)
    return response


def _form_username(request: HttpRequest) -> Any:
    """The name a form signs in as: its `username` field, or (a password-change form, which asks
    for the old password) the signed-in user's."""
    if "username" in request.POST:
        return request.POST.get("username")
    user = getattr(request, "user", None)
    return user.get_username() if user is not None and user.is_authenticated else None


def throttled_sign_in(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Any Django view that checks a password on POST (the admin's login, password change),
    throttled with the same budget as the rest; GET is never counted."""

    @wraps(view)
    def throttled(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        if request.method == "POST":
            refused = _refusal(request, _form_username(request))
            if refused is not None:
                return refused
        return view(request, *args, **kwargs)

    return throttled


class ThrottledObtainAuthToken(ObtainAuthToken):
    """`POST /api/auth/token/`: sign in with username and password, throttled; each call makes a new
    API token (optionally `name`d) and answers its key, the only time it is shown."""

    serializer_class = SignInSerializer

    @extend_schema(request=SignInSerializer, responses={200: NewApiTokenSerializer})
    def post(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        wait = seconds_to_wait(request._request, _username(request.data))
        if wait is not None:
            raise Throttled(wait=wait, detail=f"Too many sign-in attempts; try again in {wait} seconds.")
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token, key = tokens.create_token(serializer.validated_data["user"], serializer.validated_data["name"])
        return Response(NewApiTokenSerializer(token, context={"key": key}).data)


class ThrottledLoginView(LoginView):
    """`/accounts/login/`: Django's sign-in form, throttled (429 and a page that says how long)."""

    def post(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refused = _refusal(request, request.POST.get("username"))
        return refused if refused is not None else super().post(request, *args, **kwargs)
