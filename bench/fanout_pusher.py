"""The job-event sender for bench_fanout's "project job" run: the project's own pusher
(`basic.jobs.publish.push_job_event`, as a worker calls it) in a process set up like a worker, with
the environment of the Daphne under test.

On start it creates a running job owned by the user whose API token is in BENCH_TOKEN and prints
`{"job": ID}`. Then, per stdin line `w ID` or `b ID`, it pushes one `job.progress` event whose
`message` is `w|ID|<time.time()>` (the send time, stamped just before the push) and answers
`{"seq": N}`.
"""
import json
import os
import sys
import time


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "app.settings")
    import django

    django.setup()
    from django.utils import timezone

    from basic.accounts.tokens import user_for_key
    from basic.jobs import publish as helpers
    from basic.models import Job

    user = user_for_key(os.environ["BENCH_TOKEN"])
    if user is None:
        sys.exit("BENCH_TOKEN is not a valid API token")
    job = Job.objects.create(kind="students_by_age", owner=user, status=Job.Status.RUNNING, started=timezone.now())
    print(json.dumps({"job": str(job.id)}), flush=True)
    for line in sys.stdin:
        kind, number = line.split()
        stamp = time.time()
        event = helpers.push_job_event("job.progress", job_id=job.id, owner_id=user.pk, status="running",
                                       progress=int(number) % 100, message=f"{kind}|{number}|{stamp:.6f}")
        print(json.dumps({"seq": event["seq"] if event else None}), flush=True)


if __name__ == "__main__":
    main()
