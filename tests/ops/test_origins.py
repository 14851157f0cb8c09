"""Which browser origins may open sockets: WS_ALLOWED_ORIGINS, never widened by ALLOWED_HOSTS=*."""
import pytest
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import REGISTRY

from basic.realtime.origins import origin_allowed, origins_from_allowed_hosts, parse_allowed_origins


def allowed(origin: str, entries: list[str]) -> bool:
    return origin_allowed(origin, parse_allowed_origins(entries))


def test_default_comes_from_named_hosts_only():
    assert origins_from_allowed_hosts(["*"]) == []
    assert origins_from_allowed_hosts([".example.com", "*.example.com"]) == []
    assert origins_from_allowed_hosts(["localhost", "[::1]"]) == [
        "http://localhost:*", "https://localhost:*", "http://[::1]:*", "https://[::1]:*"]
    assert origins_from_allowed_hosts(["jobs.example.com"], https_only=True) == ["https://jobs.example.com:*"]


def test_default_lets_the_seed_browsers_in():
    default = origins_from_allowed_hosts(["localhost", "127.0.0.1", "[::1]"])
    for origin in ("http://127.0.0.1:8000", "http://localhost:8000", "http://localhost", "http://[::1]:8000"):
        assert allowed(origin, default), origin
    for origin in ("https://evil.example", "http://localhost.evil.example:8000", "null", "file://", ""):
        assert not allowed(origin, default), origin


def test_scheme_host_and_port_all_count():
    entries = ["https://jobs.example.com", "http://localhost:8000", "https://*.example.org"]
    assert allowed("https://jobs.example.com", entries)
    assert allowed("https://jobs.example.com:443", entries)
    assert allowed("HTTPS://JOBS.EXAMPLE.COM", entries)
    assert not allowed("http://jobs.example.com", entries)
    assert not allowed("https://jobs.example.com:8443", entries)
    assert not allowed("https://evil-jobs.example.com", entries)
    assert allowed("http://localhost:8000", entries)
    assert not allowed("http://localhost:8001", entries)
    assert allowed("https://a.example.org", entries)
    assert allowed("https://a.b.example.org", entries)
    assert not allowed("https://example.org", entries)
    assert not allowed("https://evilexample.org", entries)


@pytest.mark.parametrize("entry", ["*", "https://*", "http://*:*", "jobs.example.com", "ws://jobs.example.com",
                                   "https://jobs.example.com/path", "https://jobs.example.com:99999",
                                   "https://bad_host.example"])
def test_bad_entries_stop_start_up(entry):
    with pytest.raises(ImproperlyConfigured, match="WS_ALLOWED_ORIGINS"):
        parse_allowed_origins([entry])


async def open_socket(origin: bytes | None):
    from app.asgi import application

    headers = [(b"origin", origin)] if origin is not None else []
    communicator = WebsocketCommunicator(application, "/chat/", headers=headers)
    connected, _ = await communicator.connect(timeout=5)
    if connected:
        await communicator.disconnect()
    return connected


def seed_chat(name: str) -> float:
    return REGISTRY.get_sample_value(name, {"route": "seed_chat"}) or 0.0


@pytest.mark.django_db(transaction=True)
async def test_allowed_hosts_star_does_not_open_sockets_to_every_site(settings):
    """The old check took its list from ALLOWED_HOSTS, so `*` let every site's pages in."""
    settings.ALLOWED_HOSTS = ["*"]
    settings.WS_ALLOWED_ORIGINS = origins_from_allowed_hosts(settings.ALLOWED_HOSTS) + ["https://jobs.example.com"]
    refused_before = seed_chat("ws_handshakes_refused_total")
    assert not await open_socket(b"https://evil.example")
    assert seed_chat("ws_handshakes_refused_total") == refused_before + 1
    assert await open_socket(b"https://jobs.example.com")
    assert await open_socket(None)  # scripts send no Origin and bring their own credentials
    assert not await open_socket(b"http://jobs.example.com")


@pytest.mark.django_db(transaction=True)
async def test_default_settings_still_let_the_local_console_in():
    assert await open_socket(b"http://127.0.0.1:8000")
    assert await open_socket(b"http://localhost:8000")
    assert not await open_socket(b"https://evil.example")


@pytest.mark.django_db(transaction=True)
async def test_socket_metrics_count_open_and_closed_sockets():
    from app.asgi import application

    opened, closed = seed_chat("ws_connections_total"), seed_chat("ws_connections_open")
    sent = seed_chat("ws_messages_sent_total")
    communicator = WebsocketCommunicator(application, "/chat/", headers=[(b"origin", b"http://localhost:8000")])
    assert (await communicator.connect(timeout=5))[0]
    assert seed_chat("ws_connections_open") == closed + 1
    assert seed_chat("ws_connections_total") == opened + 1
    await communicator.send_json_to({"message": "hi"})
    assert await communicator.receive_json_from(5) == {"message": "hi"}
    assert seed_chat("ws_messages_sent_total") == sent + 1
    await communicator.disconnect(code=1001)
    assert seed_chat("ws_connections_open") == closed
    assert REGISTRY.get_sample_value("ws_disconnects_total", {"route": "seed_chat", "code": "1001"}) >= 1
