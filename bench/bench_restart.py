"""Restart recovery at the issue's size: 5,000 sockets on one web process, which is SIGKILLed and
started again on the same port, then (on a fresh stack) the same crowd with Redis restarted
instead. The crowd, the jobs and the checks are tests/restart_scenario.py's (the CI test runs 300):
60% watch ticking jobs, 20% a user's feed, 20% a chat room; half back off as the console does,
half as the CLI does. Reported: how long after the restart each socket was reached again (p50, p99,
max), how many were refused on the way back (503 or 1013), and every job stream's gaps and repeats.

There is no bare baseline here: a bare server has no jobs to resume. The promise is absolute
(every socket back within 30 s, every stream gapless); the figures say how far inside it we are.
Run: `python -m bench.bench_restart [--sockets 5000] [--what web,redis]`.
"""
import argparse
import asyncio
import os
import sys
import tempfile
from pathlib import Path

from bench.common import ensure_redis, raise_open_files_limit, stop_redis, write_result
from tests import restart_scenario
from tests.live import live_stack

RECOVER_WITHIN_SECONDS = 30


def main(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sockets", type=int, default=5000)
    parser.add_argument("--what", default="web,redis", help="what restarts: web, redis or both (one run each)")
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--steps", type=int, default=150, help="each job's steps, one event each")
    parser.add_argument("--delay", type=float, default=1.0, help="seconds between a job's steps")
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    raise_open_files_limit()
    ensure_redis()  # live_stack's default; each scenario below has its own, restartable Redis
    os.environ.setdefault("JOB_KIND_EXTRA_MODULES", "tests.job_kinds")
    os.environ.setdefault("LISTEN_LOOPBACK_ONLY", "1")
    root = Path(tempfile.mkdtemp(prefix="bench-restart-"))
    env = {"WS_MAX_PER_USER": str(args.sockets * 4), "JOB_SOCKET_RESYNC_SECONDS": "1", "JOB_TRIGGER_RATE": "100000/min"}
    runs = []
    try:
        for what in [w for w in args.what.split(",") if w]:
            with live_stack(root, f"restart-{what}", own_redis=True, **env) as live:
                run = asyncio.run(restart_scenario.run(
                    live, what, args.sockets, args.jobs, args.steps, args.delay,
                    open_within=180, recover_within=RECOVER_WITHIN_SECONDS))
            runs.append(run)
            print_run(run)
    finally:
        stop_redis()
    result = {"sockets": args.sockets, "recover_within": RECOVER_WITHIN_SECONDS, "runs": runs}
    write_result(result, ["--json", args.json] if args.json else [])
    return result


def print_run(run: dict) -> None:
    name = {"web": "web process SIGKILLed and started again", "redis": "Redis stopped and started again"}[run["what"]]
    print(f"\n{run['sockets']:,} sockets, {name}:", flush=True)
    if not run.get("all_open"):
        print(f"  only {run.get('open', 0):,} opened in {run['open_seconds']:.0f} s; no restart tried")
        return
    resumed = run["resumed"]
    print(f"  all open in {run['open_seconds']:.1f} s (refused on the way: {run['refused_while_opening']}, "
          f"errors: {run['errors_while_opening']}); down {run['down_seconds']:.1f} s")
    print(f"  reached again within {RECOVER_WITHIN_SECONDS} s: {run['recovered']:,} of {run['live_clients']:,}; "
          f"p50 {resumed.get('p50', float('nan')):.1f} s, p99 {resumed.get('p99', float('nan')):.1f} s, "
          f"max {resumed.get('max', float('nan')):.1f} s")
    for kind, times in run["by_kind"].items():
        if times.get("count"):
            print(f"    {kind:>4}: p50 {times['p50']:.1f} s, max {times['max']:.1f} s ({times['count']:,})")
    for style, times in run["by_style"].items():
        if times.get("count"):
            print(f"    {style} clients: p50 {times['p50']:.1f} s, max {times['max']:.1f} s ({times['count']:,}); "
                  f"refused in all {run['refusals_by_style'][style]}")
    cpu = run["recovery_cpu_s"]
    print(f"  CPU over the {run['recovery_wall_s']:.1f} s of recovery: " +
          ", ".join(f"{name} {seconds:.1f} s" for name, seconds in cpu.items()))
    print(f"  refused after the restart: {run['refused_after_restart']}; errors since: {run['errors']}")
    streams = run["job_streams"]
    print(f"  job streams: {streams['ended']:,} of {streams['watchers']:,} ended, {streams['missing']} seqs missing, "
          f"{streams['repeated']} repeated")


if __name__ == "__main__":
    main(sys.argv[1:])
