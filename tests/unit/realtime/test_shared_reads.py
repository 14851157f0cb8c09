"""Sockets of one job share their periodic reads (basic/realtime/shared_reads.py)."""
import asyncio

import pytest

from basic.realtime.shared_reads import SharedReads


async def test_concurrent_and_recent_reads_share_one_call():
    calls = []

    async def read():
        calls.append(1)
        await asyncio.sleep(0.01)
        return len(calls)

    reads = SharedReads(ttl=1.0)  # long enough that 1,000 callers on a loaded machine all fit in it
    results = await asyncio.gather(*[reads.get("job-1", read) for _ in range(1000)])
    assert results == [1] * 1000 and len(calls) == 1
    assert await reads.get("job-1", read) == 1  # still fresh
    assert await reads.get("job-2", read) == 2  # another key reads for itself
    await asyncio.sleep(1.05)
    assert await reads.get("job-1", read) == 3  # expired: read again


async def test_a_failed_read_is_not_shared_with_later_callers():
    attempts = []

    async def flaky():
        attempts.append(1)
        if len(attempts) == 1:
            raise ConnectionError("Redis is down")
        return "ok"

    reads = SharedReads(ttl=60)
    with pytest.raises(ConnectionError):
        await reads.get("job", flaky)
    assert await reads.get("job", flaky) == "ok"
