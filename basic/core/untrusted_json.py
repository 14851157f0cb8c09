"""JSON from outside (REST bodies, socket frames) read so that no input can raise anything but
`Unreadable`, and text made safe to send back, so that no echo of input can fail to encode.

The hazards, each a crash once (issue 22): nesting deep enough that the C parser raises
RecursionError (`[` * 3000), or shallow enough to parse but deep enough that the next thing to walk
it (a serializer, json.dumps, the database's JSON encoder) does; bytes that are not UTF-8; `\\ud800`,
an escape JSON allows that gives a lone surrogate, a str that cannot be encoded as UTF-8 at all, so
it fails later, wherever the value is stored, sent or echoed in an error.
"""
import json
from dataclasses import dataclass
from typing import Any

# No body or frame this product takes nests more than a few levels; this is far past them and far
# below the interpreter's recursion limit (1000), which the code walking a value shares.
MAX_DEPTH = 64


@dataclass(frozen=True)
class Refusal:
    """Why input was refused: a fixed `code` and a sentence for the client that never quotes the
    input; `detail` calls it "the body", `about("frame")` calls it what the caller calls it."""

    code: str
    sentence: str

    @property
    def detail(self) -> str:
        return self.about("body")

    def about(self, what: str) -> str:
        return self.sentence.format(what=what)


class Unreadable(ValueError):
    """Raised for input that is refused, with its Refusal (a new exception each time: a shared
    instance would keep growing its traceback)."""

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(refusal.code)
        self.refusal = refusal
        self.code = refusal.code
        self.detail = refusal.detail

    def about(self, what: str) -> str:
        return self.refusal.about(what)


NOT_UTF8 = Refusal("not_utf8", "The {what} is not UTF-8 text.")
NOT_JSON = Refusal("invalid_json", "The {what} is not valid JSON.")
TOO_DEEP = Refusal("too_deep", f"The {{what}} nests more than {MAX_DEPTH} levels deep.")
NOT_UNICODE = Refusal("invalid_text", "The {what} holds a string that is not valid Unicode "
                                      "(a lone surrogate escape such as \\ud800).")


def encodable(text: str) -> bool:
    """Whether `text` can be encoded as UTF-8 (it holds no lone surrogate)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _strict_constant(name: str) -> None:
    raise ValueError(f"{name} is not JSON")  # NaN, Infinity: Python's json takes them, JSON does not


def loads(data: str | bytes | bytearray) -> Any:
    """Parse `data` as JSON (bytes must be UTF-8, whatever a charset says: RFC 8259 §8.1).
    Raises Unreadable for anything else: invalid JSON, NaN, an integer past Python's 4300 digits,
    nesting past MAX_DEPTH, or a string or key anywhere that is not valid Unicode."""
    if isinstance(data, bytes | bytearray):
        try:
            text = bytes(data).decode("utf-8")
        except UnicodeDecodeError:
            raise Unreadable(NOT_UTF8) from None
    else:
        text = data
        if not encodable(text):  # a str handed to us already broken (not from a real socket)
            raise Unreadable(NOT_UNICODE)
    try:
        value = json.loads(text, parse_constant=_strict_constant)
    except RecursionError:
        raise Unreadable(TOO_DEEP) from None
    except ValueError:  # JSONDecodeError, and int() past sys.get_int_max_str_digits()
        raise Unreadable(NOT_JSON) from None
    check(value)
    return value


def check(value: Any) -> None:
    """Raise Unreadable if `value` nests past MAX_DEPTH or holds a string or key that is not valid
    Unicode. Iterative, so it cannot itself recurse too deep."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, str):
            if not encodable(item):
                raise Unreadable(NOT_UNICODE)
        elif isinstance(item, dict | list | tuple):
            if depth >= MAX_DEPTH:
                raise Unreadable(TOO_DEEP)
            if isinstance(item, dict):
                stack.extend((key, depth) for key in item)
                stack.extend((child, depth + 1) for child in item.values())
            else:
                stack.extend((child, depth + 1) for child in item)


def scrub(value: Any) -> Any:
    """`value` itself if it is safe to send; else a copy (dicts and lists) with every string and key
    made encodable, a lone surrogate becoming U+FFFD and a valid pair the character it spells.
    For echoing input in an answer; containers past MAX_DEPTH become "…", so this cannot recurse
    too deep either."""
    try:
        check(value)
    except Unreadable:
        return _scrub(value, 0)
    return value


def _scrub(value: Any, depth: int) -> Any:
    if isinstance(value, str):
        return value if encodable(value) else value.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    if isinstance(value, dict | list | tuple) and depth >= MAX_DEPTH:
        return "…"
    if isinstance(value, dict):
        return {_scrub(key, depth): _scrub(item, depth + 1) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(item, depth + 1) for item in value]
    return value
