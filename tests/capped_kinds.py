"""Copies of test_steps under other names, so the concurrency-cap tests can share one stack: each
test's kind has its own cap (JOB_KIND_POLICIES), and caps are per kind, so the tests' jobs never
count against each other's. Loaded only by that stack (JOB_KIND_EXTRA_MODULES), not the console's."""
import dataclasses

from basic.jobs.registry import get_kind, register
from tests import job_kinds

LABELS = {
    "steps_cap_two": "Cap-two steps",
    "steps_user_cap": "User-cap steps",
    "steps_cap_one": "Cap-one steps",
    "steps_cpu_cap_one": "CPU cap-one steps",
    "steps_kill": "Kill steps",
}

for _name, _label in LABELS.items():
    register(dataclasses.replace(get_kind(job_kinds.NAME), name=_name, label=_label))
