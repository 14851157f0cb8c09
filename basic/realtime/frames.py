"""Frame schemas made checkable: a frame compared with its TypedDict, once where it is built.

The check reads keys and value types only (no nesting), so it costs a few microseconds; call it
where a message is built, never per recipient (fan-out is benchmarked, docs/benchmarks.md). Keys
starting with "_" are the server's own (the encoded text, the history stream) and never reach a
socket, so they are not part of any schema.
"""
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any


class FrameMismatch(TypeError):
    """A frame that does not match its schema: a bug in the code that built it."""


@functools.cache
def _schema(schema: type) -> tuple[frozenset[str], dict[str, Any]]:
    hints = typing.get_type_hints(schema)
    return schema.__required_keys__, {key: _accepts(hint) for key, hint in hints.items()}  # type: ignore[attr-defined]


def _accepts(hint: Any) -> Any:
    """What a value of type `hint` may be: a class or tuple of classes for isinstance, or a
    frozenset of the values a Literal allows."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return object
    if origin is typing.Literal:
        return frozenset(typing.get_args(hint))
    if origin in (typing.Union, types.UnionType):
        return tuple(_accepts(arg) for arg in typing.get_args(hint))
    return origin or hint


def _matches(value: Any, accepts: Any) -> bool:
    if isinstance(accepts, frozenset):
        return value in accepts
    if isinstance(accepts, tuple):
        return any(_matches(value, option) for option in accepts)
    return isinstance(value, accepts)


def check_frame(frame: Mapping[str, Any], schema: type) -> None:
    """Raise FrameMismatch unless `frame` has every required key of the TypedDict `schema`, no key
    it lacks, and values of the declared types."""
    required, fields = _schema(schema)
    keys = {key for key in frame if not key.startswith("_")}
    if not required <= keys or not keys <= fields.keys():
        raise FrameMismatch(f"{schema.__name__}: missing {sorted(required - keys)}, "
                            f"unexpected {sorted(keys - fields.keys())}")
    for key in keys:
        if not _matches(frame[key], fields[key]):
            raise FrameMismatch(f"{schema.__name__}[{key!r}] = {frame[key]!r}")
