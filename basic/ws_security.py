"""WebSocket origin checks."""
from channels.security.websocket import OriginValidator
from django.conf import settings


class BrowserOriginValidator(OriginValidator):
    """Rejects browser sockets from other sites (cross-site WebSocket hijacking).

    Browsers always send Origin, so a socket without one is a non-browser client (a script or
    the test suite), which carries its own credentials and cannot be hijacked; it is let through.
    """

    def valid_origin(self, parsed_origin) -> bool:  # type: ignore[no-untyped-def]
        if parsed_origin is None:
            return True
        return self.validate_origin(parsed_origin)


def browser_origin_validator(application):  # type: ignore[no-untyped-def]
    allowed = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not allowed:
        allowed = ["localhost", "127.0.0.1", "[::1]"]
    return BrowserOriginValidator(application, allowed)
