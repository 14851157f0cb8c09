import pytest
from channels.testing import WebsocketCommunicator

from tests.consumers.loopback_outlet import WithOutlets

ORIGIN = (b"origin", b"http://localhost:8000")  # the default Origin list's: settings.PORT, 8000


@pytest.fixture(autouse=True)
def fresh_limits():
    """Socket caps and chat buckets live in the session's shared Redis, keyed by user id and
    address, and ids repeat from test to test: start each test with none. Rooms' histories too:
    each test runs twice (`connect`), and a room's history from the run before would be replayed."""
    from basic.core.keys import chat_history_key, limit_keys_pattern
    from basic.core.redis_clients import sync_redis

    client = sync_redis()
    stale = [*client.scan_iter(limit_keys_pattern(), count=1000), *client.scan_iter(chat_history_key("*"), count=1000)]
    if stale:
        client.delete(*stale)


@pytest.fixture(params=["handlers", "outlets"])
def connect(request):
    """Open a socket to the real ASGI app; every socket is closed at the end of the test. Each
    test runs twice: group messages through the consumers' handlers, as under a test server, and
    through the sockets' outlets, as under Daphne (loopback_outlet.py)."""
    opened = []

    from app.asgi import application  # imported late: settings need the test Redis first

    app = WithOutlets(application) if request.param == "outlets" else application

    async def _connect(path: str, headers=None, token: str | None = None, client: str | None = None):
        if token is not None:
            path += ("&" if "?" in path else "?") + f"token={token}"
        communicator = WebsocketCommunicator(app, path, headers=headers or [ORIGIN])
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
