"""The shape of every job event type, one TypedDict each, and `check_event`, which refuses any other.

Events are JSON once they leave the process, so only the JSON types are checked. Keys are exact:
a missing or an extra key is refused, as is a value of the wrong type. `seq` is assigned by the event
store (basic/jobs/event_store.py): an event as built has none, a stored one and a snapshot have it.
"""
import types
import typing
from collections.abc import Mapping
from typing import Any, NotRequired, TypedDict

from basic.jobs import events


class EventShapeError(ValueError):
    """An event that does not match its type's schema; the message names the type and the keys."""


class _JobEvent(TypedDict):
    """What every pushed job event carries (built by basic/jobs/publish.py, `transitions.push`)."""

    type: str
    job: str  # the job's UUID
    seq: int
    kind: str
    status: str  # a Job.Status value
    progress: int  # 0..100
    message: str
    ts: str  # ISO 8601, milliseconds, UTC


class JobStarted(_JobEvent):
    pass


class JobProgress(_JobEvent):
    pass


class JobDone(_JobEvent):
    result_url: str  # the download's path
    result: dict[str, Any]  # the body's JSON dict (Job.result)


class JobFailed(_JobEvent):
    error: str  # said to the user; the traceback is only in the log


class JobCancelled(_JobEvent):
    pass


class JobSnapshot(TypedDict):
    """The job's row as it is, sent first on a job socket (and when history cannot be replayed)."""

    type: str
    job: str
    seq: int  # the last seq the socket knows of
    kind: str
    owner: str | None  # the owner's username
    status: str
    progress: int
    message: str
    error: str
    params: dict[str, Any]
    result: dict[str, Any] | None
    created: str
    started: str | None
    finished: str | None
    ts: str
    result_url: NotRequired[str]  # only when the job is done


SCHEMAS: dict[str, type] = {
    events.JOB_SNAPSHOT: JobSnapshot,
    events.JOB_STARTED: JobStarted,
    events.JOB_PROGRESS: JobProgress,
    events.JOB_DONE: JobDone,
    events.JOB_FAILED: JobFailed,
    events.JOB_CANCELLED: JobCancelled,
}


def _runtime_types(annotation: Any) -> tuple[type, ...]:
    """What `isinstance` checks for an annotation: `str | None` is (str, NoneType), `dict[str, Any]` dict."""
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is typing.Union:
        return tuple(t for arg in typing.get_args(annotation) for t in _runtime_types(arg))
    if annotation is None or annotation is type(None):
        return (type(None),)
    return (typing.get_origin(annotation) or annotation,)


class _Spec:
    """A schema flattened once, so a check is two set comparisons and one isinstance per key."""

    __slots__ = ("name", "required", "allowed", "value_types")

    def __init__(self, name: str, schema: type, *, with_seq: bool) -> None:
        drop = set() if with_seq else {"seq"}
        self.name = name
        self.required = frozenset(schema.__required_keys__ - drop)
        self.allowed = frozenset((schema.__required_keys__ | schema.__optional_keys__) - drop)
        self.value_types = {key: _runtime_types(hint) for key, hint in typing.get_type_hints(schema).items()
                            if key not in drop}


_SPECS = {with_seq: {name: _Spec(name, schema, with_seq=with_seq) for name, schema in SCHEMAS.items()}
          for with_seq in (True, False)}


def check_event(event: Mapping[str, Any], *, with_seq: bool = True) -> None:
    """Raise EventShapeError unless `event` matches its type's schema exactly.

    `with_seq=False` for an event as built, before the event store gives it its `seq`. Called for
    every pushed event, so it stays cheap: 1.6-2.8 µs for a progress event (timeit, min of 7 x 200k,
    on a 2-core box at load average 3); tests/unit/test_event_schemas.py keeps it under 5 µs."""
    spec = _SPECS[with_seq].get(event.get("type"))  # type: ignore[arg-type]
    if spec is None:
        raise EventShapeError(f"unknown job event type {event.get('type')!r}")
    keys = event.keys()
    if keys != spec.required and keys != spec.allowed:  # `==` on key views: cheaper than two subset tests
        missing, extra = sorted(spec.required - keys), sorted(keys - spec.allowed)
        raise EventShapeError(f"{spec.name}: missing keys {missing}, extra keys {extra}")
    value_types = spec.value_types
    for key, value in event.items():
        if not isinstance(value, value_types[key]):
            wanted = " or ".join(t.__name__ for t in value_types[key])
            raise EventShapeError(f"{spec.name}: {key!r} is {type(value).__name__}, not {wanted}")
