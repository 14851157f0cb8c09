"""The students-by-age report: every student of the job's owner as CSV, by age then name."""
import time
from typing import Any

from django.conf import settings
from rest_framework import serializers

from basic.jobs.kind_api import JobContext, JobKind, register
from basic.students.reports import write_students_by_age

NAME = "students_by_age"


class StudentsByAgeParams(serializers.Serializer):
    """No parameters: the report covers every student of the job's owner (and no one else's)."""


def run(ctx: JobContext) -> dict[str, Any]:
    def on_progress(done: int, total: int) -> None:
        if settings.REPORT_CHUNK_DELAY:  # demos and tests that need a job to stay running
            time.sleep(settings.REPORT_CHUNK_DELAY)
        ctx.progress(done, total, f"Wrote {done} of {total} students")

    # A job without an owner (none is started so; rows from before owners) reads nobody's students.
    owner_id = ctx.job.owner_id if ctx.job.owner_id is not None else -1
    rows = write_students_by_age(ctx.output(f"students-by-age-{ctx.job_id}.csv"), owner_id,
                                 settings.REPORT_CHUNK_SIZE, on_progress)
    ctx.summary = f"Report ready: {rows} students"
    return {"rows": rows}


register(JobKind(
    name=NAME,
    label="Students by age report",
    description="Your students as CSV, by age then name.",
    params=StudentsByAgeParams,
    run=run,
    media_type="text/csv",
))
