"""Hundreds of sockets connecting at once (docs/design.md trap 5: the stock layer on redis-py 8 gave
HTTP 500 and close 1011 past ~100). Every one must connect and get the broadcast."""
import asyncio
import json

import pytest
import websockets

from tests.live import live_stack

pytestmark = pytest.mark.integration

SOCKETS = 400


async def storm(ws_url: str) -> tuple[int, list]:
    async def open_one(i: int):
        return await websockets.connect(f"{ws_url}/ws/chat/storm/", open_timeout=30)

    results = await asyncio.gather(*[open_one(i) for i in range(SOCKETS)], return_exceptions=True)
    sockets = [r for r in results if not isinstance(r, BaseException)]
    errors = [r for r in results if isinstance(r, BaseException)]
    try:
        if errors:
            return 0, errors
        await sockets[0].send(json.dumps({"message": "everyone?"}))

        async def heard(socket) -> bool:
            frame = json.loads(await asyncio.wait_for(socket.recv(), 30))
            return frame.get("message") == "everyone?"

        heard_by = await asyncio.gather(*[heard(s) for s in sockets], return_exceptions=True)
        return sum(h is True for h in heard_by), [h for h in heard_by if h is not True]
    finally:
        await asyncio.gather(*[s.close() for s in sockets], return_exceptions=True)


def test_hundreds_of_sockets_connecting_at_once_all_get_the_broadcast(stack_root):
    with live_stack(stack_root, "storm", worker=False, CHAT_ALLOW_ANONYMOUS="1") as live:
        heard, problems = asyncio.run(storm(live.ws_url))
        assert problems == []
        assert heard == SOCKETS
        assert "Too many connections" not in (live.worker_log.parent / "daphne.log").read_text()
