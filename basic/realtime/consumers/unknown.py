"""Any other socket path: refused with 4404 and the paths there are, not a failed handshake."""
from basic.realtime import close_codes
from basic.realtime.consumers.base import ValidatingJsonConsumer


class UnknownPathConsumer(ValidatingJsonConsumer):
    async def connect(self) -> None:
        await self.reject(close_codes.CLOSE_NOT_FOUND, "not_found",
                          "No socket here; see /ws/jobs/{id}/, /ws/events/, /ws/chat/{room}/, /chat/.")
