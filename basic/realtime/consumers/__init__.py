"""WebSocket consumers, one module per route: jobs (`/ws/jobs/{id}/`), batches (`/ws/batches/{id}/`),
both on event_feed's shared feed socket, feed (`/ws/events/`),
chat (`/ws/chat/{room}/`, `/chat/`), unknown (anything else), on the bases in base.

Everything routing.py, the tests and the docs name as `basic.realtime.consumers.X` stays
importable from here, however the modules are split.
"""
from basic.realtime.consumers.authenticated import AuthenticatedConsumer
from basic.realtime.consumers.base import (
    MAX_CONTROL_FRAME_BYTES,
    NO_THREAD_HOP,
    UNAVAILABLE,
    ClientGone,
    ValidatingJsonConsumer,
    client_address,
)
from basic.realtime.consumers.batches import BatchEventsConsumer
from basic.realtime.consumers.chat import ChatConsumer, SeedChatConsumer
from basic.realtime.consumers.feed import UserEventsConsumer
from basic.realtime.consumers.jobs import RESYNC_READS, JobEventsConsumer
from basic.realtime.consumers.unknown import UnknownPathConsumer
from basic.realtime.frames import ENCODED, encoded_once

__all__ = [
    "ENCODED", "MAX_CONTROL_FRAME_BYTES", "NO_THREAD_HOP", "RESYNC_READS", "UNAVAILABLE",
    "AuthenticatedConsumer", "BatchEventsConsumer", "ChatConsumer", "ClientGone", "JobEventsConsumer",
    "SeedChatConsumer",
    "UnknownPathConsumer", "UserEventsConsumer", "ValidatingJsonConsumer", "client_address", "encoded_once",
]
