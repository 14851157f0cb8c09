"""The job lifecycle, written once for every kind: registry, context, files, state changes, runner.

A job kind (basic/kinds/) declares itself with `registry.register(JobKind(...))` and supplies only
a body; everything else a job needs (row, lease, cancel, progress throttle, output files,
exactly-once terminal state and event, crash recovery) lives here. See docs/design.md, "Job kinds".
The registry imports nothing of the app, so the model can read its choices from it.
"""
