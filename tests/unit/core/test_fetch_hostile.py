"""basic.core.fetch against a server that sends hostile bytes on purpose: a Location httpx cannot
read, absurdly long or with control characters, a Content-Type full of controls. Each ends in
FetchRefused or FetchFailed with a sentence (never another exception, which the job would report as
an unexpected error with a traceback), and what is returned is clean text."""
from __future__ import annotations

import random
import socket
import threading
from collections.abc import Iterator

import pytest

from basic.core.fetch import FetchFailed, FetchRefused, check_url, fetch_public
from basic.core.fetch.fetch import BAD_REDIRECT
from tests.unit.core.test_outside_text import unsafe_characters

LIMIT = 100_000


class RawServer:
    """Answers GET /<n> with responses[n], byte for byte (http.server would refuse to send them)."""

    def __init__(self) -> None:
        self.responses: list[bytes] = []
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.allowed = frozenset({f"127.0.0.1:{self.port}"})
        threading.Thread(target=self._accept, daemon=True).start()

    def add(self, head: bytes, body: bytes = b"") -> str:
        self.responses.append(head + b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body) + body)
        return f"http://127.0.0.1:{self.port}/{len(self.responses) - 1}"

    def redirect(self, location: bytes) -> str:
        return self.add(b"HTTP/1.1 302 Found\r\nLocation: " + location + b"\r\n")

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._answer, args=(conn,), daemon=True).start()

    def _answer(self, conn: socket.socket) -> None:
        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(65536)
                if not chunk:
                    return
                request += chunk
            path = request.split(b" ", 2)[1].decode("ascii", "replace").lstrip("/")
            index = int(path) if path.isdigit() and int(path) < len(self.responses) else None
            conn.sendall(self.responses[index] if index is not None else b"HTTP/1.1 404 Not Found\r\n"
                         b"Content-Length: 0\r\nConnection: close\r\n\r\n")

    def close(self) -> None:
        self.listener.close()


@pytest.fixture(scope="module")
def raw() -> Iterator[RawServer]:
    server = RawServer()
    yield server
    server.close()


def fetch(raw: RawServer, url: str):  # type: ignore[no-untyped-def]
    return fetch_public(url, max_bytes=LIMIT, timeout=5, allowed_hosts=raw.allowed)


@pytest.mark.parametrize("location", [
    b"http://[::1",  # httpx: invalid port
    b"https://[v1.x]/",  # httpx: invalid IPv6 address
    b"http://ex\x85ample.com/",  # a C1 control in the host (obs-text in a header, read as Latin-1)
    b"http://\xad.com/",  # a soft hyphen: no IDNA host
    b"http://\xef\xbb\xbfa.com/",  # a byte order mark before the host
    b"\x7f",  # DEL
])
def test_a_location_httpx_cannot_read_fails_saying_so(raw, location):
    with pytest.raises((FetchRefused, FetchFailed)) as refused:
        fetch(raw, raw.redirect(location))
    assert str(refused.value) == BAD_REDIRECT


@pytest.mark.parametrize("location", [b"http://xn--/", b"http://xn--zz.com/", b"HTTP://XN--ZZ/"])
def test_a_location_with_an_idna_host_httpx_cannot_decode_fails_saying_so(raw, location):
    """httpx parses it, then fails to decode the host (IDNAError): once a traceback in the log and
    "unexpected error" for the user."""
    with pytest.raises(FetchRefused) as refused:
        fetch(raw, raw.redirect(location))
    assert str(refused.value) == BAD_REDIRECT


@pytest.mark.parametrize("location", [
    b"http://" + b"a" * 5000 + b".com/",
    b"/" + b"x" * 5000,  # absurdly long
    b"http://exa mple.com/",
])
def test_a_location_that_is_no_usable_url_is_a_refusal(raw, location):
    with pytest.raises(FetchRefused, match="redirected"):
        fetch(raw, raw.redirect(location))


@pytest.mark.parametrize("location", [b"/a\x00b", b"/\x1b[2J", b"/a\rb", b"/a\x08", b"/\x1b]0;title\x07"])
def test_control_characters_in_a_location_fail_the_fetch_saying_why(raw, location):
    with pytest.raises((FetchFailed, FetchRefused)) as failed:
        fetch(raw, raw.redirect(location))
    assert str(failed.value) in (BAD_REDIRECT, "127.0.0.1 did not send a valid HTTP response.")


def test_a_location_with_odd_but_valid_characters_is_followed_percent_encoded(raw):
    result = fetch(raw, raw.redirect("/x?q=\u202e".encode() + b"\x85\xff"))
    assert result.final_url.isascii() and result.final_url.isprintable() and "%" in result.final_url


def test_header_text_comes_back_clean_and_bounded(raw):
    url = raw.add(b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=\x85\x9b31m" + b"x" * 5000 + b"\r\n",
                  b"<title>t</title>")
    result = fetch(raw, url)
    assert unsafe_characters(result.content_type) == [] and len(result.content_type) <= 200
    assert result.content_type.startswith("text/html; charset=")


def test_an_idna_host_httpx_cannot_decode_is_refused_before_any_job(raw):
    for url in ("http://xn--/", "http://xn--zz.com/", "https://XN--/x"):
        with pytest.raises(FetchRefused, match="not a valid URL"):
            check_url(url)


def test_random_locations_only_ever_end_in_a_result_or_a_sentence(raw):
    """The fuzz: any Location bytes a server may send (visible ASCII and obs-text) give a result,
    FetchRefused or FetchFailed, with a message free of control characters."""
    rng = random.Random(22)
    pieces = [b"http://", b"https://", b"//", b"/", b"[", b"]", b":", b"@", b"%", b"xn--", b".", b"?", b"#", b"::1",
              b"127.0.0.1", b"\x85", b"\xff", b"\xc3\xa9", b" ", b"\\", b"0x7f", b"65536", b"a"]
    ok = raw.add(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n", b"ok")
    for _ in range(40):
        location = b"".join(rng.choice(pieces) for _ in range(rng.randrange(1, 12))).strip() or b"/"
        try:
            result = fetch(raw, raw.redirect(location))
        except (FetchRefused, FetchFailed) as exc:
            assert str(exc) and unsafe_characters(str(exc)) == [], location
        else:
            assert result.final_url.isascii() and result.final_url.isprintable(), location
    assert fetch(raw, ok).body == b"ok"
