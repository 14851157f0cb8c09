"""The compose file's nginx (deploy/nginx.conf.template), checked and run by the real binary.

Without nginx on PATH its tests skip locally and fail in CI (`CI` set), like PostgreSQL's
(tests/databases.py); .ci/run installs Debian's package."""
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from basic.ops import stack
from tests import databases

TEMPLATE = stack.BASE_DIR / "deploy" / "nginx.conf.template"


def require_nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx", "/usr/local/sbin/nginx")
                                           if os.access(p, os.X_OK)), None)
    if found:
        return found
    if databases.in_ci():
        pytest.fail("nginx is not installed; CI is set, so the compose proxy's tests must run (.ci/run)")
    pytest.skip("nginx is not installed (apt-get install nginx)")


def render(max_body_bytes: int, upstream: str | None = None, listen: str | None = None) -> str:
    """The template as the nginx image renders it (envsubst of REQUEST_MAX_BODY_BYTES only), and
    optionally pointed at another upstream and port than compose's `web:8000` and 8000."""
    text = TEMPLATE.read_text().replace("${REQUEST_MAX_BODY_BYTES}", str(max_body_bytes))
    assert "${" not in text, "the template uses a variable compose does not give nginx"
    if upstream:
        text = text.replace("http://web:8000", upstream)
    if listen:
        text = text.replace("listen 8000;", f"listen {listen};")
    return text


# How docs/deploy.md's upstream lines take a web process out of rotation: after 3 failed attempts
# within 5 s, for 5 s. nginx's default (1 failure, 10 s) took the survivor of a kill out too, on
# one reset connection during the reconnect storm, and answered every request 502 for 10 s.
UPSTREAM_SERVER_PARAMS = "max_fails=3 fail_timeout=5s"


def render_balancer(max_body_bytes: int, backends: list[str], listen: str) -> str:
    """The template in front of several web processes: docs/deploy.md's recipe, an `upstream` group
    with a line per process, which the template's `$web` then names (nginx looks a proxy_pass
    variable up among its upstream groups before asking the resolver)."""
    servers = "".join(f"    server {backend} {UPSTREAM_SERVER_PARAMS};\n" for backend in backends)
    return f"upstream jobs_web {{\n{servers}}}\n\n" + render(max_body_bytes, "http://jobs_web", listen)


def write_config(workdir: Path, site: str, worker_connections: int = 256) -> Path:
    """A main nginx.conf around `site` (the image's own holds little more), every path in `workdir`.
    A proxied socket takes two connections (the client's and Daphne's): 1,000 sockets need 2,000."""
    workdir.mkdir(parents=True, exist_ok=True)
    (workdir / "site.conf").write_text(site)
    temp = "\n".join(f"    {kind}_temp_path {workdir / kind};" for kind in
                     ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    config = workdir / "nginx.conf"
    config.write_text(f"""{"user root;" if os.geteuid() == 0 else ""}
daemon off;
worker_processes 1;
worker_rlimit_nofile {worker_connections * 2};
pid {workdir / "nginx.pid"};
error_log {workdir / "error.log"} warn;
events {{ worker_connections {worker_connections}; }}
http {{
    access_log off;
{temp}
    include {workdir / "site.conf"};
}}
""")
    return config


def check(binary: str, config: Path) -> subprocess.CompletedProcess:
    return subprocess.run([binary, "-t", "-p", str(config.parent), "-c", str(config),
                           "-e", str(config.parent / "error.log")], capture_output=True, text=True, timeout=30)


@contextmanager
def running(binary: str, config: Path, port: int) -> Iterator[subprocess.Popen]:
    process = subprocess.Popen([binary, "-p", str(config.parent), "-c", str(config), "-e",
                                str(config.parent / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        stack.wait_for_port(port, timeout=15, process=process)
        yield process
    finally:
        process.send_signal(signal.SIGQUIT)  # graceful stop of this nginx (its master, then its worker)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
