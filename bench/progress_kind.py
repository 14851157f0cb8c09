"""A job kind for bench/bench_jobs.py (loaded with JOB_KIND_EXTRA_MODULES=bench.progress_kind): no
work at all, only BENCH_PROGRESS_STEPS calls of `ctx.progress`, as a body reporting every row does."""
import os
from typing import Any

from rest_framework import serializers

from basic.jobs.kind_api import JobContext, JobKind, register


class NoParams(serializers.Serializer):
    """None."""


def run(ctx: JobContext) -> dict[str, Any]:
    steps = int(os.environ.get("BENCH_PROGRESS_STEPS", "1000"))
    for done in range(1, steps + 1):
        ctx.progress(done, steps, f"Step {done} of {steps}")
    return {"steps": steps}


register(JobKind(name="bench_progress", label="Progress steps (bench)", params=NoParams, run=run,
                 media_type=None, description="Reports progress many times and does nothing else."))
