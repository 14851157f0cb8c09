"""Reading JSON from outside (basic/core/untrusted_json.py): every hostile input is an Unreadable
with a fixed sentence, never another exception, and scrub() makes anything encodable."""
import json

import pytest

from basic.core import untrusted_json as uj


@pytest.mark.parametrize("data, refusal", [
    (b"[" * 3000, uj.TOO_DEEP),  # RecursionError inside the C parser
    ("[" * 3000, uj.TOO_DEEP),
    ("[" * 900 + "]" * 900, uj.TOO_DEEP),  # parses, but deeper than anything may walk
    ('{"a":' * (uj.MAX_DEPTH + 1) + "1" + "}" * (uj.MAX_DEPTH + 1), uj.TOO_DEEP),
    (b'"\\ud800"', uj.NOT_UNICODE),
    ('{"\\udfff": 1}', uj.NOT_UNICODE),
    ('[["ok", {"x": "\\udc00\\ud800"}]]', uj.NOT_UNICODE),
    ('"\ud800"', uj.NOT_UNICODE),  # a str already broken
    (b'"\xed\xa0\x80"', uj.NOT_UTF8),  # a surrogate as raw bytes
    (b"\xff", uj.NOT_UTF8),
    ("NaN", uj.NOT_JSON),
    ("-Infinity", uj.NOT_JSON),
    ("9" * 5000, uj.NOT_JSON),  # past int's 4300-digit limit: a ValueError of another kind
    ("", uj.NOT_JSON),
])
def test_hostile_json_is_refused_with_its_reason(data, refusal):
    with pytest.raises(uj.Unreadable) as refused:
        uj.loads(data)
    assert refused.value.refusal is refusal
    assert refused.value.detail == refusal.about("body")  # a fixed sentence: the input is never quoted


def test_what_a_client_may_send_is_read_as_json():
    nested = "[" * (uj.MAX_DEPTH - 1) + "]" * (uj.MAX_DEPTH - 1)
    assert uj.loads(nested) is not None
    assert uj.loads(b'{"m": "\\ud83d\\ude00 \xc3\xa9", "n": [1, 2.5, null, true]}') == {
        "m": "\U0001F600 é", "n": [1, 2.5, None, True]}


def test_scrub_replaces_lone_surrogates_keeps_pairs_and_returns_clean_values_as_they_are():
    clean = {"a": ["b", 1]}
    assert uj.scrub(clean) is clean
    scrubbed = uj.scrub({"\ud800": ["a\udfffb", "\ud83d\ude00", ("\udc00",)], "n": 1})
    assert scrubbed == {"\ufffd": ["a\ufffdb", "\U0001F600", ["\ufffd"]], "n": 1}
    json.dumps(scrubbed, ensure_ascii=False).encode("utf-8")


def test_scrub_cuts_what_nests_too_deep_instead_of_recursing():
    deep: list = ["\ud800"]
    for _ in range(5000):
        deep = [deep]
    json.dumps(uj.scrub(deep), ensure_ascii=False).encode("utf-8")
