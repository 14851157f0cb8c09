"""Chat frames held to their TypedDicts (basic/realtime/chat.py), checked once where a message is built,
never per recipient (fan-out is benchmarked, docs/benchmarks.md). Keys starting with "_" are the
server's own (the encoded text, the history stream) and never reach a socket, so no schema has them."""
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from basic.core.shapes import Shape, ShapeError
from basic.jobs import events


class FrameMismatch(ShapeError):
    """A frame that does not match its schema: a bug in the code that built it."""


@functools.cache
def _shape(schema: type) -> Shape:
    return Shape(schema, private_prefix="_", error=FrameMismatch)


def check_frame(frame: Mapping[str, Any], schema: type) -> None:
    """Raise FrameMismatch unless `frame` has every required key of the TypedDict `schema`, no key
    it lacks, and values of the declared types."""
    _shape(schema).check(frame)


ENCODED = "_encoded"


def encoded_once(message: dict[str, Any], key: str, content: Callable[[], Any]) -> str:
    """The JSON text of `content()`, computed by the first socket that sends it and reused by the
    other sockets of this process that got the same group message: the channel layer hands them
    one shared dict (basic/realtime/channel_layer.py). With the stock layer each socket has its own dict
    and this is just json.dumps."""
    cache = message.get(ENCODED)
    if cache is None:
        cache = message[ENCODED] = {}
    text = cache.get(key)
    if text is None:
        text = cache[key] = json.dumps(content())
    return text


def event_text(message: dict[str, Any]) -> str:
    """A job or batch event (a `job.event` group message) as its frame: the event as published."""
    return encoded_once(message, "event", lambda: message["event"])


def event_outlet_text(message: dict[str, Any]) -> str | None:
    """`event_text` for a socket's outlet (basic/realtime/wire.py): None for any other message."""
    return event_text(message) if message.get("type") == events.LAYER_JOB_EVENT else None
