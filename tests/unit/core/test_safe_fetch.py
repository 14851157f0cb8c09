"""basic.core.fetch: the SSRF guard, checked against real HTTP servers on 127.0.0.1.

The guard refuses loopback, so every "it works" test has to list the server in allowed_hosts, and the
matching "refused" test uses the very same server without it: if the guard were removed, those fail.
"""

from __future__ import annotations

import datetime
import gzip
import http.server
import ipaddress
import socket
import ssl
import threading
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path

import pytest

from basic.core.fetch import (
    FetchFailed,
    FetchRefused,
    FetchResult,
    check_url,
    fetch_public,
    network,
    normalise_url,
    urls,
)

LIMIT = 100_000


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
        pass

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Length": str(len(body)), **(headers or {})}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self.server.seen.append({"path": self.path, "headers": dict(self.headers)})  # type: ignore[attr-defined]
        parsed = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(parsed.query)
        path = parsed.path
        if path == "/hello":
            self._send(200, b"<p>hello</p>", {"Content-Type": "text/html; charset=utf-8"})
        elif path == "/plain":
            self._send(200, b"no type")
        elif path == "/missing":
            self._send(404, b"not here", {"Content-Type": "text/plain"})
        elif path.startswith("/chain/"):  # /chain/N redirects N times, then answers
            n = int(path.rsplit("/", 1)[1])
            if n:
                self._send(302, headers={"Location": f"/chain/{n - 1}"})
            else:
                self._send(200, b"end of chain", {"Content-Type": "text/plain"})
        elif path == "/to":
            self._send(int(query.get("status", ["302"])[0]), headers={"Location": query["url"][0]})
        elif path == "/big":
            self._send(200, b"x" * 5000, {"Content-Type": "text/plain"})
        elif path == "/big-chunked":
            self.send_response(200)
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            for _ in range(10):
                self.wfile.write(b"1f4\r\n" + b"y" * 500 + b"\r\n")
            self.wfile.write(b"0\r\n\r\n")
        elif path == "/big-close":  # no length at all: the body ends when the connection closes
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(b"z" * 5000)
            self.close_connection = True
        elif path == "/gzip":
            self._send(200, gzip.compress(b"squeezed " * 100), {"Content-Encoding": "gzip"})
        elif path == "/gzip-bomb":  # 10 MB of zeros in ~10 kB
            self._send(200, gzip.compress(b"\0" * 10_000_000), {"Content-Encoding": "gzip"})
        else:
            self._send(404)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.seen: list[dict] = []

    @property
    def port(self) -> int:
        return self.server_address[1]

    @property
    def allowed(self) -> frozenset[str]:
        return frozenset({f"127.0.0.1:{self.port}"})

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


def _serve(server: http.server.HTTPServer) -> Iterator[http.server.HTTPServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture()
def server() -> Iterator[_Server]:
    yield from _serve(_Server())


@pytest.fixture()
def other_server() -> Iterator[_Server]:
    yield from _serve(_Server())


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --- check_url / normalise_url -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "file:///etc/passwd",
        "gopher://example.com/_SET%20x",
        "ftp://example.com/file",
        "javascript:alert(1)",
        "//example.com/no-scheme",
        "http://user:pass@example.com/",
        "http://user@example.com/",
        "http:///path-only",
        "http://example.com:0/",
        "http://example.com:65536/",
        "http://example.com:99999/",
        "http://exa mple.com/",
        "http://%31%32%37.0.0.1/",
        "http://[fe80::1%25eth0]/",
        "http://example.com/" + "a" * 2048,
    ],
)
def test_check_url_refuses_bad_urls(url: str) -> None:
    with pytest.raises(FetchRefused) as info:
        check_url(url)
    assert str(info.value).endswith(".")  # a sentence, not a repr


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://127.1/",
        "http://2130706433/",
        "http://0x7f000001/",
        "http://0x7f.1/",
        "http://0177.0.1/",
        "http://127.0.0.1./",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::127.0.0.1]/",
        "http://[2002:7f00:1::]/",  # 6to4 wrapping 127.0.0.1
        "http://[64:ff9b::a9fe:a9fe]/",  # NAT64 wrapping 169.254.169.254
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://10.0.0.1/",
        "http://172.16.5.4/",
        "http://192.168.1.1/",
        "http://100.64.0.1/",
        "http://100.100.100.200/",
        "http://192.0.0.192/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[fec0::1]/",
        "http://224.0.0.1/",
        "http://[ff02::1]/",
        "http://0.0.0.0/",
        "http://0/",
        "https://255.255.255.255/",
    ],
)
def test_check_url_refuses_non_public_ip_literals(url: str) -> None:
    with pytest.raises(FetchRefused, match="not a public address"):
        check_url(url)


