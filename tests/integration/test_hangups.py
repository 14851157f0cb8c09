"""A real Daphne: clients that send a bad frame and hang up at once, 200 times. Each costs only the
unsent answer: no "Exception inside application" (autobahn's `Disconnected: Attempt to send on a
closed protocol`) in Daphne's log. Before the fix about one round in twenty logged one."""
import asyncio
import base64
import os
import struct
import time

import pytest

from tests.live import live_stack

pytestmark = pytest.mark.integration

ROUNDS = 200
# The race: Daphne has read the client's close frame (the protocol is closed) but not yet seen the
# TCP connection go (so it still passes sends on). A close a little after the frame hits it most.
DELAYS = [0.0005, 0.001, 0.002, 0.005]
PATHS = ["/chat/", "/ws/events/"]  # an error frame that keeps the socket open; one that closes it


def client_frame(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


async def bad_frame_then_hang_up(port: int, path: str, delay: float) -> None:
    """Raw frames, so nothing in a client library waits for the server's answer in between."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode())
        assert (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)).startswith(b"HTTP/1.1 101")
        writer.write(client_frame(0x1, b"not json"))
        await writer.drain()
        await asyncio.sleep(delay)
        writer.write(client_frame(0x8, struct.pack("!H", 1000)))
        await writer.drain()
        await asyncio.wait_for(reader.read(), 10)  # until the server drops the connection
    except ConnectionError:
        pass  # the server had closed first (4401 on /ws/events/): fine
    finally:
        writer.close()


async def rounds(port: int) -> None:
    limit = asyncio.Semaphore(20)

    async def one(i: int) -> None:
        async with limit:
            await bad_frame_then_hang_up(port, PATHS[i % len(PATHS)], DELAYS[i // len(PATHS) % len(DELAYS)])

    await asyncio.gather(*(one(i) for i in range(ROUNDS)))


def test_clients_hanging_up_mid_answer_cost_nothing(stack_root):
    with live_stack(stack_root, "hangups", worker=False) as live:
        port = int(live.base_url.rsplit(":", 1)[1])
        asyncio.run(rounds(port))
        time.sleep(2.5)  # Daphne reports a failed application when it reaps it, once a second
        log = (live.worker_log.parent / "daphne.log").read_text(errors="replace")
    assert "Exception inside application" not in log
    assert "Disconnected" not in log
    assert log.count("WSDISCONNECT") >= ROUNDS  # every round really connected (Daphne logs each)
