"""Browser origins allowed to open WebSockets (WS_ALLOWED_ORIGINS), parsed strictly.

An entry is a full origin, `scheme://host[:port]`: scheme `http` or `https`, port a number or
`*` (any port), host a name, an IPv4 address, a bracketed IPv6 address, or `*.example.com` (any
subdomain of example.com, not example.com itself). A bare `*` is refused: the list exists to keep
other sites out, so it can never allow every site. Settings load this module: it must not
import anything that reads settings.
"""
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

from django.core.exceptions import ImproperlyConfigured

DEFAULT_PORTS = {"http": 80, "https": 443}
_HOST = re.compile(r"^(\*\.)?[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*$")
_IPV6 = re.compile(r"^\[[0-9a-f:.]+\]$")
_ORIGIN = re.compile(r"^(?P<scheme>[a-z]+)://(?P<host>\[[^\]]*\]|[^:/?#\[\]]+)(:(?P<port>\*|[0-9]{1,5}))?$")


@dataclass(frozen=True)
class AllowedOrigin:
    scheme: str
    host: str  # lowercase; "*.example.com" for subdomains; "[::1]" keeps its brackets
    port: int | None  # None: any port

    def __str__(self) -> str:
        port = "*" if self.port is None else str(self.port)
        return f"{self.scheme}://{self.host}:{port}"

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or (self.port is not None and port != self.port):
            return False
        if self.host.startswith("*."):
            return host.endswith(self.host[1:])
        return host == self.host


def parse_allowed_origin(entry: str, setting: str = "WS_ALLOWED_ORIGINS") -> AllowedOrigin:
    """One configured origin; ImproperlyConfigured naming the setting if it is not one."""
    text = entry.strip().lower().rstrip("/")
    match = _ORIGIN.match(text)
    problem = None
    if text == "*" or "*" == text.split("://")[-1].split(":")[0]:
        problem = "a wildcard for every site is not allowed; list the origins browsers use"
    elif not match:
        problem = "expected scheme://host[:port], e.g. https://jobs.example.com or http://localhost:8000"
    elif match["scheme"] not in DEFAULT_PORTS:
        problem = "the scheme must be http or https (the page's origin, not ws://)"
    elif not (_HOST.match(match["host"]) or _IPV6.match(match["host"])):
        problem = "the host is not a valid host name or address"
    elif match["port"] not in (None, "*") and not 0 < int(match["port"]) < 65536:
        problem = "the port must be 1-65535 or *"
    if problem:
        raise ImproperlyConfigured(f"{setting}: {entry!r}: {problem}.")
    scheme, port = match["scheme"], match["port"]
    return AllowedOrigin(scheme, match["host"], None if port == "*" else int(port or DEFAULT_PORTS[scheme]))


def parse_allowed_origins(entries: list[str], setting: str = "WS_ALLOWED_ORIGINS") -> list[AllowedOrigin]:
    return [parse_allowed_origin(entry, setting) for entry in entries if entry.strip()]


def origins_from_allowed_hosts(allowed_hosts: list[str], *, port: int, https_only: bool = False,
                               behind_tls_proxy: bool = False) -> list[str]:
    """The default: the exact origins this server's pages are served on, for every explicitly named
    host of ALLOWED_HOSTS: `http://host:<port>` (the port Daphne serves on, settings.PORT), and
    `https://host` (443) behind a TLS proxy; with `https_only`, only the latter. Never any port: a
    browser treats another port on the same host as another site, so another application there
    must not open sockets with our users' cookies. Wildcards (`*`, `.example.com`) are skipped,
    never widened: `ALLOWED_HOSTS=*` opens sockets to no browser origin at all, not to every site."""
    origins = []
    for host in allowed_hosts:
        host = host.strip().lower()
        if not host or "*" in host or host.startswith("."):
            continue
        if not https_only:
            origins.append(f"http://{host}:{port}")
        if https_only or behind_tls_proxy:
            origins.append(f"https://{host}:443")
    return origins


def parse_request_origin(origin: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of an Origin header; None if it is not a usable http(s) origin
    (including the literal `null` that sandboxed pages and file:// send)."""
    try:
        parts = urlsplit(origin.strip().lower())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        return None
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return parts.scheme, host, port if port is not None else DEFAULT_PORTS[parts.scheme]


def origin_allowed(origin: str, allowed: list[AllowedOrigin]) -> bool:
    parsed = parse_request_origin(origin)
    return parsed is not None and any(rule.matches(*parsed) for rule in allowed)
