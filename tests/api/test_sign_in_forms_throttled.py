"""Every form that checks a password is throttled with the same budget: the admin's login (25 wrong
passwords then the right one were once all accepted), both password-change forms, and any sign-in
route added later (found by walking the URL patterns, so a new unthrottled one fails here)."""
from collections.abc import Iterator

import pytest
from django.contrib.admin import AdminSite
from django.contrib.auth.views import LoginView, PasswordChangeView
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.authtoken.views import ObtainAuthToken

from basic.accounts import login_throttle

pytestmark = pytest.mark.django_db

WINDOW_START = 28_333_333 * 60  # a whole minute, so a test never straddles two counting windows
ADMIN_LOGIN = "/admin/login/"


@pytest.fixture(autouse=True)
def fast_and_still(settings, monkeypatch):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(login_throttle, "clock", lambda: WINDOW_START + 0.5)


def admin_attempt(client: Client, password: str, address: str = "10.2.0.1"):
    return client.post(ADMIN_LOGIN, {"username": "charlie", "password": password, "next": "/admin/"},
                       REMOTE_ADDR=address)


def test_admin_login_refuses_even_the_right_password_after_the_limit(charlie):
    client = Client()
    for _ in range(10):
        page = admin_attempt(client, "wrong")
        assert page.status_code == 200 and "correct username and password" in page.content.decode()
    refused = admin_attempt(client, "charlie-pw")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) == 60
    assert "Too many sign-in attempts" in refused.content.decode()
    assert "_auth_user_id" not in client.session
    assert client.get("/admin/").status_code == 302  # still not signed in


def test_admin_login_is_limited_per_username_across_addresses(charlie):
    codes = [admin_attempt(Client(), "wrong", address=f"10.3.0.{i}").status_code for i in range(10)]
    assert codes == [200] * 10
    assert admin_attempt(Client(), "charlie-pw", address="10.3.9.9").status_code == 429


def test_admin_login_shares_the_budget_with_the_api_and_the_console(charlie):
    for _ in range(4):
        Client().post("/api/auth/token/", {"username": "charlie", "password": "wrong"}, REMOTE_ADDR="10.4.0.1")
        Client().post("/accounts/login/", {"username": "charlie", "password": "wrong"}, REMOTE_ADDR="10.4.0.2")
    assert [admin_attempt(Client(), "wrong", address="10.4.0.3").status_code for _ in range(3)] == [200, 200, 429]


def test_admin_login_below_the_limit_still_signs_in(charlie):
    client = Client()
    response = admin_attempt(client, "charlie-pw")
    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert Client().get(ADMIN_LOGIN).status_code == 200  # GET is never counted


# --- every password-checking route, found by walking the URL patterns ---------------------------------

PASSWORD_VIEWS = (LoginView, PasswordChangeView, ObtainAuthToken)
ADMIN_PASSWORD_METHODS = {AdminSite.login: "login", AdminSite.password_change: "password_change"}


def _kind(callback) -> str | None:
    """"login" or "password_change" if this view checks a password, else None."""
    seen = callback
    while seen is not None:
        view_class = getattr(seen, "view_class", None) or getattr(seen, "cls", None)
        if isinstance(view_class, type) and issubclass(view_class, PASSWORD_VIEWS):
            return "password_change" if issubclass(view_class, PasswordChangeView) else "login"
        method = getattr(seen, "__func__", None)
        if method in ADMIN_PASSWORD_METHODS:
            return ADMIN_PASSWORD_METHODS[method]
        seen = getattr(seen, "__wrapped__", None)
    return None


def _walk(patterns, prefix: str = "") -> Iterator[tuple[str, str]]:
    for entry in patterns:
        route = prefix + str(entry.pattern)
        if isinstance(entry, URLResolver):
            yield from _walk(entry.url_patterns, route)
        elif isinstance(entry, URLPattern) and (kind := _kind(entry.callback)):
            yield "/" + route.lstrip("^").rstrip("$"), kind


def password_routes() -> list[tuple[str, str]]:
    return sorted(set(_walk(get_resolver().url_patterns)))


def test_the_walk_finds_every_known_sign_in_form():
    paths = {path for path, _kind in password_routes()}
    assert {"/api/auth/token/", "/accounts/login/", "/admin/login/", "/accounts/password_change/",
            "/admin/password_change/"} <= paths


def test_every_password_checking_route_answers_429_after_the_limit(settings, monkeypatch, alice, charlie):
    settings.LOGIN_RATE = "2/min"
    routes = password_routes()
    for number, (path, kind) in enumerate(routes):
        address = f"10.5.{number}.1"
        client = Client()
        if kind == "password_change":
            client.force_login(charlie)
            body = {"old_password": "wrong", "new_password1": "n3w-passw0rd!", "new_password2": "n3w-passw0rd!"}
        else:
            body = {"username": "alice", "password": "wrong"}
        codes = [client.post(path, body, REMOTE_ADDR=address).status_code for _ in range(3)]
        assert codes[2] == 429 and 429 not in codes[:2], (path, codes)
        monkeypatch.setattr(login_throttle, "clock", lambda n=number: WINDOW_START + 60 * (n + 1) + 0.5)  # fresh window
