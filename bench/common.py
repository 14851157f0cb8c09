"""Benchmark scaffolding: a private Redis when REDIS_URL is unset, a freshly migrated temp database,
Django set up, the open-files limit raised, ratio printing and a JSON result file for run_all."""
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from basic.ops import stack

_redis = None


def ensure_redis() -> str:
    global _redis
    if not os.environ.get("REDIS_URL"):
        port = stack.free_port()
        _redis = stack.start_redis(port, Path(tempfile.mkdtemp(prefix="bench-redis-")))
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    return os.environ["REDIS_URL"]


def stop_redis() -> None:
    global _redis
    if _redis is not None:
        stack.stop(_redis)
        _redis = None
        os.environ.pop("REDIS_URL", None)


def raise_open_files_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit; every server this process starts inherits it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = hard if hard != resource.RLIM_INFINITY else 1 << 20
    if soft < target:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    return target


def manage(env: dict[str, str], *args: str) -> str:
    """`manage.py ARGS` in a child process with `env` on top of ours; its stdout."""
    done = subprocess.run([sys.executable, "manage.py", *args], cwd=stack.BASE_DIR, check=True,
                          capture_output=True, text=True,
                          env={**os.environ, "LISTEN_LOOPBACK_ONLY": "1", **env})
    return done.stdout.strip()


def migrated_database(workdir: Path) -> dict[str, str]:
    """A new SQLite database (and MEDIA_ROOT) in `workdir`, migrated by `manage.py migrate`.

    Every benchmark that touches the database uses its own: a fresh clone has no var/db.sqlite3,
    and a child process (the gevent pusher, Daphne, a worker) queries whatever DATABASE_URL says.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    env = {"DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}", "MEDIA_ROOT": str(workdir / "media")}
    manage(env, "migrate", "--noinput", "-v0")
    return env


def setup_django() -> None:
    """Redis, a migrated temp database (unless DATABASE_URL is set), then django.setup(). The
    environment is exported, so child processes see the same Redis and database."""
    ensure_redis()
    os.environ.setdefault("LISTEN_LOOPBACK_ONLY", "1")  # bench servers bind 127.0.0.1 only
    if not os.environ.get("DATABASE_URL"):
        os.environ.update(migrated_database(Path(tempfile.mkdtemp(prefix="bench-db-"))))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    import django

    django.setup()


def best_rate(run: Callable[[], int], repeats: int = 3) -> float:
    """Operations per second: the median of `repeats` runs (each returns its operation count)."""
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        count = run()
        rates.append(count / (time.perf_counter() - started))
    return statistics.median(rates)


def report(title: str, baseline_name: str, rows: dict[str, float], unit: str) -> None:
    baseline = rows[baseline_name]
    print(f"\n{title}")
    for name, value in rows.items():
        print(f"  {name:<50} {value:>12,.0f} {unit}   x{value / baseline:,.2f} vs {baseline_name}")


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of `values` by nearest rank; NaN when empty."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def write_result(result: dict, argv: list[str] | None = None) -> None:
    """If `--json PATH` is among the arguments, write `result` there (run_all collects it)."""
    argv = sys.argv if argv is None else argv
    if "--json" in argv:
        path = Path(argv[argv.index("--json") + 1])
        path.write_text(json.dumps(result, indent=1, default=str))


def without_json_flag(argv: list[str]) -> list[str]:
    """argv minus `--json PATH`, for benchmarks that read positional arguments."""
    if "--json" in argv:
        i = argv.index("--json")
        return argv[:i] + argv[i + 2:]
    return argv


def py_spy(pid: int, output: Path) -> subprocess.Popen:
    """Start recording a process's Python stacks with py-spy (`--gil`: only samples holding the GIL,
    i.e. Python CPU, so idle waits do not fill the top); stop it with `stop_py_spy`."""
    output.parent.mkdir(parents=True, exist_ok=True)
    spy = str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([spy, "record", "-p", str(pid), "-r", "200", "-f", "raw", "-o", str(output),
                             "--nonblocking", "--gil"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def stop_py_spy(spies: list[subprocess.Popen]) -> None:
    """Stop the recordings; each writes its file as it ends."""
    for spy in spies:
        spy.send_signal(2)
        spy.wait(30)
