"""TypedDicts made checkable: a message compared with its schema where it is built (job events,
snapshots, chat frames), so a wrong shape is a bug caught at its source, not a client's surprise.

A schema is flattened once (`Shape`), so a check is a comparison of key sets and one isinstance per
key: a few microseconds, cheap enough for every progress event, though never per recipient of a
fan-out. Only JSON types are checked (no nesting); `Literal` values are compared.
"""
import types
import typing
from collections.abc import Mapping
from typing import Any


class ShapeError(TypeError):
    """A message that does not match its schema; the text names the schema and the keys."""


def _accepts(hint: Any) -> Any:
    """What a value of type `hint` may be: a class or tuple of classes for isinstance, or a frozenset
    of the values a Literal allows."""
    if hint is Any:
        return object
    if hint is None or hint is type(None):
        return type(None)
    origin = typing.get_origin(hint)
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


def _describe(accepts: Any) -> str:
    if isinstance(accepts, frozenset):
        return " or ".join(repr(value) for value in sorted(accepts, key=repr))
    if isinstance(accepts, tuple):
        return " or ".join(_describe(option) for option in accepts)
    return accepts.__name__


class Shape:
    """One TypedDict, flattened; errors name it `name` (the class name by default). `drop` leaves
    keys out (e.g. `seq` before the store assigns it); `private_prefix` names keys that are the
    server's own and never reach a client (ignored)."""

    __slots__ = ("name", "required", "allowed", "accepts", "private_prefix", "error")

    def __init__(self, schema: type, *, drop: frozenset[str] = frozenset(), private_prefix: str | None = None,
                 error: type[ShapeError] = ShapeError, name: str | None = None) -> None:
        self.name = name or schema.__name__
        self.required = frozenset(schema.__required_keys__ - drop)  # type: ignore[attr-defined]
        self.allowed = frozenset((schema.__required_keys__ | schema.__optional_keys__) - drop)  # type: ignore[attr-defined]
        self.accepts = {key: _accepts(hint) for key, hint in typing.get_type_hints(schema).items() if key not in drop}
        self.private_prefix = private_prefix
        self.error = error

    def check(self, message: Mapping[str, Any]) -> None:
        """Raise `error` unless `message` has every required key, no other, and values of the declared types."""
        keys: Any = message.keys()
        if self.private_prefix is not None:
            keys = {key for key in keys if not key.startswith(self.private_prefix)}
        if keys != self.required and keys != self.allowed and not (self.required <= keys <= self.allowed):
            raise self.error(f"{self.name}: missing keys {sorted(self.required - keys)}, "
                             f"extra keys {sorted(keys - self.allowed)}")
        accepts = self.accepts
        for key in keys:
            value = message[key]
            if not _matches(value, accepts[key]):
                raise self.error(f"{self.name}: {key!r} is {type(value).__name__}, not {_describe(accepts[key])}")
