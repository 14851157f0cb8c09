"""Request bodies over REQUEST_MAX_BODY_BYTES are refused by the real web server before it reads
them (basic/realtime/body_limit.py): a declared length at once, a chunked body once it passes the
cap, and neither grows the process; the largest legitimate body (a thumbnails upload) still works.
Also the server's own error answers are JSON: Twisted's for malformed HTTP, Daphne's under /api/.
And compose's nginx (deploy/nginx.conf.template), run in front of the same server, keeps the same
cap, passes the largest upload and WebSocket upgrades."""
import asyncio
import io
import json
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import pytest
import websockets
from django.conf import settings
from PIL import Image

from basic.ops import stack
from basic.realtime.body_limit import too_large_detail
from tests import nginx
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

MB = 1024 * 1024


@pytest.fixture(scope="module")
def live(stack_root):
    # No worker: the uploads here only need accepting; the job may stay queued.
    with live_stack(stack_root, "body-limit", worker=False) as running:
        yield running


def connect(live: LiveStack) -> socket.socket:
    address = urlsplit(live.base_url)
    sock = socket.create_connection((address.hostname, address.port), timeout=10)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
    return sock


def read_answer(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """The whole answer, read until the server closes: status, headers (lower-case names), body."""
    sock.settimeout(timeout)
    data = b""
    while True:
        try:
            piece = sock.recv(65536)
        except ConnectionResetError:
            break
        if not piece:
            break
        data += piece
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = dict((name.strip().lower(), value.strip()) for name, value in
                   (line.split(":", 1) for line in lines[1:] if ":" in line))
    return int(lines[0].split()[1]), headers, body


def memory_kb(pid: int) -> dict[str, int]:
    """VmRSS (now) and VmHWM (the peak so far) of a process, in kB."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            fields[name] = int(value.split()[0])
    return fields


def head(live: LiveStack, extra: str) -> bytes:
    return (f"POST /api/students/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {live.token}\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n").encode()


def assert_too_large(status: int, headers: dict[str, str], body: bytes) -> None:
    assert status == 413, body
    assert headers["content-type"] == "application/json"
    assert headers["connection"] == "close"
    assert json.loads(body) == {"detail": too_large_detail(settings.REQUEST_MAX_BODY_BYTES)}


@pytest.mark.parametrize("expect_continue", [False, True])
def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_read(live: LiveStack, expect_continue):
    """Headers and 64 KB of a 100 MB body: the 413 comes at once (never a `100 Continue`), so the
    server waited for none of the rest."""
    with connect(live) as sock:
        sock.sendall(head(live, f"Content-Length: {100 * MB}\r\n"
                                + ("Expect: 100-continue\r\n" if expect_continue else "")))
        if not expect_continue:
            sock.sendall(b"x" * 65536)
        started = time.monotonic()
        status, headers, body = read_answer(sock)
        assert time.monotonic() - started < 5  # not the lingering's end: the answer came first
    assert_too_large(status, headers, body)


def test_a_chunked_body_is_refused_once_past_the_cap_and_never_kept(live: LiveStack):
    """200 MB chunked, as fast as the server takes it: a 413 once 23 MB are in, and the web
    process's peak memory grows by far less than the body (before the cap, it kept all of it)."""
    pid = live.processes["daphne"].pid
    before = memory_kb(pid)
    chunk = b"%x\r\n%s\r\n" % (MB, b"y" * MB)
    sent = 0
    with connect(live) as sock:
        sock.sendall(head(live, "Transfer-Encoding: chunked\r\n"))
        try:
            while sent < 200 * MB:
                sock.sendall(chunk)
                sent += MB
            sock.sendall(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server ended the connection after its answer; read what it said
        status, headers, body = read_answer(sock)
    assert_too_large(status, headers, body)
    after = memory_kb(pid)
    grown_mb = (after["VmHWM"] - before["VmHWM"]) / 1024
    assert grown_mb < 40, f"the web process's peak grew {grown_mb:.0f} MB for a refused body ({before} → {after})"
    # And it still serves.
    assert httpx.get(f"{live.base_url}/api/students/", headers=live.headers, timeout=10).status_code == 200


def near_limit_png() -> bytes:
    """A valid PNG just under THUMBNAIL_MAX_BYTES (stored, not compressed, so its size is known)."""
    side = int(((settings.THUMBNAIL_MAX_BYTES - 32 * 1024) / 3) ** 0.5)
    pixels = (bytes(range(256)) * (side * side * 3 // 256 + 1))[:side * side * 3]
    noise = Image.frombytes("RGB", (side, side), pixels)
    out = io.BytesIO()
    noise.save(out, format="PNG", compress_level=0)
    data = out.getvalue()
    assert settings.THUMBNAIL_MAX_BYTES - 64 * 1024 < len(data) <= settings.THUMBNAIL_MAX_BYTES
    return data


@pytest.fixture(scope="module")
def largest_upload() -> tuple[dict, dict]:
    """An image just under THUMBNAIL_MAX_BYTES plus form fields just under Django's 2.5 MB."""
    files = {"image": ("big.png", near_limit_png(), "image/png")}
    # An extra field, which Django counts against DATA_UPLOAD_MAX_MEMORY_SIZE and DRF ignores.
    return files, {"sizes": "64x64", "note": "n" * (settings.DATA_UPLOAD_MAX_MEMORY_SIZE - 1024)}


def post_upload(base_url: str, live: LiveStack, upload: tuple[dict, dict]) -> httpx.Response:
    files, fields = upload
    request = httpx.Request("POST", f"{base_url}/api/thumbnails/", headers=live.headers, files=files, data=fields)
    size = len(request.read())
    assert settings.REQUEST_MAX_BODY_BYTES - 128 * 1024 < size <= settings.REQUEST_MAX_BODY_BYTES
    with httpx.Client(timeout=60) as http:
        return http.send(request)


def test_the_largest_legitimate_body_a_thumbnails_upload_still_works(live: LiveStack, largest_upload):
    """Within 128 KB of the cap (64 KB of it the framing allowance), and accepted."""
    answer = post_upload(live.base_url, live, largest_upload)
    assert answer.status_code == 202, answer.text


def test_malformed_http_is_a_json_400_that_closes_the_connection(live: LiveStack):
    """Twisted answered `HTTP/1.1 400 Bad Request` with no body and no content type."""
    with connect(live) as sock:
        sock.sendall(b"GET /api/jobs/ HTTP/1.1\r\nHost: 127.0.0.1\r\nno colon in this header\r\n\r\n")
        status, headers, body = read_answer(sock)
    assert status == 400 and headers["content-type"] == "application/json", body
    assert "not valid HTTP" in json.loads(body)["detail"]


def test_daphnes_own_errors_under_api_are_json(live: LiveStack):
    """A header value with a byte HTTP forbids (a vertical tab) is refused by Daphne before Django;
    under /api/ that answer is JSON too, elsewhere Daphne's page."""
    for path, json_expected in ((b"/api/jobs/", True), (b"/", False)):
        with connect(live) as sock:
            sock.sendall(b"GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Note: a\x0bb\r\nConnection: close\r\n\r\n" % path)
            status, headers, body = read_answer(sock)
        assert status == 400, body
        assert headers["content-type"].startswith("application/json" if json_expected else "text/html"), headers
        if json_expected:
            assert json.loads(body) == {"detail": "Invalid header value."}


def test_compose_nginx_in_front_keeps_the_cap_and_passes_uploads_and_sockets(live: LiveStack, largest_upload,
                                                                              tmp_path):
    binary = nginx.require_nginx()
    port = stack.free_port()
    site = nginx.render(settings.REQUEST_MAX_BODY_BYTES, upstream=live.base_url, listen=f"127.0.0.1:{port}")
    config = nginx.write_config(tmp_path / "nginx", site)
    proxy = f"http://127.0.0.1:{port}"
    with nginx.running(binary, config, port):
        assert httpx.get(f"{proxy}/api/jobs/", headers=live.headers, timeout=10).status_code == 200
        # nginx's own 413, before reading: JSON like the server's.
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(head(live, f"Content-Length: {100 * MB}\r\n") + b"x" * 65536)
            status, headers, body = read_answer(sock)
        assert status == 413 and headers["content-type"] == "application/json", body
        assert json.loads(body) == {"detail": too_large_detail(settings.REQUEST_MAX_BODY_BYTES)}
        assert httpx.get(f"{proxy}/metrics", timeout=10).status_code == 404  # scraped inside only
        answer = post_upload(proxy, live, largest_upload)
        assert answer.status_code == 202, answer.text

        async def socket_opens() -> None:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws/events/?token={live.token}",
                                          open_timeout=10) as feed:
                await feed.ping()

        asyncio.run(socket_opens())
