"""A tiny job kind for the lifecycle tests (loaded through JOB_KIND_EXTRA_MODULES, also by the
real workers the integration tests start): `steps` steps of `delay` seconds, one line each."""
import time
from typing import Any

from rest_framework import serializers

from basic.jobs.context import JobContext, JobFailed, JobRetryable
from basic.jobs.registry import JobKind, register

NAME = "test_steps"


class StepsParams(serializers.Serializer):
    steps = serializers.IntegerField(min_value=1, max_value=1000, default=3)
    delay = serializers.FloatField(min_value=0, max_value=5, default=0)
    crash_at = serializers.IntegerField(required=False, help_text="Raise an unexpected error at this step.")
    refuse_at = serializers.IntegerField(required=False, help_text="Fail with a reason at this step.")
    hang = serializers.FloatField(min_value=0, max_value=600, required=False,
                                  help_text="Wait this long first, reporting nothing (a hung call).")
    ignore_stop = serializers.BooleanField(required=False, help_text="Swallow the stop at the time limit.")
    transient_until = serializers.IntegerField(min_value=1, required=False,
                                               help_text="Fail with a transient error before this attempt.")


def run(ctx: JobContext) -> dict[str, Any]:
    steps = ctx.params["steps"]
    with ctx.output("steps.txt").open("w") as out:
        _hang(ctx.params.get("hang", 0), ctx.params.get("ignore_stop", False))
        if ctx.attempt < ctx.params.get("transient_until", 0):
            raise JobRetryable(f"Temporary trouble at attempt {ctx.attempt}.")
        for step in range(1, steps + 1):
            time.sleep(ctx.params["delay"])
            if step == ctx.params.get("crash_at"):
                raise RuntimeError(f"secret internal detail at step {step}")
            if step == ctx.params.get("refuse_at"):
                raise JobFailed(f"Step {step} was refused.")
            out.write(f"step {step}\n")
            out.flush()
            ctx.progress(step, steps, f"Step {step} of {steps}", force=True)
    ctx.summary = f"{steps} steps done"
    return {"steps": steps}


def _hang(seconds: float, ignore_stop: bool) -> None:
    """Sleep without reporting; with `ignore_stop`, as a badly written body would, swallow whatever
    interrupts the sleep (a time limit's stop) and sleep on."""
    until = time.monotonic() + seconds
    while time.monotonic() < until:
        try:
            time.sleep(until - time.monotonic())
        except BaseException:
            if not ignore_stop:
                raise


register(JobKind(name=NAME, label="Test steps", params=StepsParams, run=run, media_type="text/plain",
                 description="For tests: counts steps slowly."))
