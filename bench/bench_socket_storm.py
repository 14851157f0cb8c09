"""Many sockets connecting at once to a real Daphne: the Channels tutorial's stock layer
(RedisChannelLayer) vs the pub/sub layer we ship, same process run, same Redis.

docs/design.md trap 5: on redis-py 8 the stock layer holds a pooled connection per in-flight receive
and hits the pool cap near 100 sockets. Run: `python -m bench.bench_socket_storm [SOCKETS]`.
"""
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import websockets

from basic.ops import stack
from bench.common import ensure_redis, raise_open_files_limit, stop_redis, without_json_flag, write_result


async def storm(url: str, sockets: int) -> tuple[int, int, float]:
    started = time.perf_counter()
    results = await asyncio.gather(
        *[websockets.connect(url, open_timeout=30) for _ in range(sockets)], return_exceptions=True)
    opened = [r for r in results if not isinstance(r, BaseException)]
    heard = 0
    if opened:
        await opened[0].send(json.dumps({"message": "ping"}))

        async def hear(ws) -> bool:
            try:
                return json.loads(await asyncio.wait_for(ws.recv(), 10)).get("message") == "ping"
            except Exception:
                return False

        heard = sum(await asyncio.gather(*[hear(ws) for ws in opened]))
    elapsed = time.perf_counter() - started
    await asyncio.gather(*[ws.close() for ws in opened], return_exceptions=True)
    return len(opened), heard, elapsed


def run_layer(layer: str, sockets: int, workdir: Path) -> tuple[int, int, float]:
    env = {"CHANNEL_LAYER": layer, "CHANNEL_PREFIX": f"bench-{layer}", "LOG_LEVEL": "ERROR",
           "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "CHAT_ALLOW_ANONYMOUS": "1",
           "WS_MAX_ANONYMOUS_PER_IP": "100000", "LISTEN_LOOPBACK_ONLY": "1"}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], env={**os.environ, **env}, check=True,
                   cwd=stack.BASE_DIR)
    port = stack.free_port()
    daphne = stack.start_daphne(port, env, log=workdir / f"daphne-{layer}.log")
    try:
        return asyncio.run(storm(f"ws://127.0.0.1:{port}/ws/chat/bench/", sockets))
    finally:
        stack.stop(daphne)


def main() -> dict:
    args = without_json_flag(sys.argv)
    sockets = int(args[1]) if len(args) > 1 else 500
    raise_open_files_limit()
    ensure_redis()
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    try:
        print(f"\n{sockets} sockets connecting at once to /ws/chat/bench/, then one broadcast")
        rows = {layer: run_layer(layer, sockets, workdir) for layer in ("core", "pubsub")}
        for layer, (opened, heard, elapsed) in rows.items():
            name = {"core": "stock RedisChannelLayer (tutorial)", "pubsub": "RedisPubSubChannelLayer (ours)"}[layer]
            print(f"  {name:<38} connected {opened:>5}/{sockets}  got broadcast {heard:>5}  in {elapsed:5.2f}s")
        core_ok, pubsub_ok = rows["core"][1], rows["pubsub"][1]
        print(f"  delivered ratio ours/stock: x{pubsub_ok / max(core_ok, 1):.2f}")
    finally:
        stop_redis()
    result = {"sockets": sockets, **{layer: {"connected": opened, "heard": heard, "seconds": elapsed}
                                     for layer, (opened, heard, elapsed) in rows.items()}}
    write_result(result)
    return result


if __name__ == "__main__":
    main()
