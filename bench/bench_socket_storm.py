"""Connect storms: N sockets opening at the same moment on one web process, against a bare
`websockets` server opened by the same client in the same run.

Each size runs the bare server once and this project once per route, each on a fresh server
process (Daphne as `make run` starts it, `basic/ops/stack.py`) and the same private Redis:

- `seed`: the seed room `/chat/`, anonymous (the Channels tutorial's route);
- `chat`: a signed-in chat room `/ws/chat/storm/?token=…`;
- `events`: the user's feed `/ws/events/?token=…`;
- `job`: one job `/ws/jobs/{id}/?token=…` watched by every socket (it waits queued: no worker).

Clients are one asyncio process (the `websockets` client). A socket the server refuses because it
is taking in too many at once (HTTP 503 before the upgrade, or close 1013 after an error frame;
basic/realtime/handshake_gate.py) retries as the CLI does: full jitter, never sooner than the
server's hint (basic/cli/stream.py). Anything else (a timeout, no HTTP answer) is a failure.
The figure is the connect rate: sockets opened per second until the last one is open, and its
ratio to the bare server's. The client's own CPU time is reported, so a client-bound run shows.

Signed-in routes need a per-user cap above N: the bench sets WS_MAX_PER_USER. Run:
`python -m bench.bench_socket_storm [--sizes 2000,5000,10000] [--routes seed,chat,events,job]`.
"""
import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import websockets
from websockets.exceptions import InvalidStatus

from basic.cli.stream import backoff_seconds, retry_hint
from basic.ops import stack
from bench.common import (
    ensure_redis,
    manage,
    migrated_database,
    py_spy,
    raise_open_files_limit,
    stop_py_spy,
    stop_redis,
    write_result,
)

