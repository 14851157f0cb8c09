"""API tokens are stored hashed: the database never holds a key, each sign-in makes a new token
shown once, a user lists and revokes only their own, and a revoked key stops working at once for
REST and for new sockets (basic/accounts/tokens.py, basic/api/tokens.py)."""
import hashlib
import json

import pytest
from django.db import connection
from rest_framework.test import APIClient

from basic.models import ApiToken
from tests.consumers.conftest import connect, fresh_limits, receive_until_closed  # noqa: F401  (socket fixtures)

pytestmark = pytest.mark.django_db

LISTED_FIELDS = {"id", "name", "prefix", "created", "last_used"}


def sign_in(username: str, password: str, **extra: str):
    return APIClient().post("/api/auth/token/", {"username": username, "password": password, **extra}, format="json")


def with_key(key: str) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def stored_rows() -> list[tuple]:
    """Every row of the token tables, read past the ORM."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT * FROM basic_apitoken")
        rows = list(cursor.fetchall())
        cursor.execute("SELECT * FROM authtoken_token")
        return rows + list(cursor.fetchall())


def test_the_database_holds_a_digest_never_the_key(alice):
    made = sign_in("alice", "alice-pw", name="jobs CLI on laptop")
    assert made.status_code == 200
    key = made.json()["token"]
    rows = stored_rows()
    assert len(rows) == 2  # the fixture's token and this one, both in basic_apitoken
    for secret in (key, alice.token):
        assert not any(secret in str(value) for row in rows for value in row), "a raw key is in the database"
        digest = hashlib.sha256(secret.encode()).hexdigest()
        assert ApiToken.objects.filter(digest=digest, prefix=secret[:8]).count() == 1


def test_signing_in_twice_gives_two_different_working_tokens(alice):
    first, second = sign_in("alice", "alice-pw").json(), sign_in("alice", "alice-pw", name="laptop").json()
    assert first["token"] != second["token"] and first["id"] != second["id"]
    assert set(second) == {"token"} | LISTED_FIELDS
    assert second["name"] == "laptop" and second["prefix"] == second["token"][:8]
    assert len(second["token"]) >= 43  # 32 random bytes
    for made in (first, second):
        assert with_key(made["token"]).get("/api/jobs/").status_code == 200


def test_the_list_shows_only_your_tokens_and_never_a_key_or_digest(alice, bob):
    laptop = sign_in("alice", "alice-pw", name="laptop").json()
    sign_in("bob", "bob-pw", name="bob's")
    answer = with_key(laptop["token"]).get("/api/auth/tokens/")
    assert answer.status_code == 200
    listed = answer.json()["results"]
    assert {token["id"] for token in listed} == set(ApiToken.objects.filter(user=alice).values_list("id", flat=True))
    assert len(listed) == 2 and listed[0]["name"] == "laptop"  # newest first
    assert all(set(token) == LISTED_FIELDS for token in listed)
    text = answer.content.decode()
    for secret in [laptop["token"], alice.token, *ApiToken.objects.values_list("digest", flat=True)]:
        assert secret not in text


def test_a_revoked_token_stops_working_at_once(alice):
    keep, revoke = sign_in("alice", "alice-pw").json(), sign_in("alice", "alice-pw").json()
    assert with_key(revoke["token"]).get("/api/jobs/").status_code == 200
    assert with_key(keep["token"]).delete(f"/api/auth/tokens/{revoke['id']}/").status_code == 204
    refused = with_key(revoke["token"]).get("/api/jobs/")
    assert refused.status_code == 401 and refused["WWW-Authenticate"] == "Token"
    assert refused.json() == {"detail": "Invalid token."}
    assert with_key(keep["token"]).get("/api/jobs/").status_code == 200
    # A token may revoke itself (signing a client out).
    assert with_key(keep["token"]).delete(f"/api/auth/tokens/{keep['id']}/").status_code == 204
    assert with_key(keep["token"]).get("/api/jobs/").status_code == 401


def test_another_users_token_is_404_and_stays(alice, bob, charlie):
    bobs = ApiToken.objects.get(user=bob)
    missing = with_key(alice.token).delete("/api/auth/tokens/999999/")
    assert missing.status_code == 404
    for caller in (alice, charlie):  # staff too: the API revokes only your own (the admin revokes any)
        answer = with_key(caller.token).delete(f"/api/auth/tokens/{bobs.id}/")
        assert answer.status_code == 404 and answer.json() == missing.json()  # exactly like a missing one
    assert ApiToken.objects.filter(id=bobs.id).exists()
    assert with_key(bob.token).get("/api/jobs/").status_code == 200


@pytest.mark.parametrize("body, field", [
    ({"username": "alice", "password": "wrong"}, "non_field_errors"),
    ({"username": "alice"}, "password"),
    ({"username": "alice", "password": "alice-pw", "name": "x" * 101}, "name"),
    ({"username": "alice", "password": "alice-pw", "name": "a\u0000b"}, "name"),
    ({"username": "alice", "password": "alice-pw", "name": ["list"]}, "name"),
])
def test_bad_sign_in_is_a_400_naming_the_field_and_makes_no_token(alice, body, field):
    answer = APIClient().post("/api/auth/token/", body, format="json")
    assert answer.status_code == 400 and answer["Content-Type"] == "application/json"
    assert field in answer.json()
    assert ApiToken.objects.filter(user=alice).count() == 1  # only the fixture's


@pytest.mark.parametrize("method, path, code", [
    ("delete", "/api/auth/tokens/abc/", 404),
    ("delete", "/api/auth/tokens/99999999999999999999999999/", 404),
    ("delete", "/api/auth/tokens/-1/", 404),
    ("get", "/api/auth/tokens/?limit=-1", 400),
    ("get", "/api/auth/tokens/?offset=x", 400),
    ("post", "/api/auth/tokens/", 405),
])
def test_bad_requests_to_the_token_list_are_4xx_json(alice, method, path, code):
    answer = getattr(with_key(alice.token), method)(path)
    assert answer.status_code == code and answer["Content-Type"] == "application/json"
    assert answer.json()


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token " + "x" * 500, "Token \u00e9t\u00e9", "Token forged"])
def test_anonymous_or_a_bad_key_is_401_with_the_token_challenge(alice, header):
    for path in ("/api/auth/tokens/", f"/api/auth/tokens/{ApiToken.objects.get(user=alice).id}/"):
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=header)
        answer = client.get(path) if path.endswith("tokens/") else client.delete(path)
        assert answer.status_code == 401 and answer["WWW-Authenticate"] == "Token"
        assert "detail" in answer.json()
    assert APIClient().get("/api/auth/tokens/").status_code == 401
    assert ApiToken.objects.filter(user=alice).exists()


def test_an_inactive_users_token_is_refused(alice):
    alice.is_active = False
    alice.save()
    assert with_key(alice.token).get("/api/jobs/").status_code == 401


# --- sockets: the same lookup ------------------------------------------------------------------------

@pytest.mark.django_db(transaction=True)
async def test_a_token_works_for_sockets_until_revoked(connect, alice):  # noqa: F811
    from channels.db import database_sync_to_async

    feed, _ = await connect("/ws/events/", token=alice.token)
    assert await feed.receive_nothing(0.2)  # open, not refused
    framed, connected = await connect("/ws/events/")
    assert connected
    await framed.send_json_to({"type": "auth", "token": alice.token})
    assert await framed.receive_nothing(0.2)
    await feed.disconnect()
    await framed.disconnect()

    await database_sync_to_async(ApiToken.objects.filter(user=alice).delete)()
    refused, _ = await connect("/ws/events/", token=alice.token)
    assert (await receive_until_closed(refused))[1] == 4401
    framed, _ = await connect("/ws/events/")
    await framed.send_json_to({"type": "auth", "token": alice.token})
    frames, code = await receive_until_closed(framed)
    assert code == 4401 and json.loads(frames[0]["text"])["code"] == "unauthorized"


# --- the admin ----------------------------------------------------------------------------------------

def test_the_admin_lists_tokens_without_keys_and_revokes_them(alice, charlie):
    from django.test import Client

    admin = Client()
    admin.force_login(charlie)
    page = admin.get("/admin/basic/apitoken/")
    assert page.status_code == 200
    text = page.content.decode()
    assert alice.token[:8] in text and alice.token not in text
    assert ApiToken.objects.get(user=alice).digest not in text
    assert admin.get("/admin/authtoken/tokenproxy/").status_code == 404  # DRF's admin of plain keys is gone
    assert admin.get("/admin/basic/apitoken/add/").status_code == 403  # a key is shown only to its owner
    alices = ApiToken.objects.get(user=alice)
    detail = admin.get(f"/admin/basic/apitoken/{alices.pk}/change/").content.decode()
    assert alices.digest not in detail and alices.prefix in detail
    revoked = admin.post("/admin/basic/apitoken/", {"action": "revoke_tokens", "_selected_action": [alices.pk]})
    assert revoked.status_code == 302
    assert not ApiToken.objects.filter(pk=alices.pk).exists()
    assert with_key(alice.token).get("/api/jobs/").status_code == 401


def test_the_schema_documents_the_token_endpoints_without_secrets():
    from drf_spectacular.generators import SchemaGenerator

    schema = SchemaGenerator().get_schema(request=None, public=True)
    shapes = schema["components"]["schemas"]
    sign_in_answer = schema["paths"]["/api/auth/token/"]["post"]["responses"]["200"]
    assert sign_in_answer["content"]["application/json"]["schema"]["$ref"].endswith("/NewApiToken")
    assert set(shapes["NewApiToken"]["properties"]) == {"token"} | LISTED_FIELDS
    assert "name" in shapes["SignInRequest"]["properties"]
    assert set(shapes["ApiToken"]["properties"]) == LISTED_FIELDS  # listed: no key, no digest
    assert schema["paths"]["/api/auth/tokens/"]["get"]["responses"]["200"]["content"]["application/json"][
        "schema"]["$ref"].endswith("/PaginatedApiTokenList")
    assert set(schema["paths"]["/api/auth/tokens/{id}/"]) == {"delete"}
    assert {"204", "401", "404"} <= set(schema["paths"]["/api/auth/tokens/{id}/"]["delete"]["responses"])
