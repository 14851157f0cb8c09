"""The OpenAPI schema is a contract a client generator can trust: schemathesis generates requests
from `/api/schema/` (valid and invalid ones, then sequences that reuse the ids it got back) and
sends them to the real stack (Daphne, a gevent worker, Redis, the database of this run). Every
answer must be documented: its status code, its content type and its body's shape, and none may
be a server error.

It runs against a stack as deployed (DEBUG off, on PostgreSQL: `make test`'s second pass) and as a
developer runs it (DEBUG=1, whose error pages Django makes differently: basic/api/errors.py keeps
them JSON under /api/; on SQLite, as `make run`). Each mode runs once, on the database it is used
with: DEBUG changes no query, and a database changes no error page (the PostgreSQL-only cases, NUL
characters that PostgreSQL refuses, are asserted in test_what_schemathesis_once_found... on both).

A run is random (schemathesis's property-based generation); a failure prints the seed, and
SCHEMATHESIS_SEED=<seed> replays it. SCHEMATHESIS_MAX_EXAMPLES (default 25) bounds the cases per
operation, and so the run's time (about a minute a pass)."""
import os
import subprocess
import sys

import httpx
import pytest

from tests import databases
from tests.live import LiveStack, live_stack

pytestmark = pytest.mark.integration

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance"]
CONTRACT_ENV = {
    "STUDENTS_MAX": "2000",  # generate answers 409 past it, instead of writing 100,000 rows a call
    "STUDENT_GENERATE_RATE": "1000/min",
    "PAGE_FETCH_TIMEOUT_SECONDS": "2",  # fetches of made-up hosts end soon
}
SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


DEBUG_MODES = ["1"] if databases.chosen_database() == "sqlite" else ["0"]


@pytest.fixture(scope="module", params=DEBUG_MODES, ids=lambda debug: f"DEBUG={debug}")
def live(stack_root, request):
    with live_stack(stack_root, f"contract-debug{request.param}", concurrency=4, DEBUG=request.param,
                    **CONTRACT_ENV) as running:
        yield running


def test_every_answer_of_the_live_api_is_documented_in_its_schema(live: LiveStack, tmp_path):
    args = [
        sys.executable, "-c", SCHEMATHESIS, "run", f"{live.base_url}/api/schema/",
        "--header", f"Authorization: Token {live.token}",
        "--checks", ",".join(CHECKS),
        "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
        "--workers", "1", "--request-timeout", "30",
        "--suppress-health-check", "too_slow",  # a busy test machine is not the API's fault
        "--output-truncate", "false",
        # Revoking a token is tested in tests/api/test_api_tokens.py; here it would revoke the
        # run's own token and leave every later operation a (documented) 401.
        "--exclude-operation-id", "auth_tokens_destroy",
    ]
    if os.environ.get("SCHEMATHESIS_SEED"):
        args += ["--seed", os.environ["SCHEMATHESIS_SEED"]]
    # In tmp_path: schemathesis and Hypothesis write their caches into the working directory.
    done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                          env={**os.environ, "NO_COLOR": "1"})
    report = f"{done.stdout[-20000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"schemathesis found contract violations:\n{report}"
    assert "Tested: " in done.stdout and " passed" in done.stdout, report


def test_what_schemathesis_once_found_is_answered_as_documented(live: LiveStack):
    """Each was a server error, an outage that wasn't one, or an answer that was not JSON."""
    headers = {"Authorization": f"Token {live.user_token('dora')}"}  # not the fuzzed account's limits
    with httpx.Client(base_url=live.base_url, headers=headers, timeout=30) as http:
        # A multipart body with no parts: Twisted (under Daphne) answered a bare 400 by itself.
        boundary = "c637e12e2b1a998d80d1b087531af51c"
        empty = http.post("/api/students/generate/", content=f"--{boundary}--\r\n".encode(),
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
        assert empty.status_code == 400 and empty.headers["content-type"] == "application/json", empty.text
        assert "count" in empty.json(), empty.text
        # Over DATA_UPLOAD_MAX_MEMORY_SIZE (2.5 MB): was a 500.
        big = http.post("/api/students/", json={"name": "x" * 3_000_000, "age": 3})
        assert big.status_code == 413 and "too large" in big.json()["detail"], big.text
        # A URL under /api/ that matches no route: was Django's HTML page.
        # With DEBUG=1 these were Django's technical 404 page (it never calls handler404).
        for path in ("/api/jobs/%C2%84/", "/api/jobs//", "/api/schedules/2.6e-195/", "/api/students/abc/",
                     "/api/nothing-here"):
            nowhere = http.get(path)
            assert nowhere.status_code == 404, (path, nowhere.text)
            assert nowhere.headers["content-type"] == "application/json", (path, nowhere.text)
            assert nowhere.json() == {"detail": "Not found."}, path
        # A NUL character PostgreSQL refuses: was a 503 saying the database is down (SQLite takes it).
        nul = http.get("/api/jobs/", params={"kind": "\x00"})
        assert nul.status_code in (200, 400) and nul.headers["content-type"] == "application/json", nul.text
        nul_params = http.post("/api/schedules/", json={"kind": "students_by_age", "every": 60,
                                                         "params": {"a\u0000": "\u0000"}})
        assert nul_params.status_code in (201, 400), nul_params.text
