"""Token auth for WebSockets: `?token=…` in the URL, or a first `{"type": "auth", "token": …}` frame.

Browsers use their session cookie (`socket_auth_stack`); scripts and API clients use the same
API token they use for REST, looked up the same way (`basic.accounts.tokens.user_for_key`).
"""
import logging
from types import SimpleNamespace
from typing import Any
from urllib.parse import parse_qs

from django.conf import settings
from django.http.cookie import parse_cookie

from basic.accounts import tokens
from basic.realtime.close_codes import CLOSE_INTERNAL_ERROR
from basic.realtime.db_reads import InFlight, database_read
from basic.realtime.refusals import (
    INTERNAL_ERROR,
    OUTAGES,
    UNAVAILABLE,
    UNAVAILABLE_RETRY_AFTER,
    is_unreachable,
    refuse_before_upgrade,
)

logger = logging.getLogger("basic.consumers")


def query_param(scope: dict[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(name)
    return values[-1] if values else None


def _session_user(session_key: str) -> tuple[Any, Any]:
    from django.contrib import auth

    session = _session_store()(session_key)
    return session, auth.get_user(SimpleNamespace(session=session))  # Django's checks: hash, backend


def _token_user(key: Any) -> Any:
    """The active user owning this API token key, or None (the lookup REST uses too)."""
    return tokens.user_for_key(key)


def _session_store() -> Any:
    from importlib import import_module

    return import_module(settings.SESSION_ENGINE).SessionStore


_read_session_user = database_read(_session_user)
_read_token_user = database_read(_token_user)
_in_flight = InFlight()  # sockets opened together with the same credentials share one lookup


async def session_user(session_key: str) -> tuple[Any, Any]:
    return await _in_flight.get(("session", session_key), lambda: _read_session_user(session_key))


async def user_for_token(key: Any) -> Any:
    """The active user owning this API token key, or None (the lookup REST uses too)."""
    return await _in_flight.get(("token", key), lambda: _read_token_user(key))


def cookies_of(scope: dict[str, Any]) -> dict[str, str]:
    """The request's cookies, as Channels' CookieMiddleware reads them."""
    for name, value in scope.get("headers", []):
        if name == b"cookie":
            return parse_cookie(value.decode("latin1"))
    return {}


class SocketAuthMiddleware:
    """scope["user"] (and scope["session"]) for a socket, in at most one database round trip:
    `?token=` when present (a bad one marks the scope `token_rejected`), else the session cookie.
    A socket with neither costs no database work and no thread hop at all. If the lookup fails on an
    outage, the socket is refused with 503 (or 1013) and a reason, before any consumer runs.

    Replaces Channels' AuthMiddlewareStack, which made two hops to the one sync thread per socket,
    with or without a cookie (a third of a connect storm's wall time, py-spy), and whose session
    wrapper checked the session on every frame a socket sent (a tenth of Daphne's time fanning
    out to thousands of sockets, docs/benchmarks.md). A consumer that changes the session saves
    it itself, as Channels asks."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        from django.contrib.auth.models import AnonymousUser

        key = query_param(scope, "token")
        cookies = cookies_of(scope)
        session_key = cookies.get(settings.SESSION_COOKIE_NAME) or None
        extra: dict[str, Any] = {}
        try:
            if key is not None:
                user = await user_for_token(key)
                session = _session_store()(session_key)
                if user is None:
                    user, extra = AnonymousUser(), {"token_rejected": True}
            elif session_key:
                session, user = await session_user(session_key)
            else:
                session, user = _session_store()(None), AnonymousUser()
        except OUTAGES as exc:  # the chaos soak's PostgreSQL restart: it escaped to Daphne as a crash
            if not is_unreachable(exc):  # a bug: logged with its traceback, refused as one (500)
                logger.exception("socket refused: looking up its user failed")
                await refuse_before_upgrade(scope, receive, send, INTERNAL_ERROR, None, status=500,
                                            close_code=CLOSE_INTERNAL_ERROR)
                return None
            logger.warning("socket refused: the user could not be looked up (%s: %s)", type(exc).__name__, exc)
            await refuse_before_upgrade(scope, receive, send, UNAVAILABLE, UNAVAILABLE_RETRY_AFTER)
            return None
        # One copy of the scope for cookies, session and user (Channels' stack made three, about
        # 0.5 KiB each, kept for the socket's life by each middleware's frame).
        scope = {**scope, "cookies": cookies, "session": session, "user": user, **extra}
        return await self.inner(scope, receive, send)


def socket_auth_stack(inner: Any) -> Any:
    """The socket's cookies and user (SocketAuthMiddleware), for WebSocket routes."""
    return SocketAuthMiddleware(inner)
