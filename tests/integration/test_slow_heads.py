"""Clients that send their request heads a byte at a time (slowloris) hold up nobody: a web process
parses a bounded number of new requests at once (basic/realtime/read_meter.py), and a request asks
for a place only once its head is whole. Were the places given on the first byte, 300 such clients
would hold them 2 s at a time, a few at once, and a socket opened behind them would wait over a
minute."""
import asyncio
import time
from urllib.parse import urlsplit

import pytest
import websockets

from tests.live import live_stack

pytestmark = pytest.mark.integration

SLOW_CLIENTS = 300
SOCKETS = 20


async def slow_client(host: str, port: int, stop: asyncio.Event) -> None:
    """Opens a connection and sends the start of an upgrade request, then a byte a second."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(b"GET /chat/ HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n")
        while not stop.is_set():
            await writer.drain()
            try:
                await asyncio.wait_for(stop.wait(), 1.0)
            except TimeoutError:
                writer.write(b"X")
    finally:
        writer.close()


async def open_behind_slow_clients(ws_url: str) -> tuple[float, int]:
    parts = urlsplit(ws_url)
    stop = asyncio.Event()
    slow = [asyncio.create_task(slow_client(parts.hostname, parts.port, stop)) for _ in range(SLOW_CLIENTS)]
    await asyncio.sleep(1.5)  # every slow client connected and sent its first bytes
    started = time.monotonic()
    try:
        sockets = await asyncio.gather(*[websockets.connect(f"{ws_url}/chat/", open_timeout=20, ping_interval=None)
                                         for _ in range(SOCKETS)])
        elapsed = time.monotonic() - started
        await asyncio.gather(*[s.close() for s in sockets])
        return elapsed, len(sockets)
    finally:
        stop.set()
        await asyncio.gather(*slow, return_exceptions=True)


def test_sockets_open_at_once_behind_clients_sending_their_heads_slowly(stack_root):
    # Few places (2 x 4 requests parsed at once), so that slow clients holding them would show.
    with live_stack(stack_root, "slow-heads", worker=False, CHAT_ALLOW_ANONYMOUS="1",
                    WS_HANDSHAKES_AT_ONCE="4") as live:
        elapsed, opened = asyncio.run(open_behind_slow_clients(live.ws_url))
    assert opened == SOCKETS
    assert elapsed < 5, elapsed
