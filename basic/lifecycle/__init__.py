"""Old home of the job lifecycle, now `basic.jobs` (docs/design.md, "Layers").

`basic.lifecycle.registry` and `basic.lifecycle.context` stay importable for one release, so kind
modules written against them (JOB_KIND_MODULES) keep loading; new code imports `basic.jobs`.
"""
