"""Fetch a user-supplied web page from a background job without becoming a proxy into our own network.

A URL chosen by a user must never make the server talk to itself, to the private network, or to the
cloud metadata service (SSRF). The guard works at three levels:

* ``check_url`` refuses what can be judged from the text alone: other schemes, credentials, odd ports,
  and IP literals (in every spelling the C resolver accepts) that are not public.
* The network backend resolves the host name itself, refuses if ANY address is not public, and then
  connects to one of exactly those checked addresses. There is no second lookup, so DNS rebinding
  (public answer for the check, 127.0.0.1 for the connect) cannot work. TLS SNI, certificate checks
  and the Host header still use the name.
* Redirects are followed by hand, and every hop goes through both checks again.

The whole fetch runs against one wall-clock deadline (every socket operation gets at most the time
left), and the body is capped while it streams, including after decompression. Plain blocking sockets
are used on purpose: the Celery worker runs on a gevent pool with monkey-patching.

This module takes every limit as an argument and imports nothing from Django: the caller passes settings.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import threading
import time
import typing
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

__all__ = ["FetchFailed", "FetchRefused", "FetchResult", "check_url", "fetch_public", "normalise_url"]

USER_AGENT = "live-jobs-page-fetch/1.0"
MAX_URL_LENGTH = 2048
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}\.?$")
_NUMERIC_LABEL_RE = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class FetchRefused(ValueError):
    """The URL or an address it leads to is not allowed. str(exc) is a sentence a user can read.

    A ValueError because the input is what is wrong: retrying will not help.
    """


class FetchFailed(Exception):
    """The fetch could not complete (timeout, too large, connection refused, bad TLS...).

    str(exc) is a sentence a user can read. It never carries internal exception text, resolved
    addresses or file paths, so it can be shown to the user as is; the cause stays in __cause__ for logs.
    """


@dataclass(frozen=True)
class FetchResult:
    url: str  # normalised requested URL
    final_url: str  # after redirects
    status_code: int
    content_type: str  # the response's Content-Type header ('' if none)
    body: bytes


# --- addresses -----------------------------------------------------------------------------------------

# Ranges refused on top of ``not is_global``: some are "global" for the ipaddress module (multicast,
# NAT64, 6to4, IPv4-compatible...), and the others make the result independent of the Python patch level.
_BLOCKED_NETWORKS: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8",  # "this network"; 0.0.0.0 reaches the local host on Linux
        "10.0.0.0/8",
        "100.64.0.0/10",  # shared address space (carrier NAT; Alibaba metadata 100.100.100.200)
        "127.0.0.0/8",
        "169.254.0.0/16",  # link-local, AWS/GCP/Azure metadata 169.254.169.254
        "172.16.0.0/12",
        "192.0.0.0/24",  # IETF protocol assignments (Oracle metadata 192.0.0.192)
        "192.0.2.0/24",
        "192.88.99.0/24",  # deprecated 6to4 relay anycast
        "192.168.0.0/16",
        "198.18.0.0/15",
        "198.51.100.0/24",
        "203.0.113.0/24",
        "224.0.0.0/4",  # multicast
        "240.0.0.0/4",  # reserved, and 255.255.255.255
        "::/96",  # unspecified, loopback and the deprecated IPv4-compatible form ::a.b.c.d
        "64:ff9b:1::/48",  # local-use NAT64
        "100::/64",  # discard-only
        "2001::/32",  # Teredo
        "2001:db8::/32",
        "5f00::/16",  # SRv6 SIDs
        "fc00::/7",  # unique local (AWS metadata fd00:ec2::254)
        "fe80::/10",  # link-local
        "fec0::/10",  # site-local (deprecated, still routed internally in places)
        "ff00::/8",  # multicast
    )
)
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _is_public_ip(ip: IPAddress) -> bool:
    """True if ``ip`` is a normal public unicast address, also looking inside IPv6 forms that embed IPv4."""
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            return False
        if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
            return _is_public_ip(ip.ipv4_mapped)
        if ip.sixtofour is not None:  # 2002:aabb:ccdd::/48
            return _is_public_ip(ip.sixtofour)
        if ip in _NAT64:  # 64:ff9b::a.b.c.d
            return _is_public_ip(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if any(ip in net for net in _BLOCKED_NETWORKS if net.version == ip.version):
        return False
    return ip.is_global and not (
        ip.is_private
        or ip.is_loopback
        or ip.is_link_local
        or ip.is_multicast
        or ip.is_reserved
        or ip.is_unspecified
        or (isinstance(ip, ipaddress.IPv6Address) and ip.is_site_local)
    )


def _parse_legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """Parse the IPv4 spellings inet_aton accepts (127.1, 2130706433, 0x7f.1, 0177.0.0.1).

    Returns None when ``host`` is a name. Raises FetchRefused when it looks numeric but is not a valid
    address, since the resolver and we might otherwise disagree about where it points.
    """
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if not labels or not _NUMERIC_LABEL_RE.match(labels[-1]):
        return None  # a name: the last label of a real domain is never numeric
    numbers: list[int] = []
    for label in labels:
        if not _NUMERIC_LABEL_RE.match(label):
            raise FetchRefused("The host name is not valid.")
        if label.startswith("0x"):
            numbers.append(int(label[2:] or "0", 16))
        elif len(label) > 1 and label.startswith("0"):
            if not set(label) <= set("01234567"):
                raise FetchRefused("The host name is not valid.")
            numbers.append(int(label, 8))
        else:
            numbers.append(int(label))
    if len(numbers) > 4:
        raise FetchRefused("The host name is not valid.")
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        raise FetchRefused("The host name is not valid.")
    value = last
    for i, n in enumerate(head):
        value |= n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _host_key(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _normalise_allowed(allowed_hosts: Iterable[str]) -> frozenset[str]:
    return frozenset(h.strip().lower() for h in allowed_hosts)


# --- URLs ----------------------------------------------------------------------------------------------


def _parse(url: str) -> httpx.URL:
    if not isinstance(url, str):
        raise FetchRefused("This is not a valid URL.")
    url = url.strip()
    if len(url) > MAX_URL_LENGTH:
        raise FetchRefused(f"The URL is too long (more than {MAX_URL_LENGTH} characters).")
    try:
        return httpx.URL(url)
    except (httpx.InvalidURL, ValueError, TypeError):
        raise FetchRefused("This is not a valid URL.") from None


def _canonical_host(raw_host: str) -> tuple[str, IPAddress | None]:
    """Return (host as written in the canonical URL, IP address if the host is an IP literal)."""
    host = raw_host.lower()
    if ":" in host:  # httpx strips the brackets of IPv6 literals
        if "%" in host:
            raise FetchRefused("IPv6 zone identifiers are not allowed in URLs.")
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            raise FetchRefused("The host name is not valid.") from None
        return ip6.compressed, ip6
    ip4 = _parse_legacy_ipv4(host)
    if ip4 is not None:
        return str(ip4), ip4
    if not _HOSTNAME_RE.match(host):
        raise FetchRefused("The host name is not valid.")
    return host, None


def _rebuild(parsed: httpx.URL, host: str) -> str:
    host_part = f"[{host}]" if ":" in host else host
    port = parsed.port
    port_part = "" if port is None or port == _DEFAULT_PORTS.get(parsed.scheme) else f":{port}"
    userinfo = parsed.userinfo.decode("ascii")
    userinfo_part = f"{userinfo}@" if userinfo else ""
    path = parsed.raw_path.decode("ascii").split("?", 1)[0] or "/"
    query = parsed.query.decode("ascii")
    query_part = f"?{query}" if query else ""
    return f"{parsed.scheme}://{userinfo_part}{host_part}{port_part}{path}{query_part}"


def normalise_url(url: str) -> str:
    """Canonical form used as a cache key: lower-case scheme and host (IDNA), default port dropped,
    empty path -> '/', fragment dropped, query kept as is.

    IPv4 literals in odd spellings become dotted quads and IPv6 literals are compressed, so the URL we
    check is byte for byte the URL we fetch. Raises FetchRefused if the URL cannot be parsed.
    """
    parsed = _parse(url)
    if not parsed.raw_host:
        return _rebuild(parsed, "")
    host, _ = _canonical_host(parsed.raw_host.decode("ascii"))
    return _rebuild(parsed, host)


def check_url(url: str, *, allowed_hosts: frozenset[str] = frozenset()) -> str:
    """Static checks that need no DNS, so a bad URL is refused before any job is queued.

    Scheme http/https only, a host present, no userinfo, port 1-65535, length <= 2048, and an IP-literal
    host (any spelling) must be public unless "host:port" is in ``allowed_hosts``. Returns the normalised
    URL. Raises FetchRefused with a reason a user can read.
    """
    parsed = _parse(url)
    if parsed.scheme not in _DEFAULT_PORTS:
        raise FetchRefused("Only http:// and https:// URLs can be fetched.")
    if not parsed.raw_host:
        raise FetchRefused("The URL has no host name.")
    if parsed.userinfo:
        raise FetchRefused("URLs containing a user name or password are not allowed.")
    port = parsed.port if parsed.port is not None else _DEFAULT_PORTS[parsed.scheme]
    if not 1 <= port <= 65535:
        raise FetchRefused("The port number must be between 1 and 65535.")
    host, ip = _canonical_host(parsed.raw_host.decode("ascii"))
    if ip is not None and not _is_public_ip(ip) and _host_key(host, port) not in _normalise_allowed(allowed_hosts):
        raise FetchRefused(f"{host} is not a public address.")
    normalised = _rebuild(parsed, host)
    if len(normalised) > MAX_URL_LENGTH:
        raise FetchRefused(f"The URL is too long (more than {MAX_URL_LENGTH} characters).")
    return normalised


# --- network backend: resolve once, check every address, connect to a checked one ----------------------

AddrInfo = tuple[int, int, int, str, tuple[typing.Any, ...]]


def _resolve(host: str, port: int, deadline: float) -> list[AddrInfo]:
    """getaddrinfo bounded by the deadline (it has no timeout of its own).

    It runs in a helper thread (a greenlet under gevent); on timeout the lookup is abandoned.
    """
    box: dict[str, typing.Any] = {}

    def run() -> None:
        try:
            box["result"] = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except BaseException as exc:  # handed to the caller below
            box["error"] = exc

    worker = threading.Thread(target=run, name="safe-fetch-dns", daemon=True)
    worker.start()
    worker.join(max(0.0, deadline - time.monotonic()))
    if worker.is_alive():
        raise httpcore.ConnectTimeout("DNS lookup timed out")
    if "error" in box:
        if isinstance(box["error"], (socket.gaierror, UnicodeError)):
            raise FetchFailed("The host name could not be resolved.") from box["error"]
        raise box["error"]
    return box["result"]


def _open_socket(
    family: int, type_: int, proto: int, sockaddr: tuple[typing.Any, ...], timeout: float
) -> socket.socket:
    """Connect to one already-checked socket address (no name involved, so no lookup)."""
    sock = socket.socket(family, type_, proto)
    try:
        sock.settimeout(timeout)
        sock.connect(sockaddr)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except BaseException:
        sock.close()
        raise
    return sock


def _remaining(deadline: float, timeout: float | None, exc_class: type[Exception]) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise exc_class("deadline reached")
    return left if timeout is None else min(timeout, left)


class _DeadlineStream(httpcore.NetworkStream):
    """Wraps a stream so no read, write or TLS handshake can wait past the fetch deadline.

    Per-operation timeouts alone let a server that trickles one byte at a time hold us forever.
    """

    def __init__(self, inner: httpcore.NetworkStream, deadline: float) -> None:
        self._inner = inner
        self._deadline = deadline

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._inner.read(max_bytes, _remaining(self._deadline, timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._inner.write(buffer, _remaining(self._deadline, timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        budget = _remaining(self._deadline, timeout, httpcore.ConnectTimeout)
        return _DeadlineStream(self._inner.start_tls(ssl_context, server_hostname, budget), self._deadline)

    def get_extra_info(self, info: str) -> typing.Any:
        return self._inner.get_extra_info(info)


class _GuardedBackend(httpcore.SyncBackend):
    """httpcore network backend that only ever connects to addresses it has just checked."""

    def __init__(self, *, allowed_hosts: frozenset[str], deadline: float) -> None:
        self._allowed_hosts = _normalise_allowed(allowed_hosts)
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[typing.Any] | None = None,
    ) -> httpcore.NetworkStream:
        host = host.lower()
        budget = _remaining(self._deadline, timeout, httpcore.ConnectTimeout)
        infos = _resolve(host, port, time.monotonic() + budget)
        if not infos:
            raise FetchFailed("The host name could not be resolved.")
        if _host_key(host, port) not in self._allowed_hosts:
            for info in infos:
                ip = ipaddress.ip_address(info[4][0])
                if not _is_public_ip(ip):
                    raise FetchRefused(f"{host} leads to an address that is not public.")
        last_error: OSError | None = None
        for family, type_, proto, _canonname, sockaddr in infos:
            try:
                sock = _open_socket(family, type_, proto, sockaddr, _remaining(self._deadline, timeout, TimeoutError))
            except TimeoutError as exc:  # socket.timeout is TimeoutError since 3.10
                raise httpcore.ConnectTimeout("connect timed out") from exc
            except OSError as exc:
                last_error = exc
                continue
            for option in socket_options or ():
                sock.setsockopt(*option)
            return _DeadlineStream(SyncStream(sock), self._deadline)
        raise httpcore.ConnectError("could not connect") from last_error


def _make_transport(backend: _GuardedBackend) -> httpx.HTTPTransport:
    """An httpx transport whose connection pool uses ``backend`` (httpx 0.28 has no public hook for it)."""
    transport = httpx.HTTPTransport(retries=0)
    old_pool = transport._pool
    if not isinstance(old_pool, httpcore.ConnectionPool):  # pragma: no cover - guards an httpx upgrade
        raise RuntimeError("httpx.HTTPTransport no longer keeps an httpcore.ConnectionPool in _pool")
    transport._pool = httpcore.ConnectionPool(
        ssl_context=old_pool._ssl_context,
        max_connections=1,
        max_keepalive_connections=1,
        http1=True,
        http2=False,
        retries=0,
        network_backend=backend,
    )
    old_pool.close()
    return transport


# --- body ----------------------------------------------------------------------------------------------


def _read_body(chunks: Iterator[bytes], content_encoding: str, max_bytes: int, deadline: float, host: str) -> bytes:
    """Read at most ``max_bytes`` of (decoded) body; gzip/deflate are inflated in bounded steps so a
    small compressed bomb cannot blow up memory."""
    too_large = f"The page is larger than {max_bytes} bytes."
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        decoder = None
    elif encoding in ("gzip", "x-gzip"):
        decoder = zlib.decompressobj(16 + zlib.MAX_WBITS)
    elif encoding == "deflate":
        decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # zlib or gzip header, detected
    else:
        raise FetchFailed(f"{host} sent the page in an unsupported encoding.")
    body = bytearray()
    raw_total = 0
    try:
        for chunk in chunks:
            raw_total += len(chunk)
            if raw_total > max_bytes:
                raise FetchFailed(too_large)
            if decoder is None:
                body += chunk
            else:
                data = chunk
                while data and not decoder.eof:
                    body += decoder.decompress(data, max_bytes - len(body) + 1)
                    if len(body) > max_bytes:
                        raise FetchFailed(too_large)
                    data = decoder.unconsumed_tail
            if time.monotonic() >= deadline:
                raise httpx.ReadTimeout("deadline reached")
        if decoder is not None:
            body += decoder.flush()
            if len(body) > max_bytes:
                raise FetchFailed(too_large)
    except zlib.error as exc:
        raise FetchFailed(f"{host} sent a corrupt compressed page.") from exc
    return bytes(body)


# --- the fetch -----------------------------------------------------------------------------------------


def _failure_message(exc: httpx.HTTPError, host: str, timeout: float) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return f"The page took too long to load (limit: {timeout:g} s)."
    if isinstance(exc, httpx.ConnectError):
        cause: BaseException | None = exc
        while cause is not None:
            if isinstance(cause, ssl.SSLCertVerificationError):
                return f"The certificate of {host} could not be verified."
            if isinstance(cause, ssl.SSLError):
                return f"A secure connection to {host} could not be established."
            cause = cause.__cause__ or cause.__context__
        return f"Could not connect to {host}."
    if isinstance(exc, httpx.RemoteProtocolError):
        return f"{host} did not send a valid HTTP response."
    if isinstance(exc, httpx.NetworkError | httpx.ProtocolError):
        return f"The connection to {host} was interrupted."
    return "The page could not be fetched."


def fetch_public(
    url: str,
    *,
    max_bytes: int,
    timeout: float,
    max_redirects: int = 5,
    allowed_hosts: frozenset[str] = frozenset(),
) -> FetchResult:
    """GET a page on the public internet, following at most ``max_redirects`` redirects.

    ``timeout`` is the wall-clock budget for everything (DNS, connects, TLS, redirects, body).
    Raises FetchRefused if the URL or any address on the way is not public (only the "host:port"
    pairs in ``allowed_hosts`` are exempt), FetchFailed if the fetch cannot complete. A non-2xx final
    status is a normal result.
    """
    if max_bytes < 0 or timeout <= 0 or max_redirects < 0:
        raise ValueError("max_bytes and max_redirects must be >= 0 and timeout > 0")
    deadline = time.monotonic() + timeout
    requested = current = check_url(url, allowed_hosts=allowed_hosts)
    backend = _GuardedBackend(allowed_hosts=allowed_hosts, deadline=deadline)
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
    redirects = 0
    with httpx.Client(
        transport=_make_transport(backend), trust_env=False, follow_redirects=False, headers=headers
    ) as client:
        while True:
            host = httpx.URL(current).host
            try:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise httpx.ConnectTimeout("deadline reached")
                with client.stream("GET", current, timeout=httpx.Timeout(left)) as response:
                    location = response.headers.get("Location", "").strip()
                    if response.status_code in _REDIRECT_STATUSES and location:
                        if redirects >= max_redirects:
                            raise FetchFailed(f"The page redirected too many times (more than {max_redirects}).")
                        redirects += 1
                        try:
                            target = str(httpx.URL(current).join(location))
                        except (httpx.InvalidURL, ValueError):
                            raise FetchRefused("The page redirected to an address that is not a valid URL.") from None
                        current = check_url(target, allowed_hosts=allowed_hosts)
                        continue
                    length = response.headers.get("Content-Length", "")
                    if length.isdigit() and int(length) > max_bytes:
                        raise FetchFailed(f"The page is larger than {max_bytes} bytes.")
                    body = _read_body(
                        response.iter_raw(),
                        response.headers.get("Content-Encoding", ""),
                        max_bytes,
                        deadline,
                        host,
                    )
                    return FetchResult(
                        url=requested,
                        final_url=current,
                        status_code=response.status_code,
                        content_type=response.headers.get("Content-Type", ""),
                        body=body,
                    )
            except FetchRefused as exc:
                if redirects and not str(exc).startswith("The page redirected"):
                    raise FetchRefused(f"The page redirected somewhere that is not allowed: {exc}") from exc
                raise
            except httpx.HTTPError as exc:
                raise FetchFailed(_failure_message(exc, host, timeout)) from exc
