"""CPU work off the gevent pool (issue 20, item 2): how long a trivial page fetch takes while
worst-case thumbnail jobs compute, against the same fetch on an idle stack, in the same run.

Processes as `make run` starts them (basic/ops/stack.py): a private Redis, Daphne, the gevent
worker (`--concurrency=100`) and the CPU queue's prefork worker (one process per core, niced), on
a freshly migrated SQLite database; a local HTTP server serves the page (PAGE_FETCH_ALLOWED_HOSTS).

1. **Idle**: `--fetches` page fetches one after another; each is `POST /api/jobs/` -> the job row
   done (polled every 10 ms); a new URL each time, so the page cache never answers.
2. **With the CPU queue** (the default policy): `--heavy` thumbnail jobs of the worst case the
   issue found (an all-zero 7000x7000 PNG, 190 KB, 8 sizes) are started; once they compute (as
   many at once as the pool has processes), the same fetches, each started before any has ended.
3. **Before** (thumbnails moved back to the gevent pool with JOB_KIND_POLICIES): the same.

The figure is each loaded p50 over the idle p50 (the issue's target: within 2x).
Run: `python -m bench.bench_cpu_isolation [--fetches 9] [--heavy 4]`.
"""
import argparse
import http.server
import io
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
from PIL import Image

from basic.ops import stack
from bench.common import ensure_redis, manage, migrated_database, stop_redis, write_result

SIZES = "64x64,128x128,256x256,320x320,512x512,640x640,800x800,1024x1024"  # 8 sizes, the form's most
ACTIVE = {"queued", "running"}


class Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = b"<html><head><title>bench</title></head><body>" + b"<p>hello</p>" * 50 + b"</body></html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def worst_case_png() -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (7000, 7000)).save(out, format="PNG")
    return out.getvalue()


def wait_done(http: httpx.Client, job_id: str, timeout: float = 600) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = http.get(f"/api/jobs/{job_id}/").json()
        if job["status"] not in ACTIVE:
            return job
        time.sleep(0.01)
    raise TimeoutError(f"job {job_id} did not end in {timeout} s")


def fetch_seconds(http: httpx.Client, page: str, n: int) -> float:
    started = time.monotonic()
    response = http.post("/api/jobs/", json={"kind": "page_fetch", "params": {"url": f"{page}?n={n}"}})
    assert response.status_code == 202, response.text
    job = wait_done(http, response.json()["id"], timeout=120)
    assert job["status"] == "done", job
    return time.monotonic() - started


def start_heavy(http: httpx.Client, png: bytes, count: int) -> list[str]:
    ids = []
    for _ in range(count):
        response = http.post("/api/thumbnails/", data={"sizes": SIZES},
                             files={"image": ("zeros.png", png, "image/png")})
        assert response.status_code == 202, response.text
        ids.append(response.json()["id"])
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:  # computing: as many as the pool takes at once
        if any(http.get(f"/api/jobs/{i}/").json()["status"] == "running" for i in ids):
            return ids
        time.sleep(0.05)
    raise TimeoutError("the thumbnail jobs did not start")


def measure(http: httpx.Client, page: str, fetches: int, heavy: int, png: bytes, offset: int) -> dict:
    """Fetches while `heavy` thumbnail jobs are in hand (0: idle); a fetch counts if it was started
    while one of them was running and none had ended yet."""
    heavy_ids = start_heavy(http, png, heavy) if heavy else []
    times, started = [], time.monotonic()
    for n in range(fetches):
        if heavy_ids:
            states = [http.get(f"/api/jobs/{i}/").json()["status"] for i in heavy_ids]
            if "running" not in states or any(state not in ACTIVE for state in states):
                break
        times.append(fetch_seconds(http, page, offset + n))
    heavy_jobs = [wait_done(http, i) for i in heavy_ids]
    return {
        "fetches": len(times), "p50_s": statistics.median(times) if times else float("nan"),
        "max_s": max(times) if times else float("nan"),
        "heavy_done": sum(job["status"] == "done" for job in heavy_jobs), "heavy": heavy,
        "heavy_seconds": time.monotonic() - started if heavy else 0.0,
    }


