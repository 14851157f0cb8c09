"""autobahn's per-socket options live on the protocol class, set once from the factory (memory per
idle socket, basic/realtime/server.py): each must still behave as the factory's own. A function
option put on a class is bound to each socket; perMessageCompressionAccept was, and every client
offering compression (browsers, the websockets library by default) was left without a handshake.
Daphne declines compression (its accept function says no); the socket must open all the same."""
import asyncio

import pytest
import websockets

from tests.live import live_stack

pytestmark = pytest.mark.integration


def test_a_client_offering_compression_is_answered_and_served_like_a_plain_one(stack_root):
    with live_stack(stack_root, "socket-options", worker=False) as live:
        url = f"{live.ws_url}/ws/events/?token={live.token}"

        async def ping(**options) -> tuple[list[str], str]:
            async with websockets.connect(url, open_timeout=10, **options) as socket:
                await socket.send('{"type": "ping"}')
                answer = await asyncio.wait_for(socket.recv(), 5)
                return [extension.name for extension in socket.protocol.extensions], answer

        assert asyncio.run(ping()) == ([], '{"type": "pong"}')  # offered by default, declined
        assert asyncio.run(ping(compression=None)) == ([], '{"type": "pong"}')
