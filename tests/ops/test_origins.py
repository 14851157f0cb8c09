"""Which browser origins may open sockets: WS_ALLOWED_ORIGINS, by default the exact origins the
server is served on (PORT), never any port of a host and never widened by ALLOWED_HOSTS=*."""
import ast

import pytest
from channels.testing import WebsocketCommunicator
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import REGISTRY

from basic.ops import stack
from basic.realtime.origins import origin_allowed, origins_from_allowed_hosts, parse_allowed_origins

from .conftest import manage


def allowed(origin: str, entries: list[str]) -> bool:
    return origin_allowed(origin, parse_allowed_origins(entries))


def test_default_comes_from_named_hosts_only():
    assert origins_from_allowed_hosts(["*"], port=8000) == []
    assert origins_from_allowed_hosts([".example.com", "*.example.com"], port=8000) == []
    assert origins_from_allowed_hosts(["localhost", "[::1]"], port=8000) == ["http://localhost:8000", "http://[::1]:8000"]
    assert origins_from_allowed_hosts(["jobs.example.com"], port=8000, https_only=True) == ["https://jobs.example.com:443"]


def test_default_is_the_exact_port_the_server_is_served_on():
    """The old default allowed every port of the allowed names: another app on the same host (say
    a dev server on :3000) could open sockets carrying our users' cookies."""
    default = origins_from_allowed_hosts(["localhost", "127.0.0.1", "[::1]"], port=8123)
    assert all(not entry.endswith(":*") for entry in default)
    for origin in ("http://localhost:8123", "http://127.0.0.1:8123", "http://[::1]:8123"):
        assert allowed(origin, default), origin
    for origin in ("http://localhost:3000", "http://127.0.0.1:8000", "http://localhost", "http://[::1]:8124",
                   "https://localhost:8123", "https://localhost", "http://localhost:65535"):
        assert not allowed(origin, default), origin


def test_behind_a_tls_proxy_the_default_is_https_on_443():
    behind = origins_from_allowed_hosts(["jobs.example.com"], port=8000, behind_tls_proxy=True)
    assert allowed("https://jobs.example.com", behind) and allowed("http://jobs.example.com:8000", behind)
    assert not allowed("https://jobs.example.com:8443", behind) and not allowed("http://jobs.example.com", behind)
    https_only = origins_from_allowed_hosts(["jobs.example.com"], port=8000, https_only=True, behind_tls_proxy=True)
    assert https_only == ["https://jobs.example.com:443"]
    assert not allowed("http://jobs.example.com:8000", https_only)


def test_default_lets_the_seed_browsers_in():
    default = origins_from_allowed_hosts(["localhost", "127.0.0.1", "[::1]"], port=8000)
    for origin in ("http://127.0.0.1:8000", "http://localhost:8000", "http://[::1]:8000"):
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
    settings.WS_ALLOWED_ORIGINS = origins_from_allowed_hosts(settings.ALLOWED_HOSTS, port=8000) + [
        "https://jobs.example.com"]
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
async def test_default_settings_refuse_another_port_on_the_same_host():
    for origin in (b"http://localhost:3000", b"http://127.0.0.1:8001", b"http://localhost", b"https://localhost:8000"):
        assert not await open_socket(origin), origin


def settings_of(*names: str, **env: str) -> list:
    """The values of settings `names` in a fresh `manage.py shell` with this environment."""
    code = f"from django.conf import settings; print([getattr(settings, n) for n in {list(names)!r}])"
    done = manage("shell", "-c", code, LISTEN_LOOPBACK_ONLY="1", **env)
    assert done.returncode == 0, done.stderr
    return ast.literal_eval(done.stdout.strip().splitlines()[-1])


def test_settings_derive_the_default_from_port_and_an_explicit_list_still_wins():
    assert settings_of("PORT", "WS_ALLOWED_ORIGINS", PORT="9001", ALLOWED_HOSTS="localhost,jobs.example.com") == [
        9001, ["http://localhost:9001", "http://jobs.example.com:9001"]]
    assert settings_of("WS_ALLOWED_ORIGINS")[0] == [
        "http://localhost:8000", "http://127.0.0.1:8000", "http://[::1]:8000"]  # PORT's default: runstack's
    explicit = "https://jobs.example.com,http://localhost:*"
    assert settings_of("WS_ALLOWED_ORIGINS", PORT="9001", WS_ALLOWED_ORIGINS=explicit) == [explicit.split(",")]


@pytest.mark.parametrize("port", ["0", "65536", "80a", "-1", "８０"])
def test_a_malformed_port_stops_start_up(port):
    done = manage("check", LISTEN_LOOPBACK_ONLY="1", PORT=port)
    assert done.returncode != 0 and "PORT=" in done.stderr


def test_the_stack_tells_daphne_its_port(monkeypatch):
    """`manage.py runstack` and the test stacks start Daphne through stack.start_daphne: its settings
    must know the port it serves on, or the default Origin list would name the wrong one."""
    spawned = {}
    monkeypatch.setattr(stack, "_spawn", lambda args, env, log, **kwargs: spawned.update(args=args, env=env))
    monkeypatch.setattr(stack, "wait_for_port", lambda *args, **kwargs: None)
    stack.start_daphne(8765, {"PORT": "1"})
    assert spawned["env"]["PORT"] == "8765" and spawned["args"][spawned["args"].index("-p") + 1] == "8765"


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
