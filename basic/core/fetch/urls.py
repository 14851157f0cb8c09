"""What can be judged from a URL's text alone: parsing, the canonical form, and which addresses are public.

No DNS here: ``check_url`` refuses a bad URL before any job is queued, and network.py uses the same
address classification on every address a name resolves to.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable

import httpx

from basic.core.fetch.errors import FetchRefused

MAX_URL_LENGTH = 2048
_DEFAULT_PORTS = {"http": 80, "https": 443}
_HOSTNAME_RE = re.compile(r"^(?=.{1,253}$)(?:[a-z0-9_-]{1,63}\.)*[a-z0-9_-]{1,63}\.?$")
_NUMERIC_LABEL_RE = re.compile(r"^(?:0x[0-9a-f]*|[0-9]+)$")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


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
        parsed = httpx.URL(url)
        parsed.host  # noqa: B018 - decodes an IDNA host ("xn--"): one httpx can't read must fail here, not mid-fetch
    except (httpx.InvalidURL, ValueError, TypeError):  # IDNAError is a UnicodeError, so a ValueError
        raise FetchRefused("This is not a valid URL.") from None
    return parsed


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
