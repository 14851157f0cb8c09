"""Samples of what could leak: each stack process's memory (RSS), open files and the client
sockets it still holds, and Redis's keys by family."""
import re
from collections import Counter
from dataclasses import dataclass, field

import psutil

from tests.soak.stack import SoakStack


@dataclass(frozen=True)
class ProcessSample:
    role: str
    pid: int
    created: float
    rss: int
    fds: int
    connections: int  # TCP connections in any state but LISTEN
    served: int  # established connections to it, on a port of the stack (clients of nginx, web, Redis...)
    port: int | None  # that port
    outgoing: tuple[tuple[str, int], ...] = ()  # established connections it opened, by "server:port"

    @property
    def identity(self) -> tuple[int, float]:
        return self.pid, self.created

    @property
    def other_fds(self) -> int:
        """Open files that are not connections: files, pipes, listening sockets, event fds."""
        return self.fds - self.connections

    @property
    def client_sockets(self) -> int:
        """Connections from clients still open on a web process or nginx."""
        return self.served if self.role in ("daphne", "nginx") else 0


@dataclass
class Sample:
    processes: list[ProcessSample]

    @property
    def rss(self) -> int:
        return sum(p.rss for p in self.processes)

    @property
    def fds(self) -> int:
        return sum(p.fds for p in self.processes)

    def by_identity(self) -> dict[tuple[int, float], ProcessSample]:
        return {p.identity: p for p in self.processes}

    def unaccounted(self) -> dict[str, int]:
        """Connections a Redis server, sentinel or PostgreSQL still holds whose other end is no
        process of the stack (a killed client's that the server never closed), by server:port."""
        opened = Counter[str]()
        for process in self.processes:
            opened.update(dict(process.outgoing))
        held = Counter[str]()
        for process in self.processes:
            if process.port is not None and process.role not in ("daphne", "nginx"):
                held[f"{process.role.split('-')[0]}:{process.port}"] += process.served
        return {server: n - opened[server] for server, n in held.items() if n > opened[server]}


def port_names(stack: SoakStack) -> dict[int, str]:
    names = {stack.web_port: "web", stack.proxy_port: "nginx", stack.postgres.port: "postgres",
             stack.sentinels.master_port: "redis", stack.sentinels.replica_port: "redis",
             int(stack.page_host.rsplit(":", 1)[1]): "pages"}
    return names | {port: "sentinel" for port in stack.sentinels.sentinel_ports}


def sample_processes(stack: SoakStack) -> Sample:
    names = port_names(stack)
    found = []
    for role, process in stack.processes():
        try:
            with process.oneshot():
                rss, fds, created = process.memory_info().rss, process.num_fds(), process.create_time()
                connections = process.net_connections("tcp")
        except psutil.Error:
            continue
        listening = {c.laddr.port for c in connections if c.status == psutil.CONN_LISTEN} & names.keys()
        established = [c for c in connections if c.status == psutil.CONN_ESTABLISHED and c.raddr]
        served = [c for c in established if c.laddr.port in names and c.laddr.port != c.raddr.port
                  and (c.laddr.port in listening or role in ("postgres", "daphne"))]
        outgoing = Counter(f"{names.get(c.raddr.port, 'other')}:{c.raddr.port}" for c in established
                           if c not in served)
        port = next(iter(listening), None) or (served[0].laddr.port if served else None)
        found.append(ProcessSample(role, process.pid, created, rss, fds,
                                   sum(c.status != psutil.CONN_LISTEN for c in connections), len(served), port,
                                   tuple(sorted(outgoing.items()))))
    return Sample(found)


JOB_KEY = re.compile(r"^jobs:[0-9a-f-]{36}:(events|seq|lease|queued)$")
BATCH_KEY = re.compile(r"^batches:[0-9a-f-]{36}:(events|seq|members|aggregate)$")
JOB_FAMILIES = {"events": "job history", "seq": "job history", "lease": "lease", "queued": "queue marker"}


@dataclass
class KeySample:
    families: dict[str, int] = field(default_factory=dict)
    expiring: list[tuple[str, int]] = field(default_factory=list)  # (lease or queue marker key, its TTL)
    other: list[str] = field(default_factory=list)  # the keys of family "other", for the report


def family(key: str, prefix: str) -> str:
    """Job and batch history (kept JOB_EVENTS_TTL_SECONDS by design), leases and queue markers
    (bounded by their TTLs), the TTL caches, and the rest (queues, chat, limits, liveness)."""
    if found := JOB_KEY.match(key):
        return JOB_FAMILIES[found[1]]
    if BATCH_KEY.match(key):
        return "batch history"
    if key.startswith(f"{prefix}:pages:"):
        return "page cache"
    if key.startswith(f"{prefix}:1:"):
        return "django cache"
    return "other"


def sample_keys(stack: SoakStack) -> KeySample:
    prefix = stack.env["CHANNEL_PREFIX"]
    sample = KeySample()
    with stack.redis_master_client() as client:
        for raw in client.scan_iter(count=1000):
            key = raw.decode(errors="replace")
            kind = family(key, prefix)
            sample.families[kind] = sample.families.get(kind, 0) + 1
            if kind in ("lease", "queue marker"):
                sample.expiring.append((key, int(client.ttl(raw))))
            elif kind == "other":
                sample.other.append(key)
    return sample