def test_check_url_passes_public_urls_without_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dns(*args: object, **kwargs: object) -> None:
        raise AssertionError("check_url must not resolve names")

    monkeypatch.setattr(socket, "getaddrinfo", no_dns)
    assert check_url("https://example.com/x") == "https://example.com/x"
    assert check_url("http://8.8.8.8/") == "http://8.8.8.8/"
    assert check_url("http://134744072/") == "http://8.8.8.8/"  # 8.8.8.8 in one number
    assert check_url("http://[2606:4700:4700::1111]/") == "http://[2606:4700:4700::1111]/"
    assert check_url("http://[64:ff9b::808:808]/") == "http://[64:ff9b::808:808]/"  # NAT64 of a public one


def test_check_url_allowed_hosts_exempts_only_that_host_and_port() -> None:
    allowed = frozenset({"127.0.0.1:8123", "LOCALHOST:9000", "[::1]:8123"})
    assert check_url("http://127.0.0.1:8123/x", allowed_hosts=allowed) == "http://127.0.0.1:8123/x"
    assert check_url("http://127.1:8123/", allowed_hosts=allowed) == "http://127.0.0.1:8123/"
    assert check_url("http://[::1]:8123/", allowed_hosts=allowed) == "http://[::1]:8123/"
    for url in ("http://127.0.0.1:8124/", "http://127.0.0.1/", "https://127.0.0.1:443/", "http://127.0.0.2:8123/"):
        with pytest.raises(FetchRefused):
            check_url(url, allowed_hosts=allowed)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("HTTP://ExAmple.COM", "http://example.com/"),
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),
        ("http://example.com/Path?Q=A&b=c#frag", "http://example.com/Path?Q=A&b=c"),
        ("http://example.com?x=1", "http://example.com/?x=1"),
        ("http://bücher.de/", "http://xn--bcher-kva.de/"),
        ("  http://example.com/ ", "http://example.com/"),
        ("http://[2606:4700:4700:0:0::1111]/", "http://[2606:4700:4700::1111]/"),
    ],
)
def test_normalise_url(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_normalise_url_rejects_garbage() -> None:
    with pytest.raises(FetchRefused):
        normalise_url("http://0177.0.0.1/")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("2002:808:808::", True),
        ("127.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("::ffff:10.0.0.1", False),
        ("::ffff:8.8.8.8", True),
        ("2001::1", False),  # Teredo
        ("64:ff9b:1::1", False),
        ("198.18.0.1", False),
    ],
)
def test_public_address_classification(address: str, public: bool) -> None:
    assert urls._is_public_ip(ipaddress.ip_address(address)) is public


# --- fetch_public against real local servers ------------------------------------------------------------


def test_loopback_server_refused_by_default(server: _Server) -> None:
    with pytest.raises(FetchRefused):
        fetch_public(server.url("/hello"), max_bytes=LIMIT, timeout=5)
    assert server.seen == []


