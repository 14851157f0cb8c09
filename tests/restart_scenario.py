"""A crowd on a live stack when its web process or its Redis restarts (issue 18, goal 3), shared by
tests/integration/test_restart_recovery.py (CI size) and bench/bench_restart.py (5,000 sockets).

Alice's jobs tick (test_steps); of the crowd, 60% watch them (`/ws/jobs/{id}/`, resumed with
`after=`), 20% are on Bob's feed (`/ws/events/`: one job of his ticks) and 20% in a chat room a
sender speaks in every second; half reconnect as the console does, half as the CLI does
(tests/crowd.py). Once every socket is open, the web process is SIGKILLed and started again on the
same port, or Redis is stopped and started again. A client has recovered when a frame reaches it
after the restart began (for a web restart, on a new connection). Job streams are then followed to the end
and checked: no seq missing, none twice."""
import asyncio
import json
import resource
import time
from typing import Any

import httpx
import psutil
import websockets

from tests.crowd import Client, Crowd, summary
from tests.live import LiveStack

SHARES = (("job", 0.6), ("feed", 0.2), ("chat", 0.2))
ROOM = "restart"


def start_ticking_jobs(live: LiveStack, token: str, count: int, steps: int, delay: float) -> list[str]:
    with httpx.Client(base_url=live.base_url, headers={"Authorization": f"Token {token}"}, timeout=60) as http:
        ids = []
        for _ in range(count):
            answer = http.post("/api/jobs/", json={"kind": "test_steps", "params": {"steps": steps, "delay": delay}})
            assert answer.status_code == 202, answer.text
            ids.append(answer.json()["id"])
    return ids


def make_crowd(sockets: int, job_ids: list[str], alice: str, bob: str) -> list[Client]:
    clients = []
    counts = {kind: round(sockets * share) for kind, share in SHARES}
    counts["job"] += sockets - sum(counts.values())
    for kind, count in counts.items():
        for i in range(count):
            style = "console" if i % 2 else "cli"
            if kind == "job":
                clients.append(Client(f"/ws/jobs/{job_ids[i % len(job_ids)]}/", alice, style, job=True))
            elif kind == "feed":
                clients.append(Client("/ws/events/", bob, style))
            else:
                clients.append(Client(f"/ws/chat/{ROOM}/", bob, style))
    return clients


async def chat_ticks(ws_url: str, token: str, stop: asyncio.Event) -> int:
    """One message a second in the room, reconnecting across the restart; how many were sent."""
    sent = 0
    while not stop.is_set():
        try:
            async with websockets.connect(f"{ws_url}/ws/chat/{ROOM}/?token={token}", open_timeout=10) as socket:
                while not stop.is_set():
                    sent += 1
                    await socket.send(json.dumps({"message": f"tick {sent}"}))
                    try:
                        await asyncio.wait_for(stop.wait(), 1.0)
                    except TimeoutError:
                        pass
        except (OSError, TimeoutError, websockets.WebSocketException):
            await asyncio.sleep(0.5)
    return sent


