"""One fan-out client process for bench_fanout: opens N websockets to one URL and times every
benchmark message each of them receives. bench_fanout starts one or more of these and drives them
with one JSON command per line on stdin; each answers with one JSON line on stdout.

Messages are recognised in any frame shape (the bare server's and the tutorial's `{"message": …}`,
the project's chat and job events) by the text `w|ID|TS` (warm-up) or `b|ID|TS` (measured), where
TS is the sender's `time.time()`: client and servers share one host and clock.

The sockets are a minimal RFC 6455 client on an asyncio Protocol, not the `websockets` library:
receiving only needs the frame header parsed (server frames are unmasked), and every frame that
arrives in one read is timed with one clock reading. Measured against the bare server, the
`websockets` client cost about 2.5x the server's CPU per delivery, so on this 2-core box it, not
the server, would have been the ceiling at 3,000 sockets. Pings are answered (Daphne pings every
20 s and drops a socket that doesn't answer); nothing else is sent but the close.

Commands: `{"cmd": "joined"}` -> how many sockets got any warm-up yet; `{"cmd": "collect",
"until": EPOCH}` -> waits until every socket has every message or the clock passes `until`, then
reports; `{"cmd": "quit"}`.

Run by bench_fanout: `python -m bench.fanout_client URL SOCKETS MESSAGES`.
"""
import asyncio
import base64
import json
import os
import re
import resource
import struct
import sys
import time
from array import array
from urllib.parse import urlsplit

from bench.common import raise_open_files_limit

MARK = re.compile(rb"([wb])\|(\d+)\|(\d+\.\d+)")
BATCH = 100  # sockets opening at once: Daphne (Twisted) listens with a backlog of 50
ATTEMPTS = 3
OPEN_TIMEOUT = 30.0
OPEN_BUDGET = float(os.environ.get("BENCH_OPEN_BUDGET", "120"))  # seconds; then go on with what is open


def masked_frame(opcode: int, payload: bytes) -> bytes:
    """A client frame (clients must mask), for pongs and the close."""
    mask = os.urandom(4)
    body = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + mask + body  # control frames are < 126 bytes


class Socket(asyncio.Protocol):
    def __init__(self, fleet: "Fleet", request: bytes) -> None:
        self.fleet, self.request = fleet, request
        self.transport: asyncio.Transport | None = None
        self.upgraded = asyncio.get_running_loop().create_future()
        self.head = b""
        self.buffer = bytearray()
        self.got = bytearray(fleet.messages)
        self.joined = False
        self.close_code: int | None = None

    def connection_made(self, transport) -> None:  # type: ignore[no-untyped-def]
        self.transport = transport
        transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        received = time.time()
        if not self.upgraded.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            status = self.head.split(b"\r\n", 1)[0]
            if b" 101 " not in status + b" ":
                self.upgraded.set_exception(ConnectionError(status.decode("latin-1")))
                self.transport.close()
                return
            self.upgraded.set_result(True)
            data, self.head = self.head[end + 4:], b""
        buffer = self.buffer
        buffer += data
        start, size = 0, len(buffer)
        while size - start >= 2:
            opcode, length = buffer[start] & 0x0F, buffer[start + 1] & 0x7F
            header = 2
            if length == 126:
                if size - start < 4:
                    break
                length, header = struct.unpack_from("!H", buffer, start + 2)[0], 4
            elif length == 127:
                if size - start < 10:
                    break
                length, header = struct.unpack_from("!Q", buffer, start + 2)[0], 10
            end = start + header + length
            if end > size:
                break
            if opcode == 1 or opcode == 0:  # text; the servers here send small frames whole (FIN set)
                self.frame(bytes(buffer[start + header:end]), received)
            elif opcode == 9:  # ping
                self.transport.write(masked_frame(0xA, bytes(buffer[start + header:end])))
            elif opcode == 8:  # close
                payload = buffer[start + header:end]
                self.close_code = struct.unpack_from("!H", payload)[0] if len(payload) >= 2 else 1005
                self.transport.close()
            start = end
        del buffer[:start]

    def frame(self, payload: bytes, received: float) -> None:
        found = MARK.search(payload)
        if found is None:
            return
        fleet = self.fleet
        if found.group(1) == b"w":
            if not self.joined:
                self.joined = True
                fleet.joined += 1
            return
        number = int(found.group(2))
        if number < fleet.messages and not self.got[number]:
            self.got[number] = 1
            fleet.delivered(received - float(found.group(3)), received)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.upgraded.done():
            self.upgraded.set_exception(exc or ConnectionError("closed during the handshake"))
        elif not self.fleet.quitting:
            code = str(self.close_code or 1006)
            self.fleet.close_codes[code] = self.fleet.close_codes.get(code, 0) + 1

    def close(self) -> None:
        if self.transport and not self.transport.is_closing():
            self.transport.write(masked_frame(0x8, struct.pack("!H", 1000)))
            self.transport.close()


class Fleet:
    def __init__(self, url: str, sockets: int, messages: int) -> None:
        parts = urlsplit(url)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self.size, self.messages = sockets, messages
        self.sockets: list[Socket] = []
        self.joined = 0
        self.latencies = array("d")
        self.deliveries = 0
        self.first_delivery = 0.0
        self.last_delivery = 0.0
        self.close_codes: dict[str, int] = {}
        self.open_failures: dict[str, int] = {}
        self.all_in = asyncio.Event()
        self.quitting = False

    def request(self) -> bytes:
        key = base64.b64encode(os.urandom(16)).decode()
        return (f"GET {self.target} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nUpgrade: websocket\r\n"
                f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n").encode()

    def delivered(self, latency: float, received: float) -> None:
        self.latencies.append(latency)
        self.deliveries += 1
        if not self.first_delivery:
            self.first_delivery = received
        self.last_delivery = received
        if self.deliveries == len(self.sockets) * self.messages:
            self.all_in.set()

    async def open_one(self) -> Socket | None:
        loop = asyncio.get_running_loop()
        for attempt in range(ATTEMPTS):
            try:
                _transport, sock = await asyncio.wait_for(
                    loop.create_connection(lambda: Socket(self, self.request()), self.host, self.port), OPEN_TIMEOUT)
                await asyncio.wait_for(sock.upgraded, OPEN_TIMEOUT)
                return sock
            except Exception as exc:  # refused, timed out or not upgraded: back off and retry
                name = type(exc).__name__
                self.open_failures[name] = self.open_failures.get(name, 0) + 1
                await asyncio.sleep(0.2 * (attempt + 1))
        return None

    async def open_all(self) -> None:
        deadline = time.monotonic() + OPEN_BUDGET
        for start in range(0, self.size, BATCH):
            if time.monotonic() > deadline:  # a server this slow to accept is reported as such
                self.open_failures["open budget spent"] = self.size - len(self.sockets)
                break
            opened = await asyncio.gather(*[self.open_one() for _ in range(min(BATCH, self.size - start))])
            self.sockets.extend(sock for sock in opened if sock is not None)

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
    say({"opened": len(fleet.sockets), "seconds": time.monotonic() - started, "open_failures": fleet.open_failures})
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        command = json.loads(line)
        if command["cmd"] == "joined":
            say({"joined": fleet.joined, "opened": len(fleet.sockets)})
        elif command["cmd"] == "collect":
            say(await fleet.collect(command["until"]))
        elif command["cmd"] == "quit":
            break
    fleet.quitting = True
    for sock in fleet.sockets:
        sock.close()
    await asyncio.sleep(0.5)


if __name__ == "__main__":
    raise_open_files_limit()
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