def test_allowed_host_is_fetched(server: _Server) -> None:
    result = fetch_public(server.url("/hello#top"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert result == FetchResult(
        url=server.url("/hello"),
        final_url=server.url("/hello"),
        status_code=200,
        content_type="text/html; charset=utf-8",
        body=b"<p>hello</p>",
    )
    assert server.seen[0]["headers"]["User-Agent"] == "live-jobs-page-fetch/1.0"


def test_environment_proxies_are_ignored(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
        monkeypatch.setenv(name, dead)
    result = fetch_public(server.url("/hello"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert result.body == b"<p>hello</p>"


def test_non_2xx_is_a_result_and_missing_content_type_is_empty(server: _Server) -> None:
    missing = fetch_public(server.url("/missing"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert (missing.status_code, missing.body) == (404, b"not here")
    plain = fetch_public(server.url("/plain"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert (plain.status_code, plain.content_type) == (200, "")


def test_hostname_resolving_to_loopback_is_refused_unless_allowed(server: _Server) -> None:
    url = f"http://localhost:{server.port}/hello"
    with pytest.raises(FetchRefused, match="not public"):
        fetch_public(url, max_bytes=LIMIT, timeout=5)
    # allowing the IP does not allow the name, and the reverse
    with pytest.raises(FetchRefused):
        fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    with pytest.raises(FetchRefused):
        fetch_public(
            server.url("/hello"), max_bytes=LIMIT, timeout=5, allowed_hosts=frozenset({f"localhost:{server.port}"})
        )
    assert server.seen == []
    result = fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=frozenset({f"LocalHost:{server.port}"}))
    assert result.body == b"<p>hello</p>"
    assert server.seen[0]["headers"]["Host"] == f"localhost:{server.port}"


def test_relative_redirect_is_followed(server: _Server) -> None:
    result = fetch_public(server.url("/to?url=/hello"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert (result.url, result.final_url) == (server.url("/to?url=/hello"), server.url("/hello"))
    assert result.body == b"<p>hello</p>"


@pytest.mark.parametrize(
    "target",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:{other}/hello",
        "http://localhost:{other}/hello",
        "http://[::1]:{other}/hello",
        "http://0x7f.1:{other}/hello",
        "file:///etc/passwd",
        "gopher://127.0.0.1:{other}/_x",
    ],
)
def test_redirect_to_non_public_target_is_refused(server: _Server, other_server: _Server, target: str) -> None:
    target = target.format(other=other_server.port)
    url = server.url("/to?" + urllib.parse.urlencode({"url": target}))
    with pytest.raises(FetchRefused, match="redirected"):
        fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert other_server.seen == []
    # the same redirect is followed when the target is allowed too: the refusal above came from the guard
    if target.startswith("http://127.0.0.1:"):
        both = server.allowed | other_server.allowed
        assert fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=both).body == b"<p>hello</p>"


@pytest.mark.parametrize("status", [301, 303, 307, 308])
def test_other_redirect_statuses_are_checked_too(server: _Server, status: int) -> None:
    url = server.url(f"/to?status={status}&url=http://10.0.0.1/")
    with pytest.raises(FetchRefused):
        fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)


def test_five_redirects_are_fine_six_are_too_many(server: _Server) -> None:
    result = fetch_public(server.url("/chain/5"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert (result.final_url, result.body) == (server.url("/chain/0"), b"end of chain")
    with pytest.raises(FetchFailed, match="redirected too many times"):
        fetch_public(server.url("/chain/6"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    with pytest.raises(FetchFailed, match="too many"):
        fetch_public(server.url("/chain/2"), max_bytes=LIMIT, timeout=5, max_redirects=1, allowed_hosts=server.allowed)


@pytest.mark.parametrize("path", ["/big", "/big-chunked", "/big-close"])
def test_body_over_limit_fails(server: _Server, path: str) -> None:
    with pytest.raises(FetchFailed, match="larger than 4999 bytes"):
        fetch_public(server.url(path), max_bytes=4999, timeout=5, allowed_hosts=server.allowed)
    result = fetch_public(server.url(path), max_bytes=5000, timeout=5, allowed_hosts=server.allowed)
    assert len(result.body) == 5000


def test_gzip_is_decoded_and_bombs_are_capped(server: _Server) -> None:
    result = fetch_public(server.url("/gzip"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert result.body == b"squeezed " * 100
    assert server.seen[0]["headers"]["Accept-Encoding"] == "identity"
    with pytest.raises(FetchFailed, match="larger than") as info:
        fetch_public(server.url("/gzip-bomb"), max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
    assert not info.value.transient  # the same page will be as large next time


def test_connection_refused_fails() -> None:
    port = _free_port()
    with pytest.raises(FetchFailed) as info:
        fetch_public(f"http://127.0.0.1:{port}/", max_bytes=LIMIT, timeout=5, allowed_hosts={f"127.0.0.1:{port}"})
    assert str(info.value) == "Could not connect to 127.0.0.1."
    assert info.value.transient  # the page_fetch kind tries it again


def test_dns_failure_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    def fail(*args: object, **kwargs: object) -> None:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    with pytest.raises(FetchRefused) as info:
        fetch_public("http://no-such-host.example/", max_bytes=LIMIT, timeout=5)
    assert str(info.value) == network.not_public("no-such-host.example").args[0]


def _answers(table: dict[str, str | None]):  # type: ignore[no-untyped-def]
    """A getaddrinfo that knows only `table`: name -> address, or None for "no such name"."""

    def lookup(host: str, port: int, *args: object, **kwargs: object) -> list:
        address = table.get(host)
        if address is None:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        return [(family, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, port))]

    return lookup


@pytest.mark.parametrize("via_redirect", [False, True])
def test_an_unknown_name_and_an_internal_one_look_the_same_to_the_user(
    server: _Server, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, via_redirect: bool
) -> None:
    """Two texts (or two error types) for "could not be resolved" and "not public" made page fetch
    an oracle for which names exist in our internal DNS; only the log tells them apart."""
    real = socket.getaddrinfo
    internal = _answers({"db.internal.example": "10.1.2.3", "metadata.internal.example": "169.254.169.254"})

    def lookup(host: str, port: int, *args: object, **kwargs: object) -> list:
        return real(host, port, *args, **kwargs) if host == "127.0.0.1" else internal(host, port)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)
    seen = {}
    for name in ("db.internal.example", "metadata.internal.example", "nothing-here.internal.example"):
        url = f"http://{name}/"
        if via_redirect:
            url = server.url("/to?" + urllib.parse.urlencode({"url": url}))
        with caplog.at_level("INFO", logger="basic.core.fetch.network"):
            with pytest.raises(Exception) as info:
                fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=server.allowed)
        seen[name] = (type(info.value), str(info.value).replace(name, "NAME"))
        assert "10.1.2.3" not in str(info.value) and "169.254" not in str(info.value)
    assert len(set(seen.values())) == 1, seen
    assert next(iter(seen.values()))[0] is FetchRefused
    logged = caplog.text
    assert "db.internal.example resolves to 10.1.2.3, which is not public" in logged
    assert "nothing-here.internal.example did not resolve" in logged


@pytest.fixture()
def silent_port() -> Iterator[int]:
    """A server that completes the TCP handshake (the kernel does) and then never says a word."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(8)
        yield sock.getsockname()[1]


def test_server_that_never_answers_fails_within_the_deadline(silent_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(FetchFailed, match=r"took too long to load \(limit: 1 s\)") as info:
        fetch_public(
            f"http://127.0.0.1:{silent_port}/", max_bytes=LIMIT, timeout=1.0, allowed_hosts={f"127.0.0.1:{silent_port}"}
        )
    assert info.value.transient
    assert time.monotonic() - start < 2.5


@pytest.fixture(params=["body", "headers"])
def trickle_port(request: pytest.FixtureRequest) -> Iterator[int]:
    """One byte every 0.3 s for as long as the client listens: in the body, or in the headers
    (which never end, so only a deadline on every read can stop it)."""
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n" + (b"\r\n" if request.param == "body" else b"X-Slow: ")
    stop = threading.Event()
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    listener.settimeout(0.1)

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.recv(65536)
                conn.sendall(head)
                try:
                    while not stop.wait(0.3):
                        conn.sendall(b"x")
                except OSError:
                    pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(5)
    listener.close()


def test_trickling_server_fails_at_the_deadline(trickle_port: int) -> None:
    start = time.monotonic()
    with pytest.raises(FetchFailed, match="took too long"):
        fetch_public(
            f"http://127.0.0.1:{trickle_port}/",
            max_bytes=LIMIT,
            timeout=1.0,
            allowed_hosts={f"127.0.0.1:{trickle_port}"},
        )
    assert 0.9 < time.monotonic() - start < 2.2


def test_tls_handshake_failure_fails(server: _Server) -> None:
    allowed = frozenset({f"127.0.0.1:{server.port}"})
    with pytest.raises(FetchFailed, match="secure connection"):
        fetch_public(f"https://127.0.0.1:{server.port}/", max_bytes=LIMIT, timeout=5, allowed_hosts=allowed)


def test_tls_uses_the_host_name_for_sni_and_verification(tmp_path: Path) -> None:
    """The socket goes to a checked IP, but SNI and certificate verification must still use the name."""
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.oid.NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (tmp_path / "cert.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    sni: list[str | None] = []
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    context.sni_callback = lambda sslobj, server_name, ctx: sni.append(server_name)
    tls_server = _Server()
    tls_server.socket = context.wrap_socket(tls_server.socket, server_side=True, do_handshake_on_connect=False)
    for _ in _serve(tls_server):
        port = tls_server.port
        with pytest.raises(FetchFailed, match="certificate of localhost could not be verified"):
            fetch_public(
                f"https://localhost:{port}/hello", max_bytes=LIMIT, timeout=5, allowed_hosts={f"localhost:{port}"}
            )
    assert sni and set(sni) == {"localhost"}


# --- DNS rebinding ---------------------------------------------------------------------------------------


PUBLIC_IP = "93.184.216.34"


def test_connects_to_the_checked_address_with_a_single_lookup(server: _Server, monkeypatch: pytest.MonkeyPatch) -> None:
    """First answer public, any later answer 127.0.0.1: the code must connect to what it checked.

    The fake network sends connections for the public IP to the local server, so the fetch succeeds
    only if the connection target is the checked address and nobody looked the name up again.
    """
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding_getaddrinfo(host: object, port: object, *args: object, **kwargs: object) -> list:
        if host != "rebind.example":
            return real_getaddrinfo(host, port, *args, **kwargs)
        lookups.append(host)
        ip = PUBLIC_IP if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (ip, port))]

    targets: list[tuple] = []
    real_open = network._open_socket

    def fake_network(family: int, type_: int, proto: int, sockaddr: tuple, timeout: float) -> socket.socket:
        targets.append(sockaddr)
        if sockaddr[0] != PUBLIC_IP:
            raise ConnectionRefusedError("only the public address is reachable in this test")
        return real_open(family, type_, proto, ("127.0.0.1", server.port), timeout)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding_getaddrinfo)
    monkeypatch.setattr(network, "_open_socket", fake_network)
    result = fetch_public(f"http://rebind.example:{server.port}/hello", max_bytes=LIMIT, timeout=5)
    assert result.body == b"<p>hello</p>"
    assert lookups == ["rebind.example"]
    assert targets == [(PUBLIC_IP, server.port)]
    assert server.seen[0]["headers"]["Host"] == f"rebind.example:{server.port}"

    # a new fetch is a new hop: it looks up again, gets 127.0.0.1, and is refused before connecting
    with pytest.raises(FetchRefused):
        fetch_public(f"http://rebind.example:{server.port}/hello", max_bytes=LIMIT, timeout=5)
    assert lookups == ["rebind.example"] * 2
    assert targets == [(PUBLIC_IP, server.port)]


def test_one_non_public_answer_among_public_ones_refuses(monkeypatch: pytest.MonkeyPatch) -> None:
    def mixed(host: object, port: object, *args: object, **kwargs: object) -> list:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (PUBLIC_IP, port)),
            (socket.AF_INET6, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", ("::ffff:169.254.169.254", port, 0, 0)),
        ]

    def no_connect(*args: object) -> None:
        raise AssertionError("must not connect")

    monkeypatch.setattr(socket, "getaddrinfo", mixed)
    monkeypatch.setattr(network, "_open_socket", no_connect)
    with pytest.raises(FetchRefused) as info:
        fetch_public("http://mixed.example/", max_bytes=LIMIT, timeout=5)
    assert "169.254" not in str(info.value)  # never tell the user what the internal address is
