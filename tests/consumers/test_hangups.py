"""A client that hangs up while the server answers costs nothing but the answer: sends after it is
gone are dropped, as Daphne would otherwise raise `Disconnected` into the consumer."""
import pytest
from autobahn.exception import Disconnected
from channels.testing import WebsocketCommunicator

from .conftest import ORIGIN

pytestmark = pytest.mark.django_db(transaction=True)


class HungUp:
    """Wraps the app's `send` like Daphne once the client's close frame has arrived."""

    def __init__(self, application):
        self.application = application
        self.client_closed = False
        self.dropped = []

    async def __call__(self, scope, receive, send):
        async def daphne_send(message):
            if self.client_closed and message["type"] == "websocket.send":
                self.dropped.append(message)
                raise Disconnected("Attempt to send on a closed protocol")
            await send(message)

        return await self.application(scope, receive, daphne_send)


@pytest.mark.parametrize("path, authenticated", [("/chat/", False), ("/ws/chat/lobby/", True),
                                                 ("/ws/events/", True), ("/ws/events/", False)])
async def test_an_answer_to_a_client_that_left_is_dropped_quietly(alice, path, authenticated):
    from app.asgi import application

    app = HungUp(application)
    if authenticated:
        path += f"?token={alice.token}"
    communicator = WebsocketCommunicator(app, path, headers=[ORIGIN])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    app.client_closed = True
    for frame in ("not json", "[1]", '{"type": "ping"}'):
        await communicator.send_to(text_data=frame)
    await communicator.disconnect()  # raises if the consumer died of Disconnected
    assert len(app.dropped) == 1  # the first answer; after it, nothing more is even attempted
