"""The whole stack the soak runs, as real processes from the tests' helpers: a private PostgreSQL
(tests/postgres.py), a Redis master, its replica and three sentinels (tests/sentinel.py),
`manage.py runweb` with two Daphnes on one port (basic/ops/web_pool.py) behind Debian's nginx
(tests/nginx.py), a gevent worker and a prefork CPU worker (tests/live.py), and a local web
server for page fetches. It also does what each fault needs: kill, restart, fail over, pause."""
import contextlib
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import psutil
import redis

from basic.ops import stack, web_pool
from tests import nginx
from tests.live import LiveStack, manage
from tests.postgres import Postgres, start_postgres, stop_postgres
from tests.sentinel import MASTER_NAME, SentinelSet, sentinel_set
from tests.soak.config import SENTINEL_DOWN_AFTER_MS, STACK_SETTINGS

USERS = ("soak-ann", "soak-ben", "soak-cat", "soak-dan")
# The web server's default body cap (app/settings.py): the largest thumbnail plus Django's form cap.
MAX_BODY_BYTES = 20 * 1024 * 1024 + 2_621_440 + 64 * 1024


@dataclass
class SoakStack:
    root: Path
    env: dict[str, str]
    postgres: Postgres
    sentinels: SentinelSet
    live: LiveStack
    runweb: subprocess.Popen
    web_port: int
    proxy_port: int
    page_host: str
    tokens: dict[str, str]
    nginx: subprocess.Popen | None = None
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    started: Counter[str] = field(default_factory=Counter)  # workers started, by kind

    @property
    def proxy_http(self) -> str:
        return f"http://127.0.0.1:{self.proxy_port}"

    @property
    def proxy_ws(self) -> str:
        return f"ws://127.0.0.1:{self.proxy_port}"

    # --- workers ---------------------------------------------------------------------------

    def start_worker(self, which: str) -> subprocess.Popen:
        """A new gevent ("io") or prefork ("cpu") worker, as a supervisor would start one; returns
        once it consumes."""
        self.started[which] += 1
        tag = f"{which}-{self.started[which]}"
        process = (self.live.start_worker(tag) if which == "io"
                   else self.live.start_cpu_worker(tag, concurrency=1))
        self.workers[which] = process
        return process

    def kill_worker(self, which: str) -> int:
        """SIGKILL a worker's whole process group (a prefork worker's pool children too, as a
        container or systemd unit dies)."""
        process = self.workers[which]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        return process.pid

    # --- web processes --------------------------------------------------------------------

    def web_children(self) -> list[psutil.Process]:
        found = []
        for child in psutil.Process(self.runweb.pid).children():
            with contextlib.suppress(psutil.Error):
                if "basic.realtime.server" in " ".join(child.cmdline()) and child.status() != psutil.STATUS_ZOMBIE:
                    found.append(child)
        return found

    def kill_web_process(self, choose: Callable[[list[psutil.Process]], psutil.Process]) -> tuple[int, float]:
        """SIGKILL one Daphne of the pool, one past the pool's start-up window (a child that dies
        sooner is taken for a broken start and the pool gives up: basic/ops/web_pool.py)."""
        deadline = time.monotonic() + 60
        while True:
            old = [c for c in self.web_children()
                   if time.time() - c.create_time() > web_pool.START_FAILURE_SECONDS + 1]
            if old or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        if not old:
            raise RuntimeError("no web process has been up long enough to be killed")
        victim = choose(old)
        at = time.monotonic()
        victim.send_signal(signal.SIGKILL)
        return victim.pid, at

    def web_pool_whole(self, victim: int) -> bool:
        """The pool has its two processes again, the victim's replacement listening."""
        children = self.web_children()
        if len(children) != 2 or any(c.pid == victim for c in children):
            return False
        try:
            return all(any(conn.status == psutil.CONN_LISTEN and conn.laddr.port == self.web_port
                           for conn in c.net_connections("tcp")) for c in children)
        except psutil.Error:
            return False

    # --- Redis ----------------------------------------------------------------------------

    def redis_process_at(self, address: str) -> tuple[str, subprocess.Popen]:
        port = int(address.rsplit(":", 1)[1])
        name = "master" if port == self.sentinels.master_port else "replica"
        return name, self.sentinels.processes[name]

    def fail_over_redis(self) -> tuple[str, str]:
        """SIGKILL the master, wait for the sentinels to promote the replica, then start the killed
        server again as the new master's replica (empty: it syncs), so the next failover can happen."""
        old = self.sentinels.master()
        self.sentinels.kill_master()
        new, _ = self.sentinels.wait_for_new_master(old, timeout=60)
        name, dead = self.redis_process_at(old)
        args = [str(a) for a in dead.args]
        if "--replicaof" in args:
            at = args.index("--replicaof")
            del args[at:at + 3]
        host, port = new.rsplit(":", 1)
        process = subprocess.Popen([*args, "--replicaof", host, port], stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        self.sentinels.processes[name] = process
        stack.wait_for_port(int(old.rsplit(":", 1)[1]), timeout=15, process=process)
        return old, new

    def replica_back(self, address: str) -> bool:
        """`address` replicates the master and every sentinel sees it up again."""
        host, port = address.rsplit(":", 1)
        try:
            with redis.Redis(host=host, port=int(port), socket_timeout=0.5) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for sentinel_port in self.sentinels.sentinel_ports:
                with redis.Redis(port=sentinel_port, socket_timeout=0.5) as sentinel:
                    replicas = sentinel.sentinel_slaves(MASTER_NAME)
                    mine = [r for r in replicas if f"{r['ip']}:{r['port']}" == address]
                    if not mine or mine[0].get("is_sdown") or mine[0].get("is_disconnected"):
                        return False
            return True
        except redis.RedisError:
            return False

    def pause_redis_master(self, seconds: float) -> str:
        """SIGSTOP the master for `seconds` (shorter than the sentinels' down-after), then SIGCONT."""
        master = self.sentinels.master()
        _, process = self.redis_process_at(master)
        os.kill(process.pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(process.pid, signal.SIGCONT)
        return master

    def redis_master_client(self) -> redis.Redis:
        host, port = self.sentinels.master().rsplit(":", 1)
        return redis.Redis(host=host, port=int(port), socket_timeout=10)

    # --- PostgreSQL -----------------------------------------------------------------------

    def restart_postgres(self) -> None:
        """A fast shutdown (clients cut off), then the same server started again on its data."""
        server = self.postgres
        args = server.process.args
        stack.stop(server.process, sig=signal.SIGINT, timeout=30)
        with (server.root / "postgres.log").open("ab") as log:
            server.process = subprocess.Popen(args, cwd=server.root, stdout=log, stderr=subprocess.STDOUT,
                                              start_new_session=True, **_postgres_account())
        wait_for_database(server.url, 60)

    # --- readiness and processes ------------------------------------------------------------

    def ready(self) -> bool:
        """/readyz through nginx: the database, Redis (the master the sentinels name) and a worker."""
        try:
            return httpx.get(f"{self.proxy_http}/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    def processes(self) -> list[tuple[str, psutil.Process]]:
        """Every process of the stack by role (for memory and open files)."""
        roots: list[tuple[str, int | None]] = [
            ("nginx", self.nginx.pid if self.nginx else None), ("runweb", self.runweb.pid),
            ("worker-io", self.workers["io"].pid), ("worker-cpu", self.workers["cpu"].pid),
            ("postgres", self.postgres.process.pid), *self.redis_roles()]
        found: list[tuple[str, psutil.Process]] = []
        for role, pid in roots:
            if pid is None:
                continue
            try:
                process = psutil.Process(pid)
                found.append((role, process))
                found += [(_child_role(role, c), c) for c in process.children(recursive=True)]
            except psutil.Error:
                continue
        return found


    def redis_roles(self) -> list[tuple[str, int]]:
        """The Redis servers by the role they have now (a failover swaps them), and the sentinels."""
        try:
            master = int(self.sentinels.master().rsplit(":", 1)[1])
        except RuntimeError:
            master = 0
        ports = {"master": self.sentinels.master_port, "replica": self.sentinels.replica_port}
        return [(name if name.startswith("sentinel") else "redis-master" if ports[name] == master else "redis-replica",
                 process.pid) for name, process in self.sentinels.processes.items()]


def _child_role(role: str, child: psutil.Process) -> str:
    if role == "runweb":
        return "daphne"
    return {"nginx": "nginx", "postgres": "postgres", "worker-cpu": "worker-cpu"}.get(role, role)


def _postgres_account() -> dict:
    """Run PostgreSQL as the `postgres` user when we are root, as tests/postgres.py does."""
    if os.geteuid() != 0:
        return {}
    import pwd

    account = pwd.getpwnam("postgres")
    return {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}


def wait_for_database(url: str, timeout: float) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2) as conn:
                conn.execute("SELECT 1")
            return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


class Pages(http.server.BaseHTTPRequestHandler):
    """Pages for the page_fetch kind: `?delay=S` answers after S seconds (at most 5)."""

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        query = parse_qs(urlsplit(self.path).query)
        time.sleep(min(5.0, float(query.get("delay", ["0"])[0])))
        body = (f"<html><head><title>soak page {query.get('n', ['0'])[0]}</title></head>"
                f"<body>{'lorem ipsum ' * 200}</body></html>").encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        with contextlib.suppress(ConnectionError):  # a worker killed mid-fetch hung up
            self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@contextlib.contextmanager
def page_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Pages)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def create_users(env: dict[str, str], names: tuple[str, ...]) -> dict[str, str]:
    """Every soak user and an API token each, in one `manage.py shell` (a process start costs seconds)."""
    code = ("import json; from basic.accounts.tokens import user_with_token; "
            f"print(json.dumps({{n: user_with_token(username=n)[1] for n in {list(names)!r}}}))")
    return json.loads(manage(env, "shell", "-c", code).splitlines()[-1])


def start_runweb(env: dict[str, str], port: int, log: Path) -> subprocess.Popen:
    with log.open("ab") as out:
        return subprocess.Popen([sys.executable, "manage.py", "runweb", "--port", str(port), "--processes", "2"],
                                cwd=stack.BASE_DIR, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"not within {timeout:.0f}s: {what}")
        time.sleep(0.2)


@contextlib.contextmanager
def soak_stack(root: Path, sockets: int, say: Callable[[str], object] = print) -> Iterator[SoakStack]:
    """Start everything (what can start at once, at once); stop everything on exit."""
    began = time.monotonic()

    def step(what: str) -> None:
        say(f"  {time.monotonic() - began:5.1f}s {what}")

    binary = nginx.require_nginx()
    root.mkdir(parents=True, exist_ok=True)
    with contextlib.ExitStack() as exits, ThreadPoolExecutor(4) as pool:
        page_host = exits.enter_context(page_server())
        sentinels_started = pool.submit(exits.enter_context, sentinel_set(root / "sentinels"))
        postgres = start_postgres()
        exits.callback(stop_postgres, postgres)
        database_url = postgres.create_database("soak")
        env = {
            **STACK_SETTINGS,
            "DATABASE_URL": database_url,
            "MEDIA_ROOT": str(root / "media"),
            "CHANNEL_PREFIX": f"soak-{os.getpid()}",
            "JOB_KIND_EXTRA_MODULES": "tests.job_kinds",
            "PAGE_FETCH_ALLOWED_HOSTS": page_host,
            "WS_MAX_PER_USER": str(sockets + 200),
            "LISTEN_LOOPBACK_ONLY": "1",
            **stack.fresh_metrics_dir(root / "metrics"),
        }
        step("PostgreSQL up")
        manage(env, "migrate", "--noinput", "-v0")  # needs no Redis: beside the sentinels' start
        step("migrated")
        sentinels: SentinelSet = sentinels_started.result()
        for port in sentinels.sentinel_ports:
            with redis.Redis(port=port) as sentinel:
                sentinel.sentinel_set(MASTER_NAME, "down-after-milliseconds", SENTINEL_DOWN_AFTER_MS)
        # Only REDIS_URL's database number is used (the broker's too): the sentinels name the master.
        env |= {**sentinels.env, "REDIS_URL": "redis://localhost/0", "CELERY_BROKER_URL": ""}
        step("Redis and its sentinels up")
        users = pool.submit(create_users, env, USERS)
        web_port, proxy_port = stack.free_port(), stack.free_port()
        live = LiveStack(f"http://127.0.0.1:{web_port}", f"ws://127.0.0.1:{web_port}", env, root / "media", None,
                         root / "worker.log", database_url)
        exits.callback(lambda: [stack.stop(p) for p in reversed(list(live.processes.values()))])
        runweb = start_runweb(env, web_port, root / "runweb.log")
        live.processes["runweb"] = runweb
        soak = SoakStack(root, env, postgres, sentinels, live, runweb, web_port, proxy_port, page_host, {})
        io_worker = pool.submit(soak.start_worker, "io")
        cpu_worker = pool.submit(soak.start_worker, "cpu")
        soak.tokens = users.result()
        step("users made")
        wait_until(lambda: soak.web_pool_whole(victim=-1), 120, "two web processes listening")
        step("web processes listening")
        io_worker.result(), cpu_worker.result()
        step("workers consuming")
        site = nginx.render_balancer(MAX_BODY_BYTES, [f"127.0.0.1:{web_port}"], listen=f"127.0.0.1:{proxy_port}")
        config = nginx.write_config(root / "nginx", site, worker_connections=sockets * 2 + 1024)
        soak.nginx = exits.enter_context(nginx.running(binary, config, proxy_port))
        wait_until(soak.ready, 60, "/readyz through nginx")
        yield soak
