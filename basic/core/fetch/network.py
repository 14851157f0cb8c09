"""Resolve a host name once, check every address it has, and connect only to one of those checked addresses.

The httpcore backend here is what makes DNS rebinding impossible: there is no second lookup between
the check and the connect. Every socket operation is also bounded by the fetch's one deadline.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
import ssl
import threading
import time
import typing
from collections.abc import Iterable

import httpcore
import httpx
from httpcore._backends.sync import SyncStream

from basic.core.fetch.errors import FetchRefused
from basic.core.fetch.urls import _host_key, _is_public_ip, _normalise_allowed

AddrInfo = tuple[int, int, int, str, tuple[typing.Any, ...]]

logger = logging.getLogger(__name__)


def not_public(host: str) -> FetchRefused:
    """The one answer for a name that does not resolve AND for one that leads inside our network:
    two texts would let a user map our internal DNS (which names exist) through page fetches.
    The log, not the user, gets the difference."""
    return FetchRefused(f"{host} does not lead to a public address (the name is unknown, or an address it has "
                        "is not public).")


def _resolve(host: str, port: int, deadline: float) -> list[AddrInfo]:
    """getaddrinfo bounded by the deadline (it has no timeout of its own); a name that does not
    resolve is refused with the same text as a non-public one (``not_public``).

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
            logger.info("page fetch: %s did not resolve: %s", host, box["error"])
            raise not_public(host) from box["error"]
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
            logger.info("page fetch: %s resolved to no address", host)
            raise not_public(host)
        if _host_key(host, port) not in self._allowed_hosts:
            for info in infos:
                ip = ipaddress.ip_address(info[4][0])
                if not _is_public_ip(ip):
                    logger.warning("page fetch refused: %s resolves to %s, which is not public", host, ip)
                    raise not_public(host)
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


def guarded_transport(*, allowed_hosts: frozenset[str], deadline: float) -> httpx.HTTPTransport:
    """An httpx transport that connects only to public addresses (or the "host:port" pairs in
    ``allowed_hosts``), each socket operation bounded by ``deadline`` (a time.monotonic() value)."""
    return _make_transport(_GuardedBackend(allowed_hosts=allowed_hosts, deadline=deadline))
