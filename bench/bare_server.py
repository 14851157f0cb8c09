"""The ceiling for bench_fanout: a bare `websockets` broadcast server, no framework, no Redis.

Every text frame any socket sends goes to every open socket (`websockets.broadcast`), whatever
the path. Run: `python -m bench.bare_server PORT`.
"""
import asyncio
import sys

from websockets.asyncio.server import broadcast, serve

from bench.common import raise_open_files_limit

CONNECTIONS: set = set()


async def handler(websocket) -> None:  # type: ignore[no-untyped-def]
    CONNECTIONS.add(websocket)
    try:
        async for message in websocket:
            broadcast(CONNECTIONS, message)
    except Exception:  # a client that hangs up mid-frame
        pass
    finally:
        CONNECTIONS.discard(websocket)


async def main(port: int) -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, ping_interval=None, backlog=1024,
                     max_size=2**16) as server:
        await server.serve_forever()


if __name__ == "__main__":
    raise_open_files_limit()
    asyncio.run(main(int(sys.argv[1])))
