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


async def test_next_read_is_shared_by_those_who_asked_before_it_began():
    from basic.realtime.shared_reads import NextRead

    asked = 0  # what callers did before asking (a socket joining its group)
    seen_by_reads = []

    async def read():
        seen_by_reads.append(asked)
        await asyncio.sleep(0.05)
        return seen_by_reads[-1]

    async def ask():
        nonlocal asked
        asked += 1
        return await reads.get("job-1", read)

    reads = NextRead()
    first = [asyncio.ensure_future(ask()) for _ in range(100)]
    await asyncio.sleep(0.01)  # the first read has begun
    later = [asyncio.ensure_future(ask()) for _ in range(100)]
    results = await asyncio.gather(*first, *later)
    # Two reads for 200 callers, and each caller's result is from a read that began after it asked.
    assert seen_by_reads == [100, 200]
    assert results == [100] * 100 + [200] * 100
    assert await reads.get("job-2", read) == 200  # another key reads for itself
    assert len(seen_by_reads) == 3 and not reads._slots  # nothing kept once the reads end


async def test_next_read_passes_a_failure_to_its_sharers_only():
    from basic.realtime.shared_reads import NextRead

    attempts = []

    async def flaky():
        attempts.append(1)
        await asyncio.sleep(0.01)
        if len(attempts) == 1:
            raise ConnectionError("Redis is down")
        return "ok"

    reads = NextRead()
    outcomes = await asyncio.gather(*[reads.get("job", flaky) for _ in range(3)], return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes) and len(attempts) == 1
    assert await reads.get("job", flaky) == "ok"
