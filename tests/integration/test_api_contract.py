"""The OpenAPI schema is a contract a client generator can trust: schemathesis generates requests
from `/api/schema/` (valid and invalid ones, then sequences that reuse the ids it got back) and
sends them to the real stack (Daphne, a gevent worker, Redis, the database of this run). Every
answer must be documented: its status code, its content type and its body's shape, and none may
be a server error.

A run is random (schemathesis's property-based generation); a failure prints the seed, and
SCHEMATHESIS_SEED=<seed> replays it. SCHEMATHESIS_MAX_EXAMPLES (default 25) bounds the cases per
operation, and so the run's time (about a minute)."""
import os
import subprocess
import sys

import pytest

from tests.live import live_stack

pytestmark = pytest.mark.integration

CHECKS = ["not_a_server_error", "status_code_conformance", "content_type_conformance",
          "response_schema_conformance"]
CONTRACT_ENV = {
    "STUDENTS_MAX": "2000",  # generate answers 409 past it, instead of writing 100,000 rows a call
    "STUDENT_GENERATE_RATE": "1000/min",
    "PAGE_FETCH_TIMEOUT_SECONDS": "2",  # fetches of made-up hosts end soon
}
SCHEMATHESIS = "import sys; from schemathesis.cli import schemathesis; sys.exit(schemathesis())"


def test_every_answer_of_the_live_api_is_documented_in_its_schema(stack_root, tmp_path):
    with live_stack(stack_root, "contract", concurrency=4, **CONTRACT_ENV) as live:
        args = [
            sys.executable, "-c", SCHEMATHESIS, "run", f"{live.base_url}/api/schema/",
            "--header", f"Authorization: Token {live.token}",
            "--checks", ",".join(CHECKS),
            "--max-examples", os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "25"),
            "--workers", "1", "--request-timeout", "30",
            "--suppress-health-check", "too_slow",  # a busy test machine is not the API's fault
            "--output-truncate", "false",
        ]
        if os.environ.get("SCHEMATHESIS_SEED"):
            args += ["--seed", os.environ["SCHEMATHESIS_SEED"]]
        # In tmp_path: schemathesis and Hypothesis write their caches into the working directory.
        done = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=900,
                              env={**os.environ, "NO_COLOR": "1"})
    report = f"{done.stdout[-20000:]}\n{done.stderr[-3000:]}"
    assert done.returncode == 0, f"schemathesis found contract violations:\n{report}"
    assert "Tested: " in done.stdout and " passed" in done.stdout, report