async def run(live: LiveStack, what: str, sockets: int, jobs: int, steps: int, delay: float,
              open_within: float, recover_within: float, redis_down: float = 2.0) -> dict[str, Any]:
    """The scenario; its figures (`recovered` is the clients a frame reached within `recover_within`
    seconds of the restart, of `live_clients`). Redis stays down `redis_down` seconds."""
    assert what in ("web", "redis")
    bob = live.user_token("bob")
    job_ids = await asyncio.to_thread(start_ticking_jobs, live, live.token, jobs, steps, delay)
    await asyncio.to_thread(start_ticking_jobs, live, bob, 1, steps, delay)  # what Bob's feed carries
    crowd = Crowd(make_crowd(sockets, job_ids, live.token, bob), live.ws_url)
    started = time.monotonic()
    crowd.start()
    ticking = asyncio.ensure_future(chat_ticks(live.ws_url, bob, crowd.stop))
    result: dict[str, Any] = {"what": what, "sockets": sockets, "jobs": jobs}
    try:
        all_open = await crowd.wait(lambda: crowd.open_count() == sockets, open_within)
        result["all_open"] = all_open
        result["open_seconds"] = time.monotonic() - started
        result["refused_while_opening"] = refusals(crowd.clients)
        result["errors_while_opening"] = opening_errors = errors(crowd.clients)
        if not all_open:
            result["open"] = crowd.open_count()
            return result
        await asyncio.sleep(1.0)
        before = refusals(crowd.clients)
        since = time.monotonic()
        for client in crowd.clients:
            client.since, client.new_connection = since, what == "web"
        if what == "web":
            await asyncio.to_thread(live.restart_web)
        else:
            await asyncio.to_thread(live.stop_redis)
            await asyncio.sleep(redis_down)  # the jobs go on; their events reach only the database
            await asyncio.to_thread(live.start_redis_again)
        result["down_seconds"] = time.monotonic() - since  # until the new process is listening
        live_clients = [c for c in crowd.clients if not c.done]
        cpu = cpu_seconds(live)
        await crowd.wait(lambda: all(c.resumed_at is not None or c.done for c in live_clients), recover_within)
        # Whose CPU the recovery took (the crowd's own process included: a client-bound run shows).
        result["recovery_cpu_s"] = {name: used - cpu[name] for name, used in cpu_seconds(live).items()}
        result["recovery_wall_s"] = time.monotonic() - since
        waits = [c.resumed_at - since for c in live_clients if c.resumed_at is not None]
        result["live_clients"] = len(live_clients)
        result["recovered"] = sum(1 for w in waits if w <= recover_within)
        result["resumed"] = summary(waits)
        result["by_kind"] = {kind: summary([c.resumed_at - since for c in live_clients
                                            if c.resumed_at is not None and kind_of(c) == kind])
                             for kind, _ in SHARES}
        result["by_style"] = {style: summary([c.resumed_at - since for c in live_clients
                                              if c.resumed_at is not None and c.style == style])
                              for style in ("console", "cli")}
        result["refusals_by_style"] = {style: refusals([c for c in crowd.clients if c.style == style])
                                       for style in ("console", "cli")}
        result["refused_after_restart"] = {k: v - before[k] for k, v in refusals(crowd.clients).items()}
        result["errors"] = {name: count - opening_errors.get(name, 0) for name, count in errors(crowd.clients).items()
                            if count > opening_errors.get(name, 0)}
        watchers = [c for c in crowd.clients if c.job]
        await crowd.wait(lambda: all(c.done for c in watchers), steps * delay + 60, poll=0.5)
        problems = [c.stream_problems() for c in watchers]
        result["job_streams"] = {"watchers": len(watchers), "ended": sum(c.done for c in watchers),
                                 "missing": sum(m for m, _ in problems), "repeated": sum(r for _, r in problems)}
        return result
    finally:
        await crowd.close()
        await ticking


def cpu_seconds(live: LiveStack) -> dict[str, float]:
    """CPU time used so far by the crowd (this process) and by the stack's web process and worker
    (the web process restarted meanwhile: the new one's is its whole life, start-up included)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    used = {"crowd": own.ru_utime + own.ru_stime}
    for name in ("daphne", "worker"):
        try:
            times = psutil.Process(live.processes[name].pid).cpu_times()
            used[name] = times.user + times.system
        except (KeyError, psutil.Error):
            used[name] = 0.0
    return used


def kind_of(client: Client) -> str:
    return "job" if client.job else "feed" if client.path == "/ws/events/" else "chat"


def refusals(clients: list[Client]) -> dict[str, int]:
    return {"503": sum(c.refused_503 for c in clients), "1013": sum(c.refused_1013 for c in clients)}


def errors(clients: list[Client]) -> dict[str, int]:
    total: dict[str, int] = {}
    for client in clients:
        for name, count in client.errors.items():
            total[name] = total.get(name, 0) + count
    return total
