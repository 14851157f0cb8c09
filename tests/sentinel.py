"""A Redis master, its replica and three sentinels watching them, as real processes (Debian's
`redis-server` and `redis-sentinel`), for the failover tests.

Without the binaries the tests skip locally and fail in CI (`CI` set), like nginx's (tests/nginx.py);
.ci/run installs Debian's packages. Sentinels decide fast here (down after 1 s, failover timeout
5 s), so a killed master is replaced within a few seconds.
"""
import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from basic.ops import stack
from tests import databases

MASTER_NAME = "mymaster"


def require_sentinel() -> tuple[str, str]:
    """(redis-server, redis-sentinel) from PATH or Debian's /usr/bin."""
    found = [shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
             for name in ("redis-server", "redis-sentinel")]
    if all(found):
        return found[0], found[1]  # type: ignore[return-value]
    if databases.in_ci():
        pytest.fail("redis-server/redis-sentinel are not installed; CI is set, so the failover tests must run")
    pytest.skip("redis-server and redis-sentinel are not installed (apt-get install redis-server redis-sentinel)")


@dataclass
class SentinelSet:
    workdir: Path
    master_port: int
    replica_port: int
    sentinel_ports: list[int]
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        """The product's settings for these sentinels (README: Redis Sentinel)."""
        return {"REDIS_SENTINELS": ",".join(f"127.0.0.1:{port}" for port in self.sentinel_ports),
                "REDIS_SENTINEL_MASTER": MASTER_NAME}

    def master(self) -> str:
        """The master as the first sentinel that answers names it, "host:port"."""
        for port in self.sentinel_ports:
            try:
                with redis.Redis(port=port, socket_timeout=0.5, socket_connect_timeout=0.5) as client:
                    host, master_port = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                    return f"{host.decode()}:{master_port}"
            except (redis.RedisError, TypeError):
                continue
        raise RuntimeError("no sentinel names a master")

    def kill_master(self) -> None:
        """SIGKILL the current master (no chance to hand over anything)."""
        port = int(self.master().rsplit(":", 1)[1])
        name = "master" if port == self.master_port else "replica"
        self.processes[name].kill()
        self.processes[name].wait(timeout=10)

    def wait_for_new_master(self, old: str, timeout: float = 30) -> tuple[str, float]:
        """(the new master, time.monotonic() when a sentinel first named it)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                now = self.master()
            except RuntimeError:
                now = old
            if now != old:
                return now, time.monotonic()
            time.sleep(0.05)
        raise TimeoutError(f"the sentinels still name {old} after {timeout}s\n{self.logs()}")

    def wait_until_ready(self, timeout: float = 30) -> None:
        """The replica is in sync and every sentinel knows the replica and the other two: only
        then can a failover happen."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready():
                return
            time.sleep(0.1)
        raise TimeoutError(f"the sentinels did not settle in {timeout}s\n{self.logs()}")

    def _ready(self) -> bool:
        try:
            with redis.Redis(port=self.replica_port, socket_timeout=0.5) as replica:
                if replica.info("replication").get("master_link_status") != "up":
                    return False
            for port in self.sentinel_ports:
                with redis.Redis(port=port, socket_timeout=0.5) as sentinel:
                    state = sentinel.sentinel_master(MASTER_NAME)
                    if int(state["num-other-sentinels"]) < 2 or int(state["num-slaves"]) < 1:
                        return False
            return True
        except redis.RedisError:
            return False

    def logs(self) -> str:
        return "\n".join(f"--- {path.name}\n" + "\n".join(path.read_text(errors="replace").splitlines()[-15:])
                         for path in sorted(self.workdir.glob("*.log")))


def _sentinel_config(workdir: Path, port: int, master_port: int) -> Path:
    config = workdir / f"sentinel-{port}.conf"
    config.write_text(f"""port {port}
bind 127.0.0.1
dir {workdir}
logfile {workdir / f"sentinel-{port}.log"}
sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2
sentinel down-after-milliseconds {MASTER_NAME} 1000
sentinel failover-timeout {MASTER_NAME} 5000
sentinel parallel-syncs {MASTER_NAME} 1
""")
    return config


@contextmanager
def sentinel_set(workdir: Path) -> Iterator[SentinelSet]:
    """Start the five processes, wait until a failover could happen, stop them all on exit."""
    server, sentinel = require_sentinel()
    workdir.mkdir(parents=True, exist_ok=True)
    ports = [stack.free_port() for _ in range(5)]
    cluster = SentinelSet(workdir, ports[0], ports[1], ports[2:])

    def start(name: str, args: list[str], port: int) -> None:
        process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        cluster.processes[name] = process
        stack.wait_for_port(port, timeout=15, process=process)

    def server_args(port: int, name: str) -> list[str]:
        return [server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--dir", str(workdir), "--logfile", str(workdir / f"{name}.log"), "--maxclients", "10000"]

    try:
        start("master", server_args(cluster.master_port, "master"), cluster.master_port)
        start("replica", [*server_args(cluster.replica_port, "replica"), "--replicaof", "127.0.0.1",
                          str(cluster.master_port)], cluster.replica_port)
        for port in cluster.sentinel_ports:
            start(f"sentinel-{port}", [sentinel, str(_sentinel_config(workdir, port, cluster.master_port))], port)
        cluster.wait_until_ready()
        yield cluster
    finally:
        for process in cluster.processes.values():
            if process.poll() is None:
                process.terminate()
        for process in cluster.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
