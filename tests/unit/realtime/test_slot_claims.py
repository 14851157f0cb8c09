"""Socket slot claims made together go to Redis in one pipeline (basic/realtime/limits.py
`ClaimBatch`), first come first served, and survive Redis forgetting the script. Real Redis (the
session's); each test its own `who`."""
import asyncio
import uuid

import pytest

from basic.core import keys
from basic.core.redis_clients import async_redis
from basic.realtime import limits


@pytest.fixture
def who() -> str:
    return f"test:{uuid.uuid4().hex}"


async def test_claims_made_together_share_round_trips_and_keep_their_order(who, monkeypatch):
    pipelines = []
    real = limits._evalsha_each

    async def counted(batch):
        pipelines.append(len(batch))
        return await real(batch)

    await async_redis().script_load(limits._CLAIM_SLOT)  # as on a server that has claimed before
    monkeypatch.setattr(limits, "_evalsha_each", counted)
    results = await asyncio.gather(*[limits.claim_slot(who, f"socket-{n}", 30) for n in range(100)])
    assert results == [True] * 30 + [False] * 70  # the cap, in the order the claims were made
    assert sum(pipelines) == 100 and len(pipelines) <= 3  # not one round trip per claim
    members = await async_redis().zrange(keys.socket_slots_key(who), 0, -1)
    assert sorted(members) == sorted(f"socket-{n}".encode() for n in range(30))


async def test_a_claim_after_redis_forgot_the_script_still_counts(who):
    await async_redis().script_flush()
    assert await limits.claim_slot(who, "socket-a", 1)
    assert not await limits.claim_slot(who, "socket-b", 1)
    assert await limits.claim_slot(who, "socket-a", 1)  # the same socket claiming again holds one slot


async def test_a_socket_gone_while_its_claim_was_on_its_way_gives_the_slot_back(who):
    claim = asyncio.ensure_future(limits.claim_slot(who, "socket-gone", 5))
    await asyncio.sleep(0)  # queued, not yet answered
    claim.cancel()
    with pytest.raises(asyncio.CancelledError):
        await claim
    for _ in range(50):
        await asyncio.sleep(0.02)
        if not await async_redis().zcard(keys.socket_slots_key(who)):
            break
    assert await async_redis().zcard(keys.socket_slots_key(who)) == 0


async def test_with_redis_down_every_waiting_claim_fails(who, monkeypatch):
    async def down(batch):
        raise ConnectionError("Redis is down")

    monkeypatch.setattr(limits, "_evalsha_each", down)
    outcomes = await asyncio.gather(*[limits.claim_slot(who, f"s{n}", 5) for n in range(3)],
                                    return_exceptions=True)
    assert all(isinstance(outcome, ConnectionError) for outcome in outcomes)