ROUTES = ("seed", "chat", "events", "job")
GIVE_UP_SECONDS = 180.0


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def process_cpu_seconds(pid: int) -> float:
    """User and system CPU time a (server) process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def with_server_cpu(pid: int, run: Callable[[], dict]) -> dict:
    before = process_cpu_seconds(pid)
    result = run()
    result["server_cpu_s"] = process_cpu_seconds(pid) - before
    result["server_cpu_ms_per_socket"] = 1000 * result["server_cpu_s"] / max(result["opened"], 1)
    return result


async def open_one(url: str, tally: dict[str, int], deadline: float, quiet_on_open: bool) -> object | None:
    """Open one socket, retrying refusals; None if it could not be opened before the deadline."""
    failures = 0
    while time.monotonic() < deadline:
        hint = None
        try:
            socket = await websockets.connect(url, open_timeout=30, compression=None, ping_interval=None,
                                              max_queue=None)
        except InvalidStatus as refused:
            if refused.response.status_code != 503:
                name = f"http {refused.response.status_code}"
                tally[name] = tally.get(name, 0) + 1
                return None
            tally["503"] += 1
            hint = retry_hint(refused)
        except Exception as exc:
            name = type(exc).__name__
            tally[name] = tally.get(name, 0) + 1
            return None
        else:
            # A refused socket is sent its reason at once; routes quiet on open send nothing else.
            try:
                frame = json.loads(await asyncio.wait_for(socket.recv(), 1.0 if quiet_on_open else 30))
            except Exception:
                frame = {}
            if frame.get("code") != "overloaded":
                return socket
            tally["1013"] += 1
            hint = retry_hint(error=frame)
            await socket.close()
        failures += 1
        await asyncio.sleep(backoff_seconds(failures, hint))
    tally["gave up"] = tally.get("gave up", 0) + 1
    return None


async def storm(url: str, sockets: int, quiet_on_open: bool) -> dict:
    tally = {"503": 0, "1013": 0}
    cpu, started = cpu_seconds(), time.monotonic()
    opened_at: list[float] = []

    async def timed() -> object | None:
        socket = await open_one(url, tally, started + GIVE_UP_SECONDS, quiet_on_open)
        if socket is not None:
            opened_at.append(time.monotonic() - started)
        return socket

    results = await asyncio.gather(*[timed() for _ in range(sockets)])
    opened = [s for s in results if s is not None]
    seconds = max(opened_at) if opened_at else float("nan")
    client_cpu = cpu_seconds() - cpu
    await asyncio.gather(*[s.close() for s in opened], return_exceptions=True)
    first_second = sum(1 for t in opened_at if t <= 1.0)
    return {"sockets": sockets, "opened": len(opened), "seconds": seconds,
            "rate": len(opened) / seconds if opened else 0.0, "opened_in_1s": first_second,
            "refused_503": tally.pop("503"), "refused_1013": tally.pop("1013"), "failed": tally,
            "client_cpu_s": client_cpu}


def run_bare(sockets: int, workdir: Path) -> dict:
    port = stack.free_port()
    log = open(workdir / "bare.log", "wb")  # noqa: SIM115 - closed with the process
    server = subprocess.Popen([sys.executable, "-m", "bench.bare_server", str(port)], cwd=stack.BASE_DIR,
                              stdout=log, stderr=subprocess.STDOUT)
    try:
        stack.wait_for_port(port, process=server)
        return with_server_cpu(server.pid, lambda: asyncio.run(
            storm(f"ws://127.0.0.1:{port}/", sockets, quiet_on_open=True)))
    finally:
        stack.stop(server)
        log.close()


def start_job(base_url: str, token: str) -> str:
    response = httpx.post(f"{base_url}/api/jobs/", json={"kind": "students_by_age"},
                          headers={"Authorization": f"Token {token}"}, timeout=30)
    response.raise_for_status()
    return response.json()["id"]


def run_project(route: str, sockets: int, env: dict[str, str], token: str, workdir: Path,
                profile: Path | None = None) -> dict:
    port = stack.free_port()
    daphne = stack.start_daphne(port, env, log=workdir / f"daphne-{route}-{sockets}.log")
    base = f"127.0.0.1:{port}"
    spies = []
    try:
        path = {"seed": "/chat/", "chat": f"/ws/chat/storm/?token={token}",
                "events": f"/ws/events/?token={token}"}.get(route)
        if route == "job":
            path = f"/ws/jobs/{start_job(f'http://{base}', token)}/?token={token}"
        if profile is not None:
            spies.append(py_spy(daphne.pid, profile / f"daphne-{route}-{sockets}.txt"))
        # A job socket is sent its snapshot on open (counted in the time to open); the others nothing.
        return with_server_cpu(daphne.pid, lambda: asyncio.run(
            storm(f"ws://{base}{path}", sockets, quiet_on_open=route != "job")))
    finally:
        stop_py_spy(spies)
        stack.stop(daphne)


def main() -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="2000,5000,10000")
    parser.add_argument("--routes", default=",".join(ROUTES))
    parser.add_argument("--json", default="")
    parser.add_argument("--profile", default="", help="folder: py-spy records Daphne there, one file a run")
    args = parser.parse_args()
    sizes = [int(size) for size in args.sizes.split(",") if size]
    routes = [route for route in args.routes.split(",") if route]
    raise_open_files_limit()
    ensure_redis()
    workdir = Path(tempfile.mkdtemp(prefix="bench-storm-"))
    env = {**migrated_database(workdir), "LOG_LEVEL": "WARNING", "CHAT_ALLOW_ANONYMOUS": "1",
           "WS_MAX_PER_USER": "1000000", "WS_MAX_ANONYMOUS_PER_IP": "1000000", "LISTEN_LOOPBACK_ONLY": "1"}
    token = manage(env, "create_api_user", "storm")
    runs: list[dict] = []
    try:
        for sockets in sizes:
            bare = run_bare(sockets, workdir)
            print(f"\n{sockets:,} sockets at once: bare websockets server {bare['opened']:,} open in "
                  f"{bare['seconds']:.2f} s ({bare['rate']:.0f}/s; client CPU {bare['client_cpu_s']:.1f} s)",
                  flush=True)
            for route in routes:
                time.sleep(2)  # let the previous run's sockets finish closing
                result = run_project(route, sockets, env, token, workdir, Path(args.profile) if args.profile else None)
                result["vs_bare"] = result["rate"] / bare["rate"] if bare["rate"] else None
                runs.append({"route": route, "bare": bare, **result})
                print(f"  {route:<7} {result['opened']:>6,}/{sockets:,} open in {result['seconds']:6.2f} s "
                      f"({result['rate']:5.0f}/s, x{result['vs_bare'] or 0:.2f} bare); first second "
                      f"{result['opened_in_1s']:,}; refused 503 {result['refused_503']:,}, 1013 "
                      f"{result['refused_1013']:,}; failed {result['failed'] or 'none'}; "
                      f"CPU client {result['client_cpu_s']:.1f} s, server "
                      f"{result['server_cpu_ms_per_socket']:.2f} ms/socket (bare "
                      f"{bare['server_cpu_ms_per_socket']:.2f})", flush=True)
    finally:
        stop_redis()
    result = {"sizes": sizes, "routes": routes, "runs": runs}
    write_result(result, ["--json", args.json] if args.json else [])
    return result


if __name__ == "__main__":
    main()
