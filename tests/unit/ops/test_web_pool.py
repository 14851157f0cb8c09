"""The web pool's sockets and restarts (basic/ops/web_pool.py), without Django: Daphne's part is
checked through the function it calls on an inherited socket (basic/realtime/server.py)."""
import socket
import subprocess
import sys

import pytest

from basic.ops import stack, web_pool
from basic.realtime import server


def connects(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@pytest.mark.skipif(not web_pool.REUSEPORT, reason="SO_REUSEPORT balancing is Linux's")
def test_each_process_gets_a_socket_on_the_port_that_takes_connections_only_once_it_listens():
    port = stack.free_port()
    first, second = web_pool.bound_socket("127.0.0.1", port), web_pool.bound_socket("127.0.0.1", port)
    try:
        assert not connects(port)  # bound, not listening: a process still starting gets nothing
        server.listen_on_inherited(first.fileno())  # what a Daphne started with --fd does when ready
        assert connects(port)
        server.listen_on_inherited(second.fileno())
        accepted = set()
        for _ in range(200):  # the kernel spreads connections over both listening sockets
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                for sock in (first, second):
                    sock.setblocking(False)
                    try:
                        sock.accept()[0].close()
                        accepted.add(sock.fileno())
                    except BlockingIOError:
                        pass
        assert accepted == {first.fileno(), second.fileno()}
    finally:
        first.close()
        second.close()


def test_an_inherited_socket_listens_with_the_servers_backlog_and_stays_open():
    sock = web_pool.bound_socket("127.0.0.1", 0, reuse_port=False)
    try:
        endpoint = f"fd:fileno={sock.fileno()}"
        assert server.with_backlog(endpoint) == endpoint  # Daphne's own description, unchanged
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert connects(sock.getsockname()[1])
    finally:
        sock.close()
    assert server.with_backlog("tcp:port=1:interface=127.0.0.1").endswith(f":backlog={server.LISTEN_BACKLOG}")


class FakeChildren:
    """Stands in for Daphne: each start is a `sleep` that the test can end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen] = []

    def __call__(self, pool: web_pool.WebPool, slot: int) -> subprocess.Popen:
        child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
        self.started.append(child)
        return child


@pytest.fixture
def pool(monkeypatch):
    children = FakeChildren()
    monkeypatch.setattr(web_pool.WebPool, "_start_child", lambda self, slot: children(self, slot))
    monkeypatch.setattr(web_pool.WebPool, "wait_until_serving", lambda self, timeout: None)
    pool = web_pool.WebPool(stack.free_port(), 2, {})
    pool.start()
    yield pool, children
    pool.stop()


def test_a_child_that_dies_is_started_again_on_a_new_socket(pool, monkeypatch):
    pool, children = pool
    monkeypatch.setattr(web_pool, "START_FAILURE_SECONDS", 0.0)  # as if it had run long enough
    assert pool.replace_exited() == []
    dead = pool.children[0]
    old_socket = pool.sockets[0]
    dead.kill()
    dead.wait()
    assert pool.replace_exited() == [-9]
    assert pool.children[0] is children.started[-1] and pool.children[0].poll() is None
    assert pool.children[1] is children.started[1]  # the other was left alone
    assert pool.restarts == 1
    if web_pool.REUSEPORT:  # new connections stop going to the dead one's queue
        assert old_socket.fileno() == -1 and pool.sockets[0] is not old_socket


def test_a_child_that_dies_during_start_up_stops_the_pool_instead_of_looping(pool):
    pool, children = pool
    pool.children[1].kill()
    pool.children[1].wait()
    with pytest.raises(web_pool.WebPoolFailed, match="web process 1 exited with -9 during start-up"):
        pool.replace_exited()
    assert len(children.started) == 2


def test_the_url_a_pool_is_checked_on():
    assert web_pool.local_url("0.0.0.0", 8000, "/healthz") == "http://127.0.0.1:8000/healthz"
    assert web_pool.local_url("::", 8000, "/healthz") == "http://[::1]:8000/healthz"
    assert web_pool.local_url("127.0.0.1", 81, "/") == "http://127.0.0.1:81/"


@pytest.mark.parametrize("value", ["0", "-1", "257", "two"])
def test_web_processes_out_of_range_stops_start_up(value):
    done = subprocess.run([sys.executable, "-c", "import app.settings"], cwd=stack.BASE_DIR, capture_output=True,
                          text=True, env={"PATH": "/usr/bin:/bin", "LISTEN_LOOPBACK_ONLY": "1", "WEB_PROCESSES": value})
    assert done.returncode != 0
    assert "WEB_PROCESSES" in done.stderr or "invalid literal" in done.stderr


def test_web_processes_defaults_to_the_number_of_cores():
    import os

    done = subprocess.run([sys.executable, "-c", "import app.settings as s; print(s.WEB_PROCESSES)"],
                          cwd=stack.BASE_DIR, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "LISTEN_LOOPBACK_ONLY": "1"})
    assert done.stdout.strip() == str(os.cpu_count() or 1), done.stderr


def test_only_a_pool_on_loopback_promises_loopback_to_its_processes(monkeypatch):
    """LISTEN_LOOPBACK_ONLY lets the built-in SECRET_KEY through: a pool bound to 0.0.0.0
    (compose's `web`) must not hand its processes that promise."""
    seen: list[dict[str, str]] = []

    class Captured:
        def __init__(self, args, env, pass_fds, **kwargs):
            seen.append(env)
            assert pass_fds == (7,) and args[args.index("--fd") + 1] == "7"

    monkeypatch.setattr(stack.subprocess, "Popen", Captured)
    monkeypatch.delenv("LISTEN_LOOPBACK_ONLY", raising=False)
    stack.start_daphne(8000, {}, fd=7, loopback_only=False)
    stack.start_daphne(8000, {}, fd=7)
    assert "LISTEN_LOOPBACK_ONLY" not in seen[0] and seen[1]["LISTEN_LOOPBACK_ONLY"] == "1"
    assert seen[0]["PORT"] == "8000"
    assert "0.0.0.0" not in web_pool.LOOPBACK_HOSTS and "127.0.0.1" in web_pool.LOOPBACK_HOSTS
