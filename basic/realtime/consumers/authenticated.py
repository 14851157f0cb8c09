"""The base of the signed-in routes (`/ws/events/`, `/ws/jobs/{id}/`, `/ws/batches/{id}/`)."""
import asyncio
from typing import Any

from basic.realtime import close_codes
from basic.realtime.auth import user_for_token
from basic.realtime.consumers.base import ValidatingJsonConsumer


class AuthenticatedConsumer(ValidatingJsonConsumer):
    """A socket for signed-in users: the session cookie, `?token=`, or a first frame
    `{"type": "auth", "token": …}` within AUTH_TIMEOUT seconds. Subclasses implement `start()`
    (join groups, accept, send the first frames) and `handle_frame()`."""

    AUTH_TIMEOUT = 10.0
    awaiting_auth = False
    _auth_timer: asyncio.Task | None = None

    async def connect(self) -> None:
        if self.scope.get("token_rejected"):
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized", "That token is not valid.")
        elif self.user and self.user.is_authenticated:
            await self.start()
        elif await self.claim_socket_slot():  # until it authenticates, it counts as anonymous
            self.awaiting_auth = True
            await self.accept()
            self._auth_timer = self.start_task(self._close_if_still_anonymous())

    async def _close_if_still_anonymous(self) -> None:
        await asyncio.sleep(self.AUTH_TIMEOUT)
        if self.awaiting_auth:
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized", "No credentials in time.")

    async def bad_frame(self, code: str, detail: str) -> None:
        if self.awaiting_auth:
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized", f"{detail} Authenticate first.")
        else:
            await super().bad_frame(code, detail)

    async def receive_json(self, content: dict[str, Any], **kwargs: Any) -> None:
        if not self.awaiting_auth:
            await self.handle_frame(content)
            return
        token = content.get("token") if content.get("type") == "auth" else None
        user = await user_for_token(token) if isinstance(token, str) else None
        if user is None:
            await self.reject(close_codes.CLOSE_UNAUTHORIZED, "unauthorized",
                              'Sign in, or send {"type": "auth", "token": "<API token>"} first.')
            return
        self.awaiting_auth = False
        if self._auth_timer:
            self._auth_timer.cancel()
        self.scope["user"] = user
        await self.release_socket_slot()  # start() claims one of the user's slots instead
        await self.start()

    async def start(self) -> None:
        """Check the request, `claim_socket_slot()`, join groups, accept and send the first frames."""
        raise NotImplementedError

    async def handle_frame(self, content: dict[str, Any]) -> None:
        raise NotImplementedError

