"""Text from the outside world (a fetched page, a response header, a kind's result) made safe to
store and to show: decoded without surprises, no control characters, bounded.

Why: PostgreSQL refuses NUL in text and ``\\u0000`` or a lone surrogate in JSON, so one such
character in a page title made a finished job impossible to save; escape sequences in a title
reached terminals; a page declaring ``charset=idna`` made the decode itself raise. Every string
taken from outside goes through ``outside_text`` where it enters, and ``storable`` is the last
guard for what a job stores.
"""
from __future__ import annotations

import codecs
import re
from typing import Any

REPLACEMENT = "\ufffd"
ELLIPSIS = "…"
FALLBACK_CODEC = "utf-8"

# Python codecs that are "text encodings" for codecs.lookup but no character set a page can be
# written in: they raise on ordinary bytes (idna, punycode, undefined), turn text into code
# (unicode_escape), or were abused to smuggle markup past filters (utf-7, which browsers refuse).
_NOT_CHARSETS = frozenset({"idna", "punycode", "undefined", "unicode-escape", "raw-unicode-escape", "utf-7",
                           "charmap", "mbcs", "oem"})
_CHARSET_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,39}")

# Bidirectional overrides and isolates (text that displays in another order than it reads:
# "Trojan Source"), zero-width joiners aside, and the byte order mark.
_BIDI = "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff"
_DROP_BIDI = {ord(char): None for char in _BIDI}
_SURROGATES = re.compile("[\ud800-\udfff]")
# C0 controls, DEL and C1 controls: none is text; ESC (\x1b) and the C1 CSI/OSC (\x9b, \x9d)
# start terminal commands.
_CONTROLS = re.compile("[\x00-\x1f\x7f-\x9f]")
_LINE_BREAKS = re.compile("\r\n|[\r\n\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
_SPACES = re.compile(r"[^\S\n]+")


def text_codec(charset: str | None) -> str:
    """The codec to decode bytes said to be in ``charset`` with: that charset if it is a real text
    encoding Python has, else UTF-8 (which never fails with errors="replace")."""
    if not charset or not _CHARSET_NAME.fullmatch(charset.strip()):
        return FALLBACK_CODEC
    try:
        info = codecs.lookup(charset.strip())
    except (LookupError, ValueError, TypeError):
        return FALLBACK_CODEC
    if not getattr(info, "_is_text_encoding", True) or info.name in _NOT_CHARSETS:
        return FALLBACK_CODEC
    return info.name


def decode_outside(data: bytes, charset: str | None = None) -> str:
    """Bytes from outside as text: in ``charset`` if usable (see ``text_codec``), invalid bytes as
    U+FFFD. Never raises: a codec that fails anyway (it should not) falls back to UTF-8."""
    codec = text_codec(charset)
    try:
        return data.decode(codec, errors="replace")
    except Exception:  # a codec's own bug must not end a job as an unexpected error
        return data.decode(FALLBACK_CODEC, errors="replace")


def outside_text(value: str | bytes | None, *, limit: int, multiline: bool = False,
                 charset: str | None = None) -> str:
    """``value`` (bytes are decoded as in ``decode_outside``) as text safe to store in any database
    and to show anywhere: no NUL, control character, lone surrogate or bidi override, at most
    ``limit`` characters (cut ones end with "…").

    One line by default: every line break and run of white space becomes one space, and the ends
    are stripped (a title, a header, a URL). ``multiline`` keeps line breaks (as "\\n") and tabs.
    Other control characters become U+FFFD, so what was there stays visible but inert.
    """
    if value is None:
        return ""
    text = decode_outside(value, charset) if isinstance(value, bytes | bytearray) else str(value)
    if len(text) > 4 * limit + 64:  # bound the work on a huge value before the cleaning passes
        text = text[: 4 * limit + 64]
    text = _SURROGATES.sub(REPLACEMENT, text)
    text = text.translate(_DROP_BIDI)
    if multiline:
        text = _LINE_BREAKS.sub("\n", text)
        text = _CONTROLS.sub(lambda m: m.group() if m.group() in "\n\t" else REPLACEMENT, text)
        text = "\n".join(line.rstrip() for line in text.split("\n")).strip("\n")
    else:
        text = _LINE_BREAKS.sub(" ", text).replace("\t", " ")
        text = _CONTROLS.sub(REPLACEMENT, text)
        text = " ".join(text.split())
    return bound(text, limit)


def bound(text: str, limit: int) -> str:
    """``text`` cut to at most ``limit`` characters, the cut marked with "…"."""
    if limit <= 0:
        return ""
    if len(text) <= limit:
        return text
    return text[: limit - 1].rstrip() + ELLIPSIS


def storable(value: Any) -> Any:
    """A JSON-shaped value (dicts, lists, strings, numbers) with NUL and lone surrogates replaced
    by U+FFFD in every string, keys included: what PostgreSQL refuses in text and JSON. The last
    guard before a job's result is saved, whatever the kind that made it."""
    if isinstance(value, str):
        return _storable_str(value)
    if isinstance(value, dict):
        return {_storable_str(str(key)): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def _storable_str(text: str) -> str:
    if "\x00" in text:
        text = text.replace("\x00", REPLACEMENT)
    return _SURROGATES.sub(REPLACEMENT, text)

