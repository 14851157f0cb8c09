"""Run under callgrind by bench/bench_instructions.py: a job start through the REST view (Django's
test client) and its run (the lifecycle, in this process), JOBS times after a warm-up, in the code
tree JOBS_TREE names (this file may be newer than that tree, so it uses nothing of bench/ but its
own lines)."""
import json
import os
import sys

TREE = os.environ["JOBS_TREE"]
sys.path.insert(0, TREE)
os.chdir(TREE)
os.environ.update({"JOB_TRIGGER_RATE": "1000000/min", "LOG_LEVEL": "WARNING", "DJANGO_SETTINGS_MODULE": "app.settings"})

import django  # noqa: E402

django.setup()

from django.test import Client  # noqa: E402

from basic.accounts.tokens import user_with_token  # noqa: E402
from basic.jobs import runner  # noqa: E402

WARM_UP = 20


def main(jobs: int, phase: str) -> None:
    _user, key = user_with_token(username=f"instructions-{os.getpid()}")
    client = Client(HTTP_AUTHORIZATION=f"Token {key}", HTTP_HOST="localhost")
    made = client.post("/api/students/generate/", {"count": 100}, content_type="application/json")
    assert made.status_code < 300, made.content

    def start() -> str:
        response = client.post("/api/jobs/", {"kind": "students_by_age"}, content_type="application/json")
        assert response.status_code == 202, response.content
        return json.loads(response.content)["id"]

    for _ in range(WARM_UP):
        runner.run_job(start())
    started = [start() for _ in range(jobs)]
    if phase == "run":
        for job_id in started:
            runner.run_job(job_id)


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
