"""A job kind for bench/bench_jobs.py (loaded with JOB_KIND_EXTRA_MODULES=bench.progress_kind): no
work at all, only BENCH_PROGRESS_STEPS calls of `ctx.progress`, as a body reporting every row does.
BENCH_PROGRESS_STEP_SECONDS makes each step wait that long first (a sleep, which yields on the gevent
worker), as a body doing I/O per row does: then its jobs run side by side and each one's updates
count against the worker's budget (JOB_PROGRESS_UPDATES_PER_SECOND)."""
import os
import time
from typing import Any

from rest_framework import serializers

from basic.jobs.kind_api import JobContext, JobKind, register


class NoParams(serializers.Serializer):
    """None."""


def run(ctx: JobContext) -> dict[str, Any]:
    steps = int(os.environ.get("BENCH_PROGRESS_STEPS", "1000"))
    pause = float(os.environ.get("BENCH_PROGRESS_STEP_SECONDS", "0"))
    for done in range(1, steps + 1):
        if pause:
            time.sleep(pause)
        ctx.progress(done, steps, f"Step {done} of {steps}")
    return {"steps": steps}


register(JobKind(name="bench_progress", label="Progress steps (bench)", params=NoParams, run=run,
                 media_type=None, description="Reports progress many times and does nothing else."))
