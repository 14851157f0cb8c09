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
    assert re.search(r"proxy_read_timeout\s+1h;", ws)
    # Every header is set at server level and no location sets one: a location with a single
    # proxy_set_header inherits none of the server's (nginx), so Host would be the upstream's name
    # and a client's own X-Forwarded-For would pass. tests/integration/test_load_balancer.py runs it.
    server = template[template.index("server {"):template.index("location")]
    assert "proxy_set_header Upgrade $http_upgrade;" in server
    assert "proxy_set_header Connection $connection_upgrade;" in server
    assert "proxy_set_header Host $http_host;" in server
    locations = template[template.index("location"):]
    assert "proxy_set_header" not in locations
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


def test_nginx_answers_a_clean_json_503_when_no_web_process_does(tmp_path):
    """The deploy recipe (an upstream line per web process) with every process down: nginx's own
    answer is a 503 a client retries (JSON, Retry-After), not a 502, and comes at once."""
    import httpx

    binary = nginx.require_nginx()
    port = stack.free_port()
    site = nginx.render_balancer(settings.REQUEST_MAX_BODY_BYTES, [f"127.0.0.1:{stack.free_port()}"] * 2,
                                 listen=f"127.0.0.1:{port}")
    with nginx.running(binary, nginx.write_config(tmp_path, site), port):
        for path in ("/api/jobs/", "/ws/jobs/1/"):
            answer = httpx.get(f"http://127.0.0.1:{port}{path}", timeout=5)
            assert answer.status_code == 503, (path, answer.status_code)
            assert answer.headers["content-type"] == "application/json" and answer.headers["retry-after"] == "5"
            assert answer.json() == {"detail": "The web server is unavailable right now; try again in a minute."}


def test_the_deploy_recipe_is_the_template_with_the_upstream_the_tests_run():
    """docs/deploy.md's nginx recipe: this template, `$web` naming an upstream group whose lines
    take a process out of rotation as tests/nginx.py's do (what test_load_balancer runs)."""
    recipe = (stack.BASE_DIR / "docs" / "deploy.md").read_text()
    assert "deploy/nginx.conf.template" in recipe and "set $web http://jobs_web;" in recipe
    servers = re.findall(r"^\s*server (\S+) ([^;]*);", recipe, flags=re.MULTILINE)
    assert servers and all(params == nginx.UPSTREAM_SERVER_PARAMS for _, params in servers), servers
    assert "upstream jobs_web {" in nginx.render_balancer(1, ["127.0.0.1:1"], "127.0.0.1:2")
    assert "set $web http://web:8000;" in nginx.TEMPLATE.read_text()  # what the recipe replaces
