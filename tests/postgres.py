"""A private, throw-away PostgreSQL for the tests (`TEST_DATABASE=postgres`, tests/databases.py) and
benchmarks, from the distribution's packages (Debian: apt-get install postgresql). Test-only: the product
itself connects to whatever DATABASE_URL names."""
import os
import shutil
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from basic.ops.stack import free_port, stop


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
