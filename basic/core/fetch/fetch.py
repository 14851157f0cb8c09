"""GET one public page: redirects followed by hand and checked again, one deadline, the body capped.

The URL checks are in urls.py and the guarded connections in network.py; this module puts them
together into ``fetch_public`` and turns every failure into a sentence a user can read.
"""

from __future__ import annotations

import ssl
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import httpx

from basic.core.fetch.errors import FetchFailed, FetchRefused
from basic.core.fetch.network import guarded_transport
from basic.core.fetch.urls import check_url
from basic.core.outside_text import outside_text

__all__ = ["FetchFailed", "FetchRefused", "FetchResult", "fetch_public"]

USER_AGENT = "live-jobs-page-fetch/1.0"
BAD_REDIRECT = "The page redirected to an address that is not a valid URL."
MAX_HEADER_TEXT = 200
_REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})


@dataclass(frozen=True)
class FetchResult:
    url: str  # normalised requested URL
    final_url: str  # after redirects
    status_code: int
    content_type: str  # the response's Content-Type header ('' if none), cleaned (outside_text)
    body: bytes


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
        # httpx reads a redirect's Location itself (even without following it) and refuses one it
        # cannot parse with this text; the user gets the reason, not "invalid response".
        if str(exc).startswith("Invalid URL in location header"):
            return BAD_REDIRECT
        return f"{host} did not send a valid HTTP response."
    if isinstance(exc, httpx.NetworkError | httpx.ProtocolError):
        return f"The connection to {host} was interrupted."
    return "The page could not be fetched."


def _is_transient(exc: httpx.HTTPError) -> bool:
    """A timeout, or a connection refused or cut (not a TLS failure, not a broken response)."""
    if isinstance(exc, httpx.TimeoutException):
        return True
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ssl.SSLError):
            return False
        cause = cause.__cause__ or cause.__context__
    return isinstance(exc, httpx.ConnectError | httpx.ReadError | httpx.WriteError)


def _redirect_target(current: str, location: str, allowed_hosts: frozenset[str]) -> str:
    """The checked URL a ``Location`` leads to. Whatever httpx cannot read in it (a broken IPv6
    literal, a bad IDNA label, a non-printable character...) is the page's fault: FetchRefused
    with one sentence, never an unexpected error."""
    try:
        target = str(httpx.URL(current).join(location))
    except Exception:  # httpx raises InvalidURL, ValueError, IDNAError...: all say the same
        raise FetchRefused(BAD_REDIRECT) from None
    return check_url(target, allowed_hosts=allowed_hosts)


def _host_of(url: str) -> str:
    """The host of a checked URL, for messages (check_url made sure it decodes)."""
    try:
        return outside_text(httpx.URL(url).host, limit=253) or "the site"
    except (httpx.InvalidURL, ValueError):
        return "the site"


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
    headers = {"User-Agent": USER_AGENT, "Accept": "*/*", "Accept-Encoding": "identity"}
    redirects = 0
    transport = guarded_transport(allowed_hosts=allowed_hosts, deadline=deadline)
    with httpx.Client(transport=transport, trust_env=False, follow_redirects=False, headers=headers) as client:
        while True:
            host = _host_of(current)
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
                        current = _redirect_target(current, location, allowed_hosts)
                        continue
                    length = response.headers.get("Content-Length", "")
                    if length.isascii() and length.isdigit() and int(length) > max_bytes:
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
                        content_type=outside_text(response.headers.get("Content-Type", ""), limit=MAX_HEADER_TEXT),
                        body=body,
                    )
            except FetchRefused as exc:
                if redirects and not str(exc).startswith("The page redirected"):
                    raise FetchRefused(f"The page redirected somewhere that is not allowed: {exc}") from exc
                raise
            except httpx.HTTPError as exc:
                raise FetchFailed(_failure_message(exc, host, timeout), transient=_is_transient(exc)) from exc
            except (httpx.InvalidURL, UnicodeError) as exc:
                # Our URLs were checked: this is httpx building the request a redirect's Location
                # leads to (it does so for every redirect, even unfollowed) and failing, e.g. on
                # an IDNA host it cannot decode. Once a traceback for "an unexpected error".
                raise FetchRefused(BAD_REDIRECT) from exc
