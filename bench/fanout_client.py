"""One fan-out client process for bench_fanout: opens N websockets to one URL and times every
benchmark message each of them receives. bench_fanout starts one or more of these and drives them
with one JSON command per line on stdin; each answers with one JSON line on stdout.

Messages are recognised in any frame shape (the bare server's and the tutorial's `{"message": …}`,
the project's chat and job events) by the text `w|ID|TS` (warm-up) or `b|ID|TS` (measured), where
TS is the sender's `time.time()`: client and servers share one host and clock.

Commands: `{"cmd": "joined"}` -> how many sockets got any warm-up yet; `{"cmd": "collect",
"until": EPOCH}` -> waits until every socket has every message or the clock passes `until`, then
reports; `{"cmd": "quit"}`.

Run by bench_fanout: `python -m bench.fanout_client URL SOCKETS MESSAGES`.
"""
import asyncio
import base64
import json
import re
import resource
import sys
import time
from array import array

from websockets.asyncio.client import connect

from bench.common import raise_open_files_limit

MARK = re.compile(r"([wb])\|(\d+)\|(\d+\.\d+)")
BATCH = 100  # sockets opening at once: Daphne (Twisted) listens with a backlog of 50
ATTEMPTS = 5


class Fleet:
    def __init__(self, url: str, sockets: int, messages: int) -> None:
        self.url, self.size, self.messages = url, sockets, messages
        self.sockets: list = []
        self.joined = 0
        self.latencies = array("d")
        self.deliveries = 0
        self.first_delivery = 0.0
        self.last_delivery = 0.0
        self.close_codes: dict[str, int] = {}
        self.open_failures: dict[str, int] = {}
        self.all_in = asyncio.Event()

    async def open_one(self) -> object | None:
        for attempt in range(ATTEMPTS):
            try:
                return await connect(self.url, compression=None, open_timeout=60, ping_interval=None,
                                     close_timeout=1, max_size=2**20)
            except Exception as exc:  # refused or timed out: back off and retry
                name = type(exc).__name__
                self.open_failures[name] = self.open_failures.get(name, 0) + 1
                await asyncio.sleep(0.2 * (attempt + 1))
        return None

    async def open_all(self) -> None:
        for start in range(0, self.size, BATCH):
            opened = await asyncio.gather(*[self.open_one() for _ in range(min(BATCH, self.size - start))])
            for ws in opened:
                if ws is not None:
                    index = len(self.sockets)
                    self.sockets.append(ws)
                    asyncio.create_task(self.read(ws, index))

    async def read(self, ws, index: int) -> None:  # type: ignore[no-untyped-def]
        got = bytearray(self.messages)
        joined = False
        search, now = MARK.search, time.time
        try:
            async for frame in ws:
                received = now()
                found = search(frame) if isinstance(frame, str) else None
                if found is None:
                    continue
                kind, number = found.group(1), int(found.group(2))
                if kind == "w":
                    if not joined:
                        joined = True
                        self.joined += 1
                elif number < self.messages and not got[number]:
                    got[number] = 1
                    self.latencies.append(received - float(found.group(3)))
                    self.deliveries += 1
                    if not self.first_delivery:
                        self.first_delivery = received
                    self.last_delivery = received
                    if self.deliveries == len(self.sockets) * self.messages:
                        self.all_in.set()
        except Exception:
            pass
        code = str(ws.close_code)
        self.close_codes[code] = self.close_codes.get(code, 0) + 1

    async def collect(self, until: float) -> dict:
        if self.deliveries < len(self.sockets) * self.messages:
            try:
                await asyncio.wait_for(self.all_in.wait(), max(0.0, until - time.time()))
            except TimeoutError:
                pass
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {
            "opened": len(self.sockets), "joined": self.joined, "deliveries": self.deliveries,
            "first_delivery": self.first_delivery, "last_delivery": self.last_delivery,
            "latencies": base64.b64encode(self.latencies.tobytes()).decode(),
            "closed_early": dict(self.close_codes), "open_failures": dict(self.open_failures),
            "cpu_seconds": usage.ru_utime + usage.ru_stime,
        }


def say(payload: dict) -> None:
    sys.stdout.write(json.dumps(payload) + "\n")
    sys.stdout.flush()


async def main(url: str, sockets: int, messages: int) -> None:
    fleet = Fleet(url, sockets, messages)
    started = time.monotonic()
    await fleet.open_all()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    say({"opened": len(fleet.sockets), "seconds": time.monotonic() - started,
         "open_failures": fleet.open_failures, "cpu_seconds": usage.ru_utime + usage.ru_stime})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "joined":
            usage = resource.getrusage(resource.RUSAGE_SELF)
            say({"joined": fleet.joined, "opened": len(fleet.sockets), "cpu_seconds": usage.ru_utime + usage.ru_stime})
        elif command["cmd"] == "collect":
            say(await fleet.collect(command["until"]))
        elif command["cmd"] == "quit":
            break
    await asyncio.gather(*[ws.close() for ws in fleet.sockets], return_exceptions=True)


if __name__ == "__main__":
    raise_open_files_limit()
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
