"""Bodies that break parsers, sent to every operation that takes a body (from the OpenAPI schema,
so a new endpoint is covered the day it is added), sign-in included: each is a 400 JSON
`{"detail": …}`, never a 500, an HTML page or a traceback. And no error answer can fail to render,
whatever string it echoes (basic/api/parsers.py, basic/api/errors.py)."""
import json

import pytest
from rest_framework import exceptions
from rest_framework.test import APIClient

from basic.api import errors, parsers, renderers
from basic.core import untrusted_json
from basic.models import Job, Schedule, Student
from tests import job_kinds

pytestmark = pytest.mark.django_db

BODY_METHODS = {"post", "put", "patch"}
DEEP = 3000  # far past Python's recursion limit: the stock parser raised RecursionError
JUST_UNDER_THE_RECURSION_LIMIT = 900  # parses in C, but nothing should have to walk it afterwards

# (what it is, content type, body bytes)
HOSTILE_JSON = [
    ("deep arrays", "application/json", b"[" * DEEP),
    ("deep closed arrays", "application/json", b"[" * DEEP + b"]" * DEEP),
    ("deep objects", "application/json", b'{"a":' * DEEP + b"1" + b"}" * DEEP),
    ("deep under a key", "application/json", b'{"kind":' + b"[" * DEEP + b"]" * DEEP + b"}"),
    ("deep but parseable", "application/json",
     b'{"kind":' + b"[" * JUST_UNDER_THE_RECURSION_LIMIT + b"]" * JUST_UNDER_THE_RECURSION_LIMIT + b"}"),
    ("lone surrogate value", "application/json", b'{"name": "\\ud800", "kind": "\\ud800", "username": "\\udfff"}'),
    ("lone surrogate key", "application/json", b'{"\\ud800": 1}'),
    ("lone surrogate deep in a list", "application/json", b'{"params": {"x": ["ok", "\\udc00"]}}'),
    ("reversed pair", "application/json", b'{"kind": "\\udc00\\ud800"}'),
    ("surrogate as raw bytes", "application/json", b'{"kind": "\xed\xa0\x80"}'),
    ("invalid utf-8", "application/json", b'{"kind": "\xff\xfe\xc3"}'),
    ("utf-16 declared", "application/json; charset=utf-16", '{"kind": "x"}'.encode("utf-16")),
    ("rot13 declared", "application/json; charset=rot13", b'{"kind": "x"}'),
    ("idna declared", "application/json; charset=idna", b'{"kind": "\xc3\xa9"}'),
    ("NaN", "application/json", b'{"age": NaN}'),
    ("huge integer", "application/json", b'{"age": ' + b"9" * 5000 + b"}"),
    ("truncated", "application/json", b'{"kind": "'),
]
# Bodies that parse: whatever the fields say about them, the answer is JSON.
ODD_BUT_PARSEABLE = [
    ("NUL", "application/json", b'{"kind": "\\u0000", "name": "\\u0000", "username": "\\u0000"}'),
    ("empty", "application/json", b""),
    ("BOM", "application/json", b'\xef\xbb\xbf{"kind": "x"}'),
    ("valid pair", "application/json", b'{"kind": "\\ud83d\\ude00", "name": "\\ud83d\\ude00"}'),
]
HOSTILE_FORMS = [
    ("form, idna declared", "application/x-www-form-urlencoded; charset=idna", b"name=%C3%A9&kind=%FF"),
    ("form, rot13 declared", "application/x-www-form-urlencoded; charset=rot13", b"name=x"),
    ("form, invalid utf-8", "application/x-www-form-urlencoded", b"name=%ED%A0%80&kind=%FF&username=%C3"),
    ("multipart, idna declared", "multipart/form-data; boundary=b; charset=idna",
     b'--b\r\nContent-Disposition: form-data; name="name"\r\n\r\n\xc3\xa9\xff\r\n--b--\r\n'),
    ("multipart, invalid utf-8", "multipart/form-data; boundary=b",
     b'--b\r\nContent-Disposition: form-data; name="name\xed\xa0\x80"\r\n\r\n\xed\xa0\x80\xff\r\n--b--\r\n'),
]


