"""`/ws/events/`: the signed-in user's live feed, every event of their jobs and batches and nobody else's."""
from typing import Any

from basic.jobs import events
from basic.realtime.consumers.authenticated import AuthenticatedConsumer
from basic.realtime.frames import event_outlet_text, event_text


class UserEventsConsumer(AuthenticatedConsumer):
    """`/ws/events/`: every event of the signed-in user's jobs and batches, and nobody else's.

    Events go out as published (their schemas: basic/jobs/event_schemas.py), encoded once per
    process; no history, no ordering: a client that needs those watches `/ws/jobs/{id}/` (or
    `/ws/batches/{id}/`).
    """

    group: str | None = None

    async def start(self) -> None:
        if not await self.claim_socket_slot():
            return
        self.group = events.user_group(self.user.id)
        await self.join_group(self.group)  # left by the base, however the socket ends
        await self.accept()

    outlet_text = staticmethod(event_outlet_text)  # every event goes out as is (base.py, outlets)

    async def job_event(self, message: dict[str, Any]) -> None:
        await self.send_text(event_text(message))

    async def handle_frame(self, content: dict[str, Any]) -> None:
        if content.get("type") == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", "Known frame types: ping.")
