"""The job platform, written once for every kind: registry, context, files, state changes, runner,
services, events and their schemas, event store, leases, queue markers, recovery, retention,
schedules and the Celery tasks.

A job kind (basic/kinds/) declares itself with `registry.register(JobKind(...))` and supplies only
a body; everything else a job needs (row, lease, cancel, progress throttle, output files,
exactly-once terminal state and event, crash recovery) lives here. See docs/design.md, "Job kinds".
Kinds use what `basic.jobs.kind_api` offers; views, consumers, the admin and beat change a job's
state only through `basic.jobs.services`.
"""
