import pytest
from channels.testing import WebsocketCommunicator

ORIGIN = (b"origin", b"http://localhost:8000")  # the default Origin list's: settings.PORT, 8000


@pytest.fixture(autouse=True)
def fresh_limits():
    """Socket caps and chat buckets live in the session's shared Redis, keyed by user id and
    address, and ids repeat from test to test: start each test with none."""
    from basic.core.keys import limit_keys_pattern
    from basic.core.redis_clients import sync_redis

    client = sync_redis()
    stale = list(client.scan_iter(limit_keys_pattern(), count=1000))
    if stale:
        client.delete(*stale)


@pytest.fixture
def connect():
    """Open a socket to the real ASGI app; every socket is closed at the end of the test."""
    opened = []

    from app.asgi import application  # imported late: settings need the test Redis first

    async def _connect(path: str, headers=None, token: str | None = None, client: str | None = None):
        if token is not None:
            path += ("&" if "?" in path else "?") + f"token={token}"
        communicator = WebsocketCommunicator(application, path, headers=headers or [ORIGIN])
        if client is not None:  # the peer address, as Daphne would put it in the scope
            communicator.scope["client"] = [client, 50000]
        connected, _ = await communicator.connect(timeout=5)
        opened.append(communicator)
        return communicator, connected

    yield _connect
    # Closing happens in each test's loop; see close_all.
    opened.clear()


async def close_all(*communicators):
    for communicator in communicators:
        await communicator.disconnect()


async def receive_until_closed(communicator, timeout: float = 2):
    frames = []
    while True:
        message = await communicator.receive_output(timeout)
        if message["type"] == "websocket.close":
            return frames, message.get("code")
        frames.append(message)
