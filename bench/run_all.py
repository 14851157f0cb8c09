"""Run every benchmark, each in its own process (its own Redis, database and Django set-up), then
write docs/benchmarks.md and its charts from their results. Every figure is a ratio to a baseline
measured in the same run. `make bench`, or `python -m bench.run_all [--sizes 100,1000] …`."""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from basic.ops import stack


def run_bench(name: str, args: list[str], workdir: Path) -> tuple[dict | None, str | None, float]:
    out = workdir / f"{name}.json"
    started = time.monotonic()
    print(f"\n=== {name} {' '.join(args)}", flush=True)
    done = subprocess.run([sys.executable, "-m", f"bench.{name}", *args, "--json", str(out)], cwd=stack.BASE_DIR)
    elapsed = time.monotonic() - started
    if done.returncode != 0 or not out.exists():
        return None, f"exited with {done.returncode}", elapsed
    return json.loads(out.read_text()), None, elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="100,1000,3000", help="fan-out socket counts")
    parser.add_argument("--messages", default="20", help="fan-out messages per run")
    parser.add_argument("--clients", default="2", help="fan-out client processes")
    parser.add_argument("--jobs", default="500", help="end-to-end jobs")
    parser.add_argument("--report-rows", default="1000000", help="students in the report benchmark")
    parser.add_argument("--storm", default="2000,5000,10000", help="connect-storm sizes (sockets at once)")
    parser.add_argument("--job-load", default="2000", help="jobs per client level in bench_jobs (--only jobs)")
    parser.add_argument("--restart", default="5000", help="sockets on a web process (then a Redis) that restarts")
    parser.add_argument("--only", default="", help="a subset: fanout,e2e,push,storm,report,jobs,isolation,restart")
    parser.add_argument("--docs", default=str(stack.BASE_DIR / "docs"), help="where benchmarks.md and charts go")
    args = parser.parse_args()

    plan = {
        "fanout": ("bench_fanout", ["--sizes", args.sizes, "--messages", args.messages, "--clients", args.clients]),
        "e2e": ("bench_e2e", ["--jobs", args.jobs]),
        "push": ("bench_push", []),
        "storm": ("bench_socket_storm", ["--sizes", args.storm]),
        "report": ("bench_report", [args.report_rows]),
        "jobs": ("bench_jobs", ["--jobs", args.job_load]),
        "isolation": ("bench_cpu_isolation", []),
        "restart": ("bench_restart", ["--sockets", args.restart]),
    }
    only = [name for name in args.only.split(",") if name]
    # Every server a benchmark starts binds 127.0.0.1 only (as under `make`, which exports this).
    os.environ.setdefault("LISTEN_LOOPBACK_ONLY", "1")
    workdir = Path(tempfile.mkdtemp(prefix="bench-all-"))  # each benchmark's JSON result
    results, errors, seconds = {}, {}, {}
    load_before = _loadavg()
    started = time.monotonic()
    for key, (module, bench_args) in plan.items():
        if only and key not in only:
            continue
        results[key], error, seconds[key] = run_bench(module, bench_args, workdir)
        if error:
            errors[key] = error
            print(f"!!! {module} {error}", flush=True)
    meta = {"argv": sys.argv[1:], "date": time.strftime("%Y-%m-%d %H:%M"), "load_before": load_before,
            "load_after": _loadavg(), "seconds": seconds, "total_seconds": time.monotonic() - started, "errors": errors}
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)
    # The page shows the latest result of each benchmark: a partial run (--only) replaces only its own.
    stored = docs / "benchmarks.json"
    everything = json.loads(stored.read_text()) if stored.exists() and only else {}
    everything.update({key: value for key, value in results.items() if value is not None})
    if only and "meta" in everything:  # the full run's description stays; note what was redone since
        meta = {**everything["meta"], "updates": everything["meta"].get("updates", []) + [meta]}
    everything["meta"] = meta
    stored.write_text(json.dumps(everything, indent=1, default=str) + "\n")

    from bench.write_docs import write_docs

    page = write_docs(everything, docs)
    print(f"\nWrote {page} and {stored} in {(time.monotonic() - started) / 60:.1f} min")
    if errors:
        print(f"Failed: {errors}")
    return 1 if errors else 0


def _loadavg() -> list[float]:
    try:
        return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


if __name__ == "__main__":
    sys.exit(main())
