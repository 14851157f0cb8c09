import os
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from basic.ops import stack


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on."""
    return stack.free_port()


@pytest.fixture
def hanging_port():
    """A server that accepts connections and never answers: a hung dependency."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(50)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


# The environment docs/deploy.md documents for production (behind a TLS proxy).
PRODUCTION_ENV = {
    "SECRET_KEY": "x7Gq2pVw9Lr4Tz8Kd1Mb6Nc3Hf5Js0Ya-Ue_Wi7Oo2Pq9Rr4Ss8Tt1Uu6Vv3Ww5",
    "DEBUG": "0",
    "ALLOWED_HOSTS": "jobs.example.com",
    "CSRF_TRUSTED_ORIGINS": "https://jobs.example.com",
    "WS_ALLOWED_ORIGINS": "https://jobs.example.com",
    "SECURE_PROXY_SSL_HEADER": "HTTP_X_FORWARDED_PROTO,https",
    "SECURE_SSL_REDIRECT": "1",
    "SESSION_COOKIE_SECURE": "1",
    "CSRF_COOKIE_SECURE": "1",
    "SECURE_HSTS_SECONDS": "31536000",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS": "1",
    "SECURE_HSTS_PRELOAD": "1",
    "METRICS_TOKEN": "a-long-random-scrape-token",
    "LOG_FORMAT": "json",
}

# Settings the test session sets or a developer may have exported; subprocess tests start clean.
_CLEARED = ("LISTEN_LOOPBACK_ONLY", "DEBUG", "SECRET_KEY", "LOG_FORMAT", "SECURE_SSL_REDIRECT", "ALLOWED_HOSTS",
            "WS_ALLOWED_ORIGINS", "SECURE_PROXY_SSL_HEADER", "METRICS_TOKEN", "PORT")


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    """`python manage.py ARGS` with the given settings environment (and nothing of the test session's)."""
    base = {key: value for key, value in os.environ.items() if key not in _CLEARED}
    return subprocess.run([sys.executable, "manage.py", *args], cwd=Path(stack.BASE_DIR), env={**base, **env},
                          capture_output=True, text=True, timeout=60)
