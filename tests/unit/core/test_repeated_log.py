import logging

from basic.core import repeated_log
from basic.core.repeated_log import RepeatedWarning


def test_a_repeated_failure_is_logged_once_then_once_a_period_with_the_count_left_out(caplog, monkeypatch):
    now = [100.0]
    monkeypatch.setattr(repeated_log.time, "monotonic", lambda: now[0])
    warn = RepeatedWarning(logging.getLogger("test.repeated"), "resyncs failed", seconds=10)
    with caplog.at_level(logging.WARNING, logger="test.repeated"):
        for _ in range(3000):  # every socket of a process, at once
            warn.warning(ConnectionRefusedError(111, "Connect call failed"))
        now[0] += 10
        warn.warning(ConnectionRefusedError(111, "Connect call failed"))
    lines = [record.getMessage() for record in caplog.records]
    assert lines == ["resyncs failed: ConnectionRefusedError: [Errno 111] Connect call failed",
                     "resyncs failed: ConnectionRefusedError: [Errno 111] Connect call failed "
                     "(and 2999 more in the last 10 s)"]
    assert all(record.exc_info is None for record in caplog.records)
