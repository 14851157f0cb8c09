"""Sign-in throttling: LOGIN_RATE attempts per client address and per username, shared by the
token endpoint (429 JSON) and the HTML form (429 page saying how long to wait)."""
import pytest
from rest_framework.test import APIClient

from basic.accounts import login_throttle

pytestmark = pytest.mark.django_db

WINDOW_START = 28_333_333 * 60  # a whole minute, so a test never straddles two counting windows


@pytest.fixture(autouse=True)
def fast_and_still(settings, monkeypatch):
    """Cheap password hashing (each attempt hashes once, even for unknown users) and a clock that
    stands still at the start of a window."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
    monkeypatch.setattr(login_throttle, "clock", lambda: WINDOW_START + 0.5)

TOKEN = "/api/auth/token/"
LOGIN = "/accounts/login/"


def token_attempt(username: str, password: str = "wrong", address: str = "10.0.0.1"):
    return APIClient().post(TOKEN, {"username": username, "password": password}, format="json",
                            REMOTE_ADDR=address)


def test_token_endpoint_is_throttled_per_username_even_across_addresses(alice):
    codes = [token_attempt("alice", address=f"10.0.0.{i}").status_code for i in range(11)]
    assert codes == [400] * 10 + [429]
    refused = token_attempt("alice", "alice-pw", address="10.9.9.9")  # even the right password waits
    assert refused.status_code == 429
    assert "Too many sign-in attempts" in refused.json()["detail"]
    assert int(refused["Retry-After"]) == 60
    assert token_attempt("bob", address="10.9.9.8").status_code == 400  # other names are not held up


def test_token_endpoint_is_throttled_per_address_across_usernames(alice):
    codes = [token_attempt(f"user{i}", address="10.0.0.7").status_code for i in range(11)]
    assert codes == [400] * 10 + [429]
    assert token_attempt("alice", "alice-pw", address="10.0.0.7").status_code == 429
    assert token_attempt("alice", "alice-pw", address="10.0.0.8").status_code == 200


def test_rate_comes_from_settings(alice, settings):
    settings.LOGIN_RATE = "2/min"
    assert [token_attempt("alice").status_code for _ in range(3)] == [400, 400, 429]


@pytest.mark.parametrize("body", [[1, 2], {"username": {"x": 1}}, {"username": 12345}, {}])
def test_odd_bodies_are_counted_by_address_and_never_crash(alice, body):
    codes = [APIClient().post(TOKEN, body, format="json").status_code for _ in range(11)]
    assert codes == [400] * 10 + [429]


def test_html_form_answers_429_with_a_page_that_says_to_wait(client, alice):
    for _ in range(10):
        page = client.post(LOGIN, {"username": "alice", "password": "wrong"})
        assert page.status_code == 200  # the form again, with its error
    page = client.post(LOGIN, {"username": "alice", "password": "alice-pw"})
    assert page.status_code == 429
    assert int(page["Retry-After"]) == 60
    html = page.content.decode()
    assert "Too many sign-in attempts" in html and "wait" in html
    assert "_auth_user_id" not in client.session


def test_form_and_api_share_the_same_budget(client, alice):
    for _ in range(5):
        client.post(LOGIN, {"username": "alice", "password": "wrong"})
    codes = [token_attempt("alice", address="10.1.1.1").status_code for _ in range(6)]
    assert codes == [400] * 5 + [429]
    assert client.post(LOGIN, {"username": "alice", "password": "alice-pw"}).status_code == 429


def test_signing_in_still_works_below_the_limit(client, alice):
    response = client.post(LOGIN, {"username": "alice", "password": "alice-pw"})
    assert response.status_code == 302
    assert client.get(LOGIN).status_code == 200  # GET is never throttled


def test_the_next_window_starts_afresh(alice, settings, monkeypatch):
    settings.LOGIN_RATE = "1/min"
    assert [token_attempt("alice").status_code for _ in range(2)] == [400, 429]
    monkeypatch.setattr(login_throttle, "clock", lambda: WINDOW_START + 60.5)
    assert token_attempt("alice", "alice-pw").status_code == 200


def test_a_cache_outage_lets_sign_in_work(alice, monkeypatch):
    def down(*args, **kwargs):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(login_throttle, "_count", down)
    assert token_attempt("alice", "alice-pw").status_code == 200