def run_stack(workdir: Path, env: dict[str, str], page: str, args: argparse.Namespace, png: bytes,
              label: str, offset: int) -> dict:
    processes = []
    try:
        worker_log, cpu_log = workdir / f"worker-{label}.log", workdir / f"cpu-{label}.log"
        processes.append(stack.start_worker({**env, "LOG_LEVEL": "INFO"}, concurrency=100, log=worker_log,
                                            hostname=f"io-{label}-{os.getpid()}@%h"))
        stack.wait_for_text(worker_log, "ready.", process=processes[-1])
        processes.append(stack.start_cpu_worker({**env, "LOG_LEVEL": "INFO"}, log=cpu_log,
                                                hostname=f"cpu-{label}-{os.getpid()}@%h"))
        stack.wait_for_text(cpu_log, "ready.", process=processes[-1])
        port = stack.free_port()
        processes.append(stack.start_daphne(port, env, log=workdir / f"daphne-{label}.log"))
        token = manage(env, "create_api_user", "bench")
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Token {token}"},
                          timeout=60) as http:
            fetch_seconds(http, page, offset - 1)  # warm: imports, connections
            loaded = measure(http, page, args.fetches, args.heavy, png, offset + 1000)
        return loaded
    finally:
        for process in reversed(processes):
            stack.stop(process)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--fetches", type=int, default=9)
    parser.add_argument("--heavy", type=int, default=4)
    parser.add_argument("--json", default="")
    args = parser.parse_args(argv)
    redis_url = ensure_redis()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    page = f"http://127.0.0.1:{server.server_port}/page"
    png = worst_case_png()
    workdir = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    base_env = {
        **migrated_database(workdir), "REDIS_URL": redis_url, "LISTEN_LOOPBACK_ONLY": "1", "LOG_LEVEL": "WARNING",
        "JOB_TRIGGER_RATE": "100000/min", "PAGE_FETCH_ALLOWED_HOSTS": f"127.0.0.1:{server.server_port}",
        **stack.fresh_metrics_dir(workdir / "metrics"),
    }
    try:
        args_idle = argparse.Namespace(fetches=args.fetches, heavy=0)
        idle = run_stack(workdir, base_env, page, args_idle, png, "idle", 0)
        cpu_pool = run_stack(workdir, base_env, page, args, png, "cpu", 10_000)
        gevent_pool = run_stack(workdir, {**base_env, "JOB_KIND_POLICIES": json.dumps({"thumbnails": {"queue": "io"}})},
                                page, args, png, "gevent", 20_000)
    finally:
        server.shutdown()
        stop_redis()
    result = {
        "png_bytes": len(png), "sizes": SIZES, "cores": os.cpu_count(), "idle": idle, "cpu_pool": cpu_pool,
        "gevent_pool": gevent_pool,
        "ratio_cpu_pool": cpu_pool["p50_s"] / idle["p50_s"], "ratio_gevent_pool": gevent_pool["p50_s"] / idle["p50_s"],
    }
    print(f"\npage fetch p50: idle {idle['p50_s'] * 1000:.0f} ms; while {args.heavy} worst-case thumbnail jobs run: "
          f"on the CPU pool {cpu_pool['p50_s'] * 1000:.0f} ms (x{result['ratio_cpu_pool']:.2f}), "
          f"on the gevent pool {gevent_pool['p50_s'] * 1000:.0f} ms (x{result['ratio_gevent_pool']:.2f}); "
          f"fetches counted {cpu_pool['fetches']}/{gevent_pool['fetches']}")
    write_result(result, sys.argv if argv is None else ["--json", args.json] if args.json else [])
    return result


if __name__ == "__main__":
    main()
