"""ASGI entry point: HTTP through Django, WebSockets through origin check, auth and routing."""
import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
django_asgi_app = get_asgi_application()

# Imported after Django is set up, so models load in the right order.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from basic.realtime.auth import TokenAuthMiddleware, socket_auth_stack  # noqa: E402
from basic.realtime.origin_check import browser_origin_validator  # noqa: E402
from basic.realtime.socket_metrics import SocketMetricsMiddleware  # noqa: E402
from routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Outermost: socket metrics count every socket, refused handshakes included.
        "websocket": SocketMetricsMiddleware(browser_origin_validator(
            socket_auth_stack(TokenAuthMiddleware(URLRouter(websocket_urlpatterns)))
        )),
    }
)
