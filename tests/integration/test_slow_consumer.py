"""A real Daphne (basic/realtime/server.py): a client that stops reading is closed with 4008 once more
than WS_MAX_UNSENT_BYTES wait for it, instead of the server buffering without limit; everyone else
carries on."""
import asyncio
import json
import socket
import time

import pytest
import websockets

from tests.live import live_stack

pytestmark = pytest.mark.integration

LIMIT = 256 * 1024
MESSAGE = "x" * 60_000


async def scenario(ws_url: str, log) -> tuple[int | None, int, int]:
    host, port = ws_url.removeprefix("ws://").split(":")
    stalled_sock = socket.socket()
    stalled_sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # little room in the kernel
    stalled_sock.connect((host, int(port)))
    # max_queue=1: the client stops reading from the socket until recv() is called.
    async with websockets.connect(f"{ws_url}/chat/", sock=stalled_sock, max_queue=1, max_size=None) as stalled, \
            websockets.connect(f"{ws_url}/chat/", max_size=None) as speaker:
        sent = 0
        deadline = time.monotonic() + 60
        while "stopped reading" not in log() and time.monotonic() < deadline:
            await speaker.send(json.dumps({"message": MESSAGE}))
            assert json.loads(await asyncio.wait_for(speaker.recv(), 10))["message"] == MESSAGE
            sent += 1
        received, code = 0, None
        try:  # catch up now: the backlog, then the close frame
            while True:
                await asyncio.wait_for(stalled.recv(), 10)
                received += 1
        except websockets.ConnectionClosed as closed:
            code = closed.rcvd.code if closed.rcvd else None
        await speaker.send(json.dumps({"message": "still here"}))  # the speaker is unaffected
        assert json.loads(await asyncio.wait_for(speaker.recv(), 10))["message"] == "still here"
        return code, sent, received


def test_a_client_that_stops_reading_is_closed_4008(stack_root):
    with live_stack(stack_root, "slow-consumer", worker=False, WS_MAX_UNSENT_BYTES=str(LIMIT),
                    CHAT_MAX_MESSAGE_BYTES="65536", CHAT_RATE_PER_SECOND="100000", CHAT_RATE_BURST="100000") as live:
        daphne_log = live.worker_log.parent / "daphne.log"
        code, sent, received = asyncio.run(scenario(live.ws_url, lambda: daphne_log.read_text(errors="replace")))
        log = daphne_log.read_text(errors="replace")
    assert "stopped reading" in log, f"never closed after {sent} messages"
    assert code == 4008, (code, sent, received)
    assert received < sent  # what was not yet buffered when the bound was hit was dropped
    assert "Exception inside application" not in log
