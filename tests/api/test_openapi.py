"""The OpenAPI schema: valid, generated without a warning, and every error answer documented with its
body (basic/api/openapi.py). The live contract run is tests/integration/test_api_contract.py."""
import os
import subprocess
import sys

import pytest

from basic.ops import stack

BODY_METHODS = {"post", "put", "patch"}


def test_the_schema_validates_with_no_warning(tmp_path):
    """`manage.py spectacular --validate --fail-on-warn`, in its own process: warnings are counted
    per process, and an enum naming collision (e.g. fields named `kind`) is one."""
    env = {**os.environ, "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}"}
    done = subprocess.run([sys.executable, "manage.py", "spectacular", "--validate", "--fail-on-warn",
                           "--file", str(tmp_path / "schema.yaml")],
                          cwd=stack.BASE_DIR, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Warning" not in done.stderr, done.stderr


@pytest.fixture(scope="module")
def schema(django_db_blocker):
    from drf_spectacular.generators import SchemaGenerator

    with django_db_blocker.unblock():
        return SchemaGenerator().get_schema(request=None, public=True)


def operations(schema):
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            yield path, method, operation


def test_every_operation_documents_its_error_answers(schema):
    for path, method, operation in operations(schema):
        codes = set(operation["responses"])
        assert {"401", "403", "503"} <= codes, (method, path, codes)
        if "{" in path:
            assert "404" in codes, (method, path)
        if "requestBody" in operation:
            assert {"400", "413"} <= codes, (method, path)
        for code, response in operation["responses"].items():
            if code >= "400":
                body = response["content"]["application/json"]["schema"]["$ref"]
                assert body.endswith("/ValidationError" if code == "400" else "/Error"), (method, path, code)


def test_throttled_operations_document_429_and_retry_after(schema):
    throttled = {("post", "/api/auth/token/"), ("post", "/api/jobs/"), ("post", "/api/students/generate/"),
                 ("post", "/api/students/by-age-report/"), ("post", "/api/pages/"), ("post", "/api/thumbnails/"),
                 ("post", "/api/batches/")}
    for path, method, operation in operations(schema):
        if (method, path) in throttled:
            assert "Retry-After" in operation["responses"]["429"]["headers"], (method, path)
        else:
            assert "429" not in operation["responses"], (method, path)


def test_request_bodies_are_documented_as_accepted(schema):
    jobs = schema["paths"]["/api/jobs/"]["post"]["requestBody"]["content"]
    assert set(jobs) == {"application/json", "multipart/form-data"}
    shapes = schema["components"]["schemas"]
    json_kinds = set(shapes["JobStartRequest"]["discriminator"]["mapping"])
    assert "students_by_age" in json_kinds and "page_fetch" in json_kinds
    assert "thumbnails" not in json_kinds, "an upload can't travel in JSON"
    form = shapes["JobStartFormRequest"]["properties"]
    assert form["image"] == {**form["image"], "type": "string", "format": "binary"}
    assert set(schema["paths"]["/api/thumbnails/"]["post"]["requestBody"]["content"]) == {"multipart/form-data"}
    downloads = schema["paths"]["/api/jobs/{id}/download/"]["get"]["responses"]["200"]["content"]
    assert {"text/csv", "application/zip", "*/*"} <= set(downloads)
    assert "/api/schema/" not in schema["paths"]
