"""WebSocket origin checks: browser sockets only from the origins in WS_ALLOWED_ORIGINS."""
from functools import lru_cache

from channels.security.websocket import WebsocketDenier
from django.conf import settings

from basic.realtime.origins import AllowedOrigin, origin_allowed, parse_allowed_origins


@lru_cache(maxsize=8)
def _allowed(entries: tuple[str, ...]) -> list[AllowedOrigin]:
    return parse_allowed_origins(list(entries))


class BrowserOriginValidator:
    """Rejects browser sockets from other sites (cross-site WebSocket hijacking).

    Browsers always send Origin, so a socket without one is a non-browser client (a script or
    the test suite), which carries its own credentials and cannot be hijacked; it is let through.
    A socket with an Origin must match WS_ALLOWED_ORIGINS (scheme, host and port; see
    basic/realtime/origins.py), read per connection. ALLOWED_HOSTS=* never widens it.
    """

    def __init__(self, application):  # type: ignore[no-untyped-def]
        self.application = application

    async def __call__(self, scope, receive, send):  # type: ignore[no-untyped-def]
        # Checked in a function of its own: locals of this frame live as long as the socket.
        if origins_allowed(scope):
            return await self.application(scope, receive, send)
        return await WebsocketDenier()(scope, receive, send)


def origins_allowed(scope: dict) -> bool:
    origins = [value.decode("latin1") for name, value in scope.get("headers", []) if name == b"origin"]
    allowed = _allowed(tuple(settings.WS_ALLOWED_ORIGINS))
    return all(origin_allowed(origin, allowed) for origin in origins)


def browser_origin_validator(application):  # type: ignore[no-untyped-def]
    return BrowserOriginValidator(application)
