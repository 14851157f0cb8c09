"""docker-compose.yml publishes nothing unguarded: the web port is nginx's (Daphne's is internal),
Flower listens on loopback only and needs a password compose refuses to start without, and nginx's
body cap is the web server's. Compose itself can't run here; the file and the nginx config can be
read and checked (`nginx -t`, tests/nginx.py)."""
import re

import pytest
import yaml
from django.conf import settings

from basic.ops import stack
from tests import nginx

COMPOSE = stack.BASE_DIR / "docker-compose.yml"


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def default_of(value: str) -> str:
    """The default of a `${NAME:-default}` interpolation."""
    match = re.fullmatch(r"\$\{(\w+):-([^}]*)\}", value)
    assert match, value
    return match[2]


def test_only_nginx_publishes_the_web_port_and_daphne_trusts_only_it(compose):
    services = compose["services"]
    assert "ports" not in services["web"], "Daphne must be reachable through nginx only"
    assert services["nginx"]["ports"] == ["8000:8000"]
    assert services["nginx"]["depends_on"]["web"] == {"condition": "service_healthy"}
    # X-Forwarded-For is believed (sign-in throttling counts clients) only because nginx sets it.
    assert "--proxy-headers" in services["web"]["command"]
    published = {name for name, service in services.items() if service.get("ports")}
    assert published == {"nginx", "flower"}


def test_flower_is_on_loopback_and_needs_a_password_with_no_default(compose):
    flower = compose["services"]["flower"]
    assert flower["ports"] and all(port.startswith("127.0.0.1:") for port in flower["ports"]), flower["ports"]
    auth = flower["environment"]["FLOWER_BASIC_AUTH"]
    # `${VAR:?message}`: compose refuses to start (any service) without it; no password in the repo.
    assert re.fullmatch(r"\$\{FLOWER_BASIC_AUTH:\?[^}]+\}", auth), auth
    assert not any("basic-auth" in part or "basic_auth" in part for part in flower["command"])


def test_nginx_caps_bodies_at_the_web_servers_cap(compose):
    services = compose["services"]
    app_default = default_of(compose["x-app-env"]["REQUEST_MAX_BODY_BYTES"])
    nginx_default = default_of(services["nginx"]["environment"]["REQUEST_MAX_BODY_BYTES"])
    assert int(app_default) == int(nginx_default) == settings.REQUEST_MAX_BODY_BYTES
    assert services["web"]["environment"]["REQUEST_MAX_BODY_BYTES"] == compose["x-app-env"]["REQUEST_MAX_BODY_BYTES"]
    # The image renders /etc/nginx/templates/*.template, substituting only the filtered variables.
    mount = services["nginx"]["volumes"][0].split(":")
    assert (stack.BASE_DIR / mount[0]).resolve() == nginx.TEMPLATE
    assert mount[1] == "/etc/nginx/templates/default.conf.template"
    assert re.search(services["nginx"]["environment"]["NGINX_ENVSUBST_FILTER"], "REQUEST_MAX_BODY_BYTES")
    template = nginx.TEMPLATE.read_text()
    assert "client_max_body_size ${REQUEST_MAX_BODY_BYTES};" in template
    assert set(re.findall(r"\$\{(\w+)\}", template)) == {"REQUEST_MAX_BODY_BYTES"}


def test_nginx_passes_sockets_and_sets_the_client_address_itself():
    template = "\n".join(line.split("#")[0] for line in nginx.TEMPLATE.read_text().splitlines())
    ws = template[template.index("location /ws/"):]
    ws = ws[:ws.index("}")]
    assert "proxy_set_header Upgrade $http_upgrade;" in ws
    assert "proxy_set_header Connection $connection_upgrade;" in ws
    assert re.search(r"proxy_read_timeout\s+1h;", ws)
    # Daphne takes the FIRST X-Forwarded-For address; appending ($proxy_add_x_forwarded_for) would
    # let a client pick its own address, and with it a fresh sign-in budget.
    assert "proxy_set_header X-Forwarded-For $remote_addr;" in template
    assert "$proxy_add_x_forwarded_for" not in template
    assert "proxy_set_header X-Forwarded-Proto $scheme;" in template


def test_nginx_accepts_the_config(tmp_path):
    binary = nginx.require_nginx()
    config = nginx.write_config(tmp_path, nginx.render(settings.REQUEST_MAX_BODY_BYTES))
    done = nginx.check(binary, config)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "test is successful" in done.stderr
