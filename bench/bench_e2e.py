"""End to end on the real stack: a REST trigger, the gevent worker runs the job, a socket watches.

Processes as `make run` starts them (basic/ops/stack.py): a private Redis, Daphne, and `celery worker
--pool=gevent --concurrency=100` through `python -m gevent.monkey`, on a freshly migrated SQLite
database. JOBS jobs of the cheap `students_by_age` kind (over a few students), CONCURRENCY at a
time; each is watched by a socket to `/ws/jobs/{id}/?token=` opened right after the trigger's 202.

Per job: trigger -> first socket frame (the snapshot), trigger -> the job's end on the socket
(`job.done`, or a terminal snapshot if it ended before the socket joined), and trigger -> the end
as the server stamped it (the event's `ts` or the snapshot's `finished`: how soon the job was done,
whenever the socket heard of it). p50/p99 over all jobs.

Baseline, same stack and run, same concurrency: the floor of "ask over REST, then watch": `GET
/api/jobs/{id}/` of a finished job, then open its socket and get the snapshot. Every figure is
also given as a ratio to it.

Run: `python -m bench.bench_e2e [--jobs 500] [--concurrency 10] [--students 100]`.
"""
import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import httpx
from websockets.asyncio.client import connect

from basic.ops import stack
from bench.common import (
    ensure_redis,
    manage,
    migrated_database,
    percentile,
    raise_open_files_limit,
    stop_redis,
    write_result,
)

TERMINAL = {"job.done", "job.failed", "job.cancelled"}


def epoch(iso: str | None) -> float | None:
    try:
        return datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() if iso else None
    except ValueError:
        return None


async def watch(ws_url: str, started: float, wall: float | None = None) -> dict:
    """Times from `started` (perf_counter) to the first frame and to the job's end on one socket;
    with `wall` (the trigger's time.time()), also to the end as the server stamped it (`ts` of
    `job.done`, or `finished` in a terminal snapshot: same host, same clock)."""
    out: dict = {}
    async with connect(ws_url, compression=None, ping_interval=None, open_timeout=60) as ws:
        while True:
            frame = json.loads(await asyncio.wait_for(ws.recv(), 120))
            now = time.perf_counter()
            kind = frame.get("type")
            if "first" not in out:
                out["first"] = now - started
                out["first_type"] = kind
            if kind in TERMINAL or (kind == "job.snapshot" and frame.get("status") in ("done", "failed", "cancelled")):
                out["end"] = now - started
                out["end_type"] = kind if kind in TERMINAL else "terminal snapshot"
                out["status"] = frame.get("status")
                stamped = epoch(frame.get("ts") if kind in TERMINAL else frame.get("finished"))
                if wall is not None and stamped is not None:
                    out["stamped_end"] = stamped - wall
                return out


async def trigger_and_watch(http: httpx.AsyncClient, base_ws: str, token: str, start_path: str, body: dict) -> dict:
    wall, started = time.time(), time.perf_counter()
    response = await http.post(start_path, json=body)
    if response.status_code != 202:
        raise RuntimeError(f"trigger answered {response.status_code}: {response.text[:300]}")
    answered = time.perf_counter() - started
    job = response.json()["id"]
    result = await watch(f"{base_ws}/ws/jobs/{job}/?token={token}", started, wall)
    return {"job": job, "response": answered, **result}


async def ask_and_watch(http: httpx.AsyncClient, base_ws: str, token: str, job: str) -> dict:
    started = time.perf_counter()
    response = await http.get(f"/api/jobs/{job}/")
    response.raise_for_status()
    answered = time.perf_counter() - started
    result = await watch(f"{base_ws}/ws/jobs/{job}/?token={token}", started)
    return {"job": job, "response": answered, **result}


async def pool(count: int, concurrency: int, make) -> list[dict]:  # type: ignore[no-untyped-def]
    results: list[dict] = []
    failures: list[str] = []
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            try:
                results.append(await make(i))
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*[worker() for _ in range(concurrency)])
    if failures:
        print(f"  {len(failures)} of {count} failed, e.g. {failures[0]}")
    return results


def summary(results: list[dict], key: str) -> dict:
    values = [r[key] * 1000 for r in results if key in r]
    return {"p50_ms": percentile(values, 0.5), "p99_ms": percentile(values, 0.99), "n": len(values)}


