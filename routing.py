"""WebSocket routes."""
from django.urls import path, re_path

from basic.realtime import consumers

websocket_urlpatterns = [
    re_path(r"^ws/jobs/(?P<job_id>[^/]{1,64})/$", consumers.JobEventsConsumer.as_asgi()),
    re_path(r"^ws/batches/(?P<batch_id>[^/]{1,64})/$", consumers.BatchEventsConsumer.as_asgi()),
    path("ws/events/", consumers.UserEventsConsumer.as_asgi()),
    re_path(r"^ws/chat/(?P<room>[^/]{1,200})/$", consumers.ChatConsumer.as_asgi()),
    path("chat/", consumers.SeedChatConsumer.as_asgi()),
]
# Anything else: say so with 4404 instead of failing the handshake with a server error.
websocket_urlpatterns.append(re_path(r"", consumers.UnknownPathConsumer.as_asgi()))
