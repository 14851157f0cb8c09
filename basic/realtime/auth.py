"""Token auth for WebSockets: `?token=…` in the URL, or a first `{"type": "auth", "token": …}` frame.

Browsers use their session cookie (`socket_auth_stack`); scripts and API clients use the same
API token they use for REST, looked up the same way (`basic.accounts.tokens.user_for_key`).
"""
from typing import Any
from urllib.parse import parse_qs

from channels.auth import AuthMiddleware
from channels.db import database_sync_to_async
from channels.middleware import BaseMiddleware
from channels.sessions import CookieMiddleware, InstanceSessionWrapper, SessionMiddleware

from basic.accounts import tokens


def query_param(scope: dict[str, Any], name: str) -> str | None:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1"), keep_blank_values=True).get(name)
    return values[-1] if values else None


@database_sync_to_async
def user_for_token(key: Any) -> Any:
    """The active user owning this API token key, or None (the lookup REST uses too)."""
    return tokens.user_for_key(key)


class SocketSessionMiddleware(SessionMiddleware):
    """Channels' SessionMiddleware, minus its wrapper around `send`: the wrapper saves the session
    and sets its cookie on `http.response.start`, which a WebSocket never sends, yet it checked the
    session on every frame (a tenth of Daphne's time fanning out to thousands of sockets,
    docs/benchmarks.md). A consumer that changes the session saves it itself, as Channels asks."""

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        wrapper = InstanceSessionWrapper(scope, send)
        await wrapper.resolve_session()
        return await self.inner(wrapper.scope, receive, send)


def socket_auth_stack(inner: Any) -> Any:
    """Channels' AuthMiddlewareStack (session cookie -> scope["user"]) for WebSocket routes."""
    return CookieMiddleware(SocketSessionMiddleware(AuthMiddleware(inner)))


class TokenAuthMiddleware(BaseMiddleware):
    """Sets scope["user"] from `?token=` when present; otherwise leaves the session user."""

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        key = query_param(scope, "token")
        if key is not None:
            user = await user_for_token(key)
            if user is not None:
                scope = {**scope, "user": user}
            else:
                from django.contrib.auth.models import AnonymousUser

                scope = {**scope, "user": AnonymousUser(), "token_rejected": True}
        return await super().__call__(scope, receive, send)