async def measure(base_url: str, token: str, jobs: int, concurrency: int) -> dict:
    base_ws = base_url.replace("http://", "ws://")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=base_url, headers={"Authorization": f"Token {token}"},
                                 timeout=60, limits=limits) as http:
        start_path, body = "/api/jobs/", {"kind": "students_by_age"}
        probe = await http.post(start_path, json=body)
        if probe.status_code != 202:  # an older API: the per-kind trigger
            start_path, body = "/api/students/by-age-report/", {}
            probe = await http.post(start_path, json=body)
        probe.raise_for_status()
        finished = probe.json()["id"]
        await watch(f"{base_ws}/ws/jobs/{finished}/?token={token}", time.perf_counter())  # warm every path

        # Half the baseline before the jobs and half after, so drift in the machine's load shows in both.
        baseline = await pool(jobs // 2, concurrency, lambda i: ask_and_watch(http, base_ws, token, finished))
        began = time.perf_counter()
        e2e = await pool(jobs, concurrency, lambda i: trigger_and_watch(http, base_ws, token, start_path, body))
        e2e_seconds = time.perf_counter() - began
        baseline += await pool(jobs - jobs // 2, concurrency, lambda i: ask_and_watch(http, base_ws, token, finished))
    ends: dict[str, int] = {}
    for r in e2e:
        ends[r["end_type"]] = ends.get(r["end_type"], 0) + 1
    statuses: dict[str, int] = {}
    for r in e2e:
        statuses[r["status"]] = statuses.get(r["status"], 0) + 1
    rows = {
        "trigger -> 202": summary(e2e, "response"),
        "trigger -> first socket frame": summary(e2e, "first"),
        "trigger -> job end on the socket": summary(e2e, "end"),
        "trigger -> job end as the server stamped it": summary(e2e, "stamped_end"),
    }
    base = summary(baseline, "first")
    base_http = summary(baseline, "response")
    for row in rows.values():
        row["p50_x"] = row["p50_ms"] / base["p50_ms"]
        row["p99_x"] = row["p99_ms"] / base["p99_ms"]
    return {"jobs": jobs, "concurrency": concurrency, "completed": len(e2e), "jobs_per_s": len(e2e) / e2e_seconds,
            "rows": rows, "baseline": {"GET job -> its socket's snapshot": base},
            "baseline_parts": {"GET job -> 200": base_http}, "ends": ends, "statuses": statuses,
            "start_path": start_path}


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--concurrency", type=int, default=10, help="jobs in flight at once")
    parser.add_argument("--students", type=int, default=100)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    workdir = Path(tempfile.mkdtemp(prefix="bench-e2e-"))
    redis_url = ensure_redis()
    env = {
        **migrated_database(workdir),
        "REDIS_URL": redis_url,
        "CHANNEL_PREFIX": f"e2e{os.getpid()}",
        "LOG_LEVEL": "WARNING",
        "LISTEN_LOOPBACK_ONLY": "1",
        "DJANGO_SETTINGS_MODULE": "app.settings",
        "JOB_TRIGGER_RATE": "100000/min",
        "WS_MAX_PER_USER": "100000",
        **stack.fresh_metrics_dir(workdir / "metrics"),
    }
    token = manage(env, "create_api_user", "bench")
    processes = []
    try:
        worker_log = workdir / "worker.log"
        processes.append(stack.start_worker({**env, "LOG_LEVEL": "INFO"}, concurrency=100, log=worker_log,
                                            hostname=f"bench-e2e-{os.getpid()}@%h"))
        stack.wait_for_text(worker_log, "ready.", process=processes[-1])
        port = stack.free_port()
        processes.append(stack.start_daphne(port, env, log=workdir / "daphne.log"))
        base_url = f"http://127.0.0.1:{port}"
        httpx.post(f"{base_url}/api/students/generate/", json={"count": args.students},
                   headers={"Authorization": f"Token {token}"}, timeout=60).raise_for_status()
        result = asyncio.run(measure(base_url, token, args.jobs, args.concurrency))
    finally:
        for process in reversed(processes):
            stack.stop(process)
        stop_redis()
    print(f"\nEnd to end: {result['completed']} of {args.jobs} students_by_age jobs ({args.students} students), "
          f"{args.concurrency} at a time on a gevent worker, {result['jobs_per_s']:.1f} jobs/s")
    base = result["baseline"]["GET job -> its socket's snapshot"]
    print(f"  baseline: GET job -> its socket's snapshot      p50 {base['p50_ms']:7.1f} ms  "
          f"p99 {base['p99_ms']:7.1f} ms")
    part = result["baseline_parts"]["GET job -> 200"]
    print(f"    (of which GET job -> 200                        p50 {part['p50_ms']:7.1f} ms  "
          f"p99 {part['p99_ms']:7.1f} ms)")
    for name, row in result["rows"].items():
        print(f"  {name:<45}  p50 {row['p50_ms']:7.1f} ms  p99 {row['p99_ms']:7.1f} ms   "
              f"x{row['p50_x']:.2f} / x{row['p99_x']:.2f} vs baseline")
    print(f"  ended on the socket by: {result['ends']}; statuses: {result['statuses']}")
    write_result(result, ["--json", args.json] if args.json else [])
    return result


if __name__ == "__main__":
    main(sys.argv[1:])
