"""A web process at its open-file limit refuses new sockets cleanly (a 503 that says why) and keeps
serving the open ones (basic/realtime/open_files.py, FD_RESERVE); without that, accept() fails with
EMFILE and Twisted leaves new clients hanging in the listen backlog."""
import asyncio
import json
import os
import resource

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from basic.realtime.open_files import FD_RESERVE
from tests.live import live_stack

pytestmark = pytest.mark.integration

ROOM_FOR = 60  # sockets the lowered limit leaves room for, roughly
TRIES = 150


async def fill_up(url: str) -> tuple[list, list[dict]]:
    opened, refusals = [], []
    for _ in range(TRIES):  # one at a time: each sees the process as the last one left it
        try:
            opened.append(await websockets.connect(url, open_timeout=10, ping_interval=None))
        except InvalidStatus as refused:
            assert refused.response.status_code == 503
            assert refused.response.headers["Retry-After"]
            refusals.append(json.loads(refused.response.body))
    return opened, refusals


async def check(url: str) -> None:
    opened, refusals = await fill_up(url)
    try:
        assert len(opened) >= ROOM_FOR // 2 and refusals, (len(opened), len(refusals))
        assert {r["code"] for r in refusals} == {"too_many_open_files"} and refusals[0]["detail"]
        # The open sockets still work: everyone hears a message.
        await opened[0].send(json.dumps({"message": "still here"}))
        heard = await asyncio.gather(*[asyncio.wait_for(s.recv(), 10) for s in opened])
        assert all(json.loads(text)["message"] == "still here" for text in heard)
        # Closing some makes room again.
        for socket in opened[:20]:
            await socket.close()
        del opened[:20]
        await asyncio.sleep(0.5)
        opened.append(await websockets.connect(url, open_timeout=10, ping_interval=None))
    finally:
        await asyncio.gather(*[s.close() for s in opened], return_exceptions=True)


def test_a_process_at_its_file_limit_refuses_new_sockets_and_serves_the_open_ones(stack_root):
    with live_stack(stack_root, "nofile", worker=False, CHAT_ALLOW_ANONYMOUS="1") as live:
        daphne = live.processes["daphne"].pid
        in_use = len(os.listdir(f"/proc/{daphne}/fd"))
        limit = in_use + FD_RESERVE + ROOM_FOR
        resource.prlimit(daphne, resource.RLIMIT_NOFILE, (limit, limit))
        asyncio.run(check(f"{live.ws_url}/chat/"))
