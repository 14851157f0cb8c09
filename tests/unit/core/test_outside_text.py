"""Text from outside (basic/core/outside_text.py): whatever the bytes, charset or characters, the
result decodes, holds no control character, NUL, lone surrogate or bidi override, stays within its
bound, and is something both SQLite and PostgreSQL store."""
import codecs
import encodings
import json
import pkgutil
import random

import pytest

from basic.core.outside_text import (
    ELLIPSIS,
    REPLACEMENT,
    bound,
    decode_outside,
    outside_text,
    storable,
    text_codec,
)

HOSTILE = [
    "A\x00B",  # NUL: PostgreSQL refuses it in text
    "\x1b]0;owned\x07",  # OSC: sets the terminal's window title
    "\x1b[2J\x1b[H",  # CSI: clears the screen
    "\x1b[8mhidden\x1b[0m",  # concealed text
    "\x9b31mred",  # the one-byte C1 CSI
    "\x9d0;title\x9c",  # the one-byte C1 OSC
    "over\rwrite\x08\x08",
    "\u202eexe.txt",  # right-to-left override
    "\u2066isolated\u2069\u200f",
    "\ufeffbom",
    "lone \ud800 surrogate \udfff",
    "\x7f\x85\u2028\u2029",
]


def unsafe_characters(text: str) -> list[str]:
    return [c for c in text if ord(c) < 0x20 or 0x7F <= ord(c) <= 0x9F or 0xD800 <= ord(c) <= 0xDFFF
            or c in "\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\ufeff\u2028\u2029"]


@pytest.mark.parametrize("value", HOSTILE)
def test_hostile_characters_never_survive_and_the_text_around_them_does(value):
    cleaned = outside_text(value, limit=300)
    assert unsafe_characters(cleaned) == []
    cleaned.encode("utf-8")  # no lone surrogate left to break an encoder
    letters = [c for c in value if c.isalpha()]
    assert [c for c in cleaned if c.isalpha()] == letters  # the readable part is kept, in order


def test_controls_become_visible_replacement_characters_and_white_space_one_space():
    assert outside_text("A\x00B", limit=10) == f"A{REPLACEMENT}B"
    assert outside_text("\x1b[2J", limit=10) == f"{REPLACEMENT}[2J"
    assert outside_text("  a\r\n\tb \u2028 c\x85d  ", limit=50) == "a b c d"


def test_multiline_keeps_line_breaks_and_tabs_only():
    assert outside_text("one\r\ntwo\rthree\n\tfour\x1b\u2029five", limit=100, multiline=True) == (
        f"one\ntwo\nthree\n\tfour{REPLACEMENT}\nfive")


def test_length_is_bounded_and_a_cut_is_marked():
    assert outside_text("x" * 10_000_000, limit=300) == "x" * 299 + ELLIPSIS
    assert outside_text("short", limit=300) == "short"
    assert bound("abcdef", 4) == "abc" + ELLIPSIS and bound("abc", 0) == ""


@pytest.mark.parametrize("charset", ["idna", "IDNA", "punycode", "undefined", "unicode_escape", "raw-unicode-escape",
                                     "utf-7", "rot13", "rot_13", "base64", "hex", "zlib", "bz2", "uu", "quopri",
                                     "no-such-charset", "", None, "../../etc/passwd", "x" * 500, "utf-8\x00",
                                     "charmap", "mbcs"])
def test_charsets_that_are_no_text_encoding_fall_back_to_utf8(charset):
    assert text_codec(charset) == "utf-8"
    assert decode_outside("été ✓".encode() + b"\xff", charset) == f"été ✓{REPLACEMENT}"


@pytest.mark.parametrize(("charset", "data", "text"), [
    ("ISO-8859-1", b"caf\xe9", "café"),
    ("windows-1252", b"\x93quoted\x94", "\u201cquoted\u201d"),
    ("Shift_JIS", "日本".encode("shift_jis"), "日本"),
    ("koi8-r", "мир".encode("koi8-r"), "мир"),
    ("utf-16", "wide".encode("utf-16"), "wide"),
])
def test_real_charsets_are_used(charset, data, text):
    assert decode_outside(data, charset) == text


def test_every_codec_python_has_decodes_any_bytes_without_raising():
    """Whatever name a page declares, decoding never raises (idna once did, with a traceback)."""
    names = {m.name for m in pkgutil.iter_modules(encodings.__path__)} | {"idna", "utf-7", "rot13"}
    rng = random.Random(22)
    samples = [bytes(rng.randrange(256) for _ in range(64)) for _ in range(20)] + [b"", b"\x00" * 10, b"a" * 300]
    for name in sorted(names):
        for data in samples:
            text = outside_text(data, limit=300, charset=name)
            assert unsafe_characters(text) == [] and len(text) <= 300, (name, data)


def test_random_strings_come_out_clean():
    rng = random.Random(2222)
    alphabet = [chr(c) for c in range(0x00, 0xA0)] + list("\u202e\u2066\ufeff\ud800\udfffé✓𝄞 ")
    for _ in range(500):
        value = "".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 400)))
        for multiline in (False, True):
            cleaned = outside_text(value, limit=200, multiline=multiline)
            allowed = "\n\t" if multiline else ""
            assert [c for c in unsafe_characters(cleaned) if c not in allowed] == []
            assert len(cleaned) <= 200
            cleaned.encode("utf-8")


def test_storable_replaces_what_postgresql_refuses_in_every_string_keys_included():
    value = {"title\x00": ["a\x00b", {"x": "\ud800"}], "n": 1, "f": 1.5, "ok": True, "none": None}
    assert storable(value) == {f"title{REPLACEMENT}": [f"a{REPLACEMENT}b", {"x": REPLACEMENT}], "n": 1, "f": 1.5,
                               "ok": True, "none": None}
    text = json.dumps(storable(value))
    assert "\\u0000" not in text and "\\ud800" not in text
    clean = {"a": ["é ✓ \U0001F600", 2]}
    assert storable(clean) == clean


def test_text_codec_only_names_codecs_that_exist():
    for name in ("utf-8", "latin-1", "cp1252", "euc-jp", "gb18030"):
        assert codecs.lookup(text_codec(name)).name == codecs.lookup(name).name