@pytest.fixture(scope="module")
def body_operations(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        schema = SchemaGenerator().get_schema(request=None, public=True)
    found = [(method, path) for path, item in schema["paths"].items()
             for method, operation in item.items() if method in BODY_METHODS and "requestBody" in operation]
    assert ("post", "/api/auth/token/") in found and len(found) >= 8, found
    return found


@pytest.fixture
def real_paths(alice):
    """`{id}` in a schema path, filled with an object alice owns, so the body is what is refused."""
    student = Student.objects.create(name="s", age=20, **({"owner": alice} if _has_owner(Student) else {}))
    schedule = Schedule.objects.create(owner=alice, kind=job_kinds.NAME)
    job = Job.objects.create(kind=job_kinds.NAME, owner=alice)
    ids = {"/api/students/": student.pk, "/api/schedules/": schedule.pk, "/api/jobs/": job.pk}

    def fill(path: str) -> str:
        for prefix, pk in ids.items():
            if path.startswith(prefix):
                return path.replace("{id}", str(pk))
        assert "{" not in path, f"no object to fill {path} with"
        return path
    return fill


def _has_owner(model) -> bool:
    return any(field.name == "owner" for field in model._meta.get_fields())


def assert_refused_as_json(response, what: str, *allowed: int) -> None:
    assert response.status_code in (400, *allowed), (what, response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), (what, response["Content-Type"])
    body = json.loads(response.content.decode("utf-8"))  # strict UTF-8: nothing unencodable was echoed
    assert isinstance(body, dict) and body, (what, body)
    assert "Traceback" not in response.content.decode(), what


def send(client: APIClient, method: str, path: str, content_type: str, body: bytes):
    return client.generic(method.upper(), path, body, content_type=content_type)


@pytest.mark.parametrize("what, content_type, body", HOSTILE_JSON, ids=[case[0] for case in HOSTILE_JSON])
def test_every_json_endpoint_answers_a_hostile_json_body_with_a_400_json(
        api, anon, body_operations, real_paths, what, content_type, body, caplog):
    for method, path in body_operations:
        client = anon if path == "/api/auth/token/" else api
        response = send(client, method, real_paths(path), content_type, body)
        # 415 where an endpoint takes no JSON at all (uploads); still JSON.
        assert_refused_as_json(response, f"{what}: {method} {path}", 415)
        assert list(response.json()) == ["detail"], (what, method, path, response.json())
    assert "unhandled API error" not in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize("what, content_type, body", ODD_BUT_PARSEABLE, ids=[case[0] for case in ODD_BUT_PARSEABLE])
def test_every_json_endpoint_answers_odd_but_parseable_json_with_json(
        api, anon, body_operations, real_paths, what, content_type, body, caplog):
    for method, path in body_operations:
        client = anon if path == "/api/auth/token/" else api
        response = send(client, method, real_paths(path), content_type, body)
        assert_refused_as_json(response, f"{what}: {method} {path}", 200, 201, 202, 415)
    assert "unhandled API error" not in caplog.text and "Traceback" not in caplog.text


@pytest.mark.parametrize("what, content_type, body", HOSTILE_FORMS, ids=[case[0] for case in HOSTILE_FORMS])
def test_every_form_endpoint_survives_undecodable_form_bodies(
        api, anon, body_operations, real_paths, what, content_type, body, caplog):
    """Forms are decoded with replacement characters (Django's rule); a charset that can't decode
    at all is a 400, and whatever is echoed renders."""
    for method, path in body_operations:
        client = anon if path == "/api/auth/token/" else api
        response = send(client, method, real_paths(path), content_type, body)
        assert_refused_as_json(response, f"{what}: {method} {path}", 201, 200, 415, 429)
    assert "unhandled API error" not in caplog.text


def test_sign_in_with_a_deep_body_is_a_400_that_says_why(anon):
    response = send(anon, "post", "/api/auth/token/", "application/json", b"[" * DEEP)
    assert response.status_code == 400
    assert response.json() == {"detail": untrusted_json.TOO_DEEP.detail}


def test_a_lone_surrogate_is_refused_as_such(api):
    response = send(api, "post", "/api/students/", "application/json", b'{"name": "\\ud800", "age": 20}')
    assert response.status_code == 400
    assert response.json() == {"detail": untrusted_json.NOT_UNICODE.detail}
    assert not Student.objects.exists()


def test_a_valid_surrogate_pair_is_a_character_like_any_other(api):
    response = send(api, "post", "/api/students/", "application/json", b'{"name": "\\ud83d\\ude00", "age": 20}')
    assert response.status_code == 201, response.content
    assert response.json()["name"] == "\U0001F600"


@pytest.mark.parametrize("echoed", ["\ud800", "a\udfffb", {"\ud800": ["\udc00"]}, ["\udbff\ud800"]])
def test_an_error_answer_echoing_any_string_renders(rf, echoed):
    """Whatever reaches an error's detail (a serializer echoing a value, a future code path), the
    answer is a 400 JSON with the odd characters replaced, never a 500 HTML page."""
    from rest_framework.renderers import JSONRenderer
    from rest_framework.views import APIView

    request = APIView().initialize_request(rf.post("/api/students/"))
    response = errors.api_exception_handler(exceptions.ValidationError({"name": echoed}), {"request": request})
    assert response.status_code == 400
    text = JSONRenderer().render(response.data).decode("utf-8")
    assert "\ufffd" in text


@pytest.mark.parametrize("data", [{"name": "\ud800"}, ["\udfff", {"\ud800": 1}], "\ud800x"])
def test_the_api_renderer_never_fails_on_odd_strings(data):
    rendered = renderers.JsonRenderer().render(data)
    assert "\ufffd" in rendered.decode("utf-8")


MULTIPART_FIELD = b'--b\r\nContent-Disposition: form-data; name="username\xc3\xa9"\r\n\r\n\xc3\xa9\xff\r\n--b--\r\n'


@pytest.mark.parametrize("path", ["/accounts/login/", "/admin/login/", "/api/auth/token/", "/api/students/"])
@pytest.mark.parametrize("charset", ["punycode", "idna", "rot13", "base64"])
def test_a_body_in_a_charset_that_cannot_decode_text_is_a_400_on_django_forms_too(client, path, charset):
    """Django's own forms read `request.POST` in the CSRF check, before any view: a multipart body
    declaring such a charset was a UnicodeDecodeError or LookupError there, a 500 page."""
    content_type = f"multipart/form-data; boundary=b; charset={charset}"
    response = client.generic("POST", path, MULTIPART_FIELD, content_type=content_type)
    assert response.status_code == 400, (path, charset, response.status_code)
    if path.startswith("/api/"):
        assert response.json() == {"detail": parsers.BAD_CHARSET}


def test_a_charset_python_does_not_know_is_ignored_as_django_does(anon):
    response = anon.generic("POST", "/api/auth/token/", b'{"username": "x", "password": "y"}',
                            content_type="application/json; charset=no-such-charset")
    assert response.status_code == 400 and "non_field_errors" in response.json()  # wrong password, read fine
