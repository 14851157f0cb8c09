"""Past what a web process can open in time, a connect storm is refused early and cleanly, never
timed out (basic/realtime/handshake_gate.py). The capacity is lowered on purpose (a short wait
budget, few handshakes at once), so part of the storm is let in at once, the rest refused at once
with a JSON reason and a retry hint, and everyone is in after retrying as our clients do."""
import asyncio
import json
import time

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from basic.cli.stream import backoff_seconds, retry_hint
from tests.live import live_stack

pytestmark = pytest.mark.integration

SOCKETS = 300


async def open_with_retries(url: str, outcomes: list[str]) -> websockets.ClientConnection:
    """Open a socket as the CLI does: on a refusal, back off (full jitter, at least the hint) and
    retry. Each attempt's outcome is recorded: "open", "503", "1013", or anything else by name."""
    failures = 0
    while True:
        try:
            socket = await websockets.connect(url, open_timeout=15, compression=None, ping_interval=None)
        except InvalidStatus as refused:
            response = refused.response
            body = json.loads(response.body)
            assert response.status_code == 503, response.status_code
            assert body["code"] == "overloaded" and body["retry_after"] >= 1 and body["detail"]
            assert int(response.headers["Retry-After"]) == body["retry_after"]
            outcomes.append("503")
            hint = retry_hint(refused)
        except Exception as other:  # a timeout, or no answer at all: what the gate must prevent
            outcomes.append(type(other).__name__)
            raise
        else:
            try:  # a refused socket is sent its reason at once; an accepted seed-room one nothing
                first = await asyncio.wait_for(socket.recv(), 1.0)
            except TimeoutError:
                outcomes.append("open")
                return socket
            frame = json.loads(first)
            assert frame["code"] == "overloaded" and frame["retry_after"] >= 1, frame
            await socket.wait_closed()
            assert socket.close_code == 1013
            outcomes.append("1013")
            hint = retry_hint(error=frame)
        failures += 1
        await asyncio.sleep(backoff_seconds(failures, hint))


async def storm(url: str) -> tuple[list[list[str]], int, float]:
    outcomes: list[list[str]] = [[] for _ in range(SOCKETS)]
    started = time.monotonic()
    sockets = await asyncio.gather(*[open_with_retries(url, outcomes[n]) for n in range(SOCKETS)])
    elapsed = time.monotonic() - started
    try:
        await sockets[0].send(json.dumps({"message": "all in"}))

        async def heard(socket: websockets.ClientConnection) -> bool:
            return json.loads(await asyncio.wait_for(socket.recv(), 30)).get("message") == "all in"

        return outcomes, sum(await asyncio.gather(*[heard(s) for s in sockets])), elapsed
    finally:
        await asyncio.gather(*[s.close() for s in sockets], return_exceptions=True)


def test_a_storm_past_capacity_is_partly_let_in_the_rest_refused_at_once_and_all_in_after_retrying(stack_root):
    with live_stack(stack_root, "overload", worker=False, CHAT_ALLOW_ANONYMOUS="1",
                    WS_HANDSHAKES_AT_ONCE="2", WS_HANDSHAKE_MAX_WAIT_SECONDS="0.05") as live:
        outcomes, heard, elapsed = asyncio.run(storm(f"{live.ws_url}/chat/"))
    firsts = [attempts[0] for attempts in outcomes]
    every = [outcome for attempts in outcomes for outcome in attempts]
    assert set(every) <= {"open", "503", "1013"}, sorted(set(every))  # nothing timed out or hung up
    assert firsts.count("open") > 0  # part let in at once
    assert firsts.count("503") + firsts.count("1013") > 0  # the rest refused at once
    assert all(attempts[-1] == "open" for attempts in outcomes)  # and all in after their retries
    assert heard == SOCKETS
    assert elapsed < 120
