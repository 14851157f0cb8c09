"""Several Daphne processes serving one port (WEB_PROCESSES, default a process per core): the pool
binds the sockets itself and hands one to each child by file descriptor (Daphne's `--fd`,
the layout the Channels deployment docs describe), and starts a child again when it dies.

On Linux each child gets a socket of its own, all bound to the port with SO_REUSEPORT, so the
kernel spreads new connections evenly over the children. One socket shared by all of them (what
other systems get) is spread by whoever accepts first, and Twisted accepts a whole batch per
wake-up: 1,000 sockets opened at once went 807/193 to two processes, so one did most of the work.
The pool only binds; a child starts listening once its application is loaded
(basic/realtime/server.py), so the kernel never hands a connection to a process still starting.
When a child dies its socket is closed at once: every new connection then goes to the children
still running (the few waiting in the dead one's queue are reset and their clients retry), and
its replacement gets a new socket.
"""
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

from basic.ops import stack

# Per-child sockets need the kernel to balance SO_REUSEPORT listeners, which Linux does; elsewhere
# (BSD, macOS) the last one bound would take every connection, so the children share one socket.
REUSEPORT = sys.platform == "linux" and hasattr(socket, "SO_REUSEPORT")

# A child that exits sooner than this after it was started never got going (a settings error, a
# broken module): starting it again would only loop, so the pool gives up and its owner stops.
# Django and Daphne start in 2-4 s on a busy 2-core box.
START_FAILURE_SECONDS = 10.0

# A pool bound to one of these tells its processes LISTEN_LOOPBACK_ONLY (basic/ops/stack.py); one
# bound beyond (compose's 0.0.0.0) does not, so the built-in SECRET_KEY stays refused there.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


class WebPoolFailed(RuntimeError):
    """A web process failed at start-up; restarting it would fail the same way."""


def bound_socket(host: str, port: int, reuse_port: bool = REUSEPORT) -> socket.socket:
    """A TCP socket bound to host:port (one of several with `reuse_port`), not listening yet: the
    Daphne it is passed to listens once it is ready."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # restart at once after a stop
    if reuse_port:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host.strip("[]"), port))
    return sock


def local_url(host: str, port: int, path: str) -> str:
    """The URL of `path` on a server bound to host:port, as seen from this machine."""
    host = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host).strip("[]")
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


class WebPool:
    """`processes` Daphne children serving host:port, started by `start()`."""

    def __init__(self, port: int, processes: int, env: dict[str, str], host: str = "127.0.0.1",
                 daphne_args: Sequence[str] = (), log_dir: Path | None = None) -> None:
        if processes < 1:
            raise ValueError("a web pool needs at least one process")
        self.port, self.host, self.size = port, host, processes
        self.env, self.daphne_args, self.log_dir = env, list(daphne_args), log_dir
        self.sockets: list[socket.socket] = []
        self.children: list[subprocess.Popen] = []
        self.started_at: list[float] = []
        self.restarts = 0

    def start(self, timeout: float = 60.0) -> None:
        """Bind, start every child, and return once the port answers `/healthz` (a child serves)."""
        shared = None if REUSEPORT else bound_socket(self.host, self.port)
        for slot in range(self.size):
            self.sockets.append(shared or bound_socket(self.host, self.port))
            self.children.append(self._start_child(slot))
            self.started_at.append(time.monotonic())
        self.wait_until_serving(timeout)

    def wait_until_serving(self, timeout: float) -> None:
        url = local_url(self.host, self.port, "/healthz")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.replace_exited()  # raises if a child fails at start-up
            try:
                with urllib.request.urlopen(url, timeout=2) as answer:
                    if answer.status == 200:
                        return
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.2)
        raise TimeoutError(f"no web process answered {url} after {timeout}s")

    def replace_exited(self) -> list[int]:
        """Start again every child that has exited; returns their exit codes. Raises WebPoolFailed
        for one that exited within START_FAILURE_SECONDS of its start."""
        codes = []
        for slot, child in enumerate(self.children):
            code = child.poll()
            if code is None:
                continue
            if time.monotonic() - self.started_at[slot] < START_FAILURE_SECONDS:
                raise WebPoolFailed(f"web process {slot} exited with {code} during start-up")
            if REUSEPORT:  # new connections go to the others from now; the replacement gets a new socket
                self.sockets[slot].close()
                self.sockets[slot] = bound_socket(self.host, self.port)
            self.children[slot] = self._start_child(slot)
            self.started_at[slot] = time.monotonic()
            self.restarts += 1
            codes.append(code)
        return codes

    def keep_running(self, say: Callable[[str], object]) -> bool:
        """`replace_exited` for a supervisor's loop: says what it restarted; False when a child
        failed at start-up (the supervisor then stops)."""
        try:
            for code in self.replace_exited():
                say(f"A web process exited with {code}; started another.")
        except WebPoolFailed as failed:
            say(f"{failed}; stopping.")
            return False
        return True

    def pids(self) -> list[int]:
        return [child.pid for child in self.children]

    def stop(self) -> None:
        for child in self.children:
            stack.stop(child)
        for sock in self.sockets:
            sock.close()  # a shared one more than once, which is harmless
        self.sockets = []

    def _start_child(self, slot: int) -> subprocess.Popen:
        log = self.log_dir / f"daphne-{slot}.log" if self.log_dir else None
        return stack.start_daphne(self.port, self.env, log=log, fd=self.sockets[slot].fileno(),
                                  extra_args=self.daphne_args, loopback_only=self.host in LOOPBACK_HOSTS)
