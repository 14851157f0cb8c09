"""ASGI entry point: HTTP through Django, WebSockets through origin check, auth and routing."""
import os

import django

from basic.core import collector  # the garbage collector's settings: no Django in it
from basic.core.one_hop_handler import OneHopASGIHandler

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")

django.setup(set_prefix=False)
django_asgi_app = OneHopASGIHandler()

# Imported after Django is set up, so models load in the right order.
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402

from basic.realtime.auth import socket_auth_stack  # noqa: E402
from basic.realtime.handshake_gate import HandshakeGateMiddleware  # noqa: E402
from basic.realtime.origin_check import browser_origin_validator  # noqa: E402
from basic.realtime.socket_metrics import SocketMetricsMiddleware  # noqa: E402
from routing import websocket_urlpatterns  # noqa: E402

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        # Outermost: socket metrics count every socket, refused handshakes included. Then the
        # gate: sockets are opened a bounded number at a time, the rest wait or are refused early.
        "websocket": SocketMetricsMiddleware(HandshakeGateMiddleware(browser_origin_validator(
            socket_auth_stack(URLRouter(websocket_urlpatterns))
        ))),
    }
)

# Everything loaded so far lives as long as the process (basic/core/collector.py).
collector.tune_for_a_server()
collector.settle_what_is_loaded()
