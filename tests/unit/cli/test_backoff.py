"""The CLI's reconnect delays: full jitter, and never sooner than the server's hint."""
from types import SimpleNamespace

from basic.cli.stream import RETRY_MAX_SECONDS, backoff_seconds, retry_hint


def test_delays_are_spread_from_zero_to_a_growing_ceiling():
    first = [backoff_seconds(1) for _ in range(400)]
    later = [backoff_seconds(9) for _ in range(400)]
    assert all(0 <= d <= 0.2 for d in first)
    assert all(0 <= d <= RETRY_MAX_SECONDS for d in later)
    assert min(later) < 0.5 < max(later)  # spread over the range, not bunched at the ceiling


def test_a_hint_is_a_floor_with_jitter_on_top():
    delays = [backoff_seconds(1, hint=3) for _ in range(200)]
    assert all(3 <= d <= 6 for d in delays)
    assert max(delays) - min(delays) > 0.5


def test_hints_come_from_retry_after_or_the_error_frame():
    refused = SimpleNamespace(response=SimpleNamespace(headers={"Retry-After": "4"}))
    assert retry_hint(refused) == 4
    assert retry_hint(error={"code": "overloaded", "retry_after": 2}) == 2
    assert retry_hint(SimpleNamespace(response=SimpleNamespace(headers={"Retry-After": "soon"}))) is None
    assert retry_hint(error={"retry_after": -1}) is None
    assert retry_hint(error={"retry_after": 10_000}) == 60
    assert retry_hint(OSError("refused")) is None
