"""Socket limits shared by every web process, kept in Redis (keys in basic/core/keys.py).

- **Chat rate**: one token bucket per sender (a user, or an anonymous client address) shared by
  all of that sender's sockets in every process: one Lua script per message, using Redis's clock
  so that web processes with skewed clocks agree.
- **Socket slots**: open sockets per user and per anonymous address. A plain INCR on connect and
  DECR on disconnect would leak a slot for every socket of a process that crashed or was
  SIGKILLed, forever. Instead each socket is a member of a sorted set (`socket_slots_key`) whose
  score is when its claim expires; a live socket pushes that forward every SLOT_REFRESH_SECONDS,
  and a claim first drops expired members. A dead process's sockets thus stop counting within
  SLOT_TTL_SECONDS, for the price of one ZADD per open socket every 30 s, sent in pipelines by
  one task per process (`SlotKeeper`). A per-process counter with a process heartbeat would be
  cheaper, but it can't tell which socket a late DECR belongs to.
"""
import asyncio
import logging
import weakref
from typing import Any, TypeVar

from django.conf import settings
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

from basic.core.keys import chat_rate_key, socket_slots_key
from basic.core.redis_clients import async_redis

logger = logging.getLogger(__name__)

T = TypeVar("T")

SLOT_TTL_SECONDS = 90
SLOT_REFRESH_SECONDS = 30

_TOKEN_BUCKET = b"""
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'ts')
local tokens = tonumber(state[1]) or burst
local ts = tonumber(state[2]) or t
tokens = math.min(burst, tokens + math.max(0, t - ts) * rate)
local allowed = 0
if tokens >= 1 then
  tokens = tokens - 1
  allowed = 1
end
redis.call('HSET', KEYS[1], 'tokens', string.format('%.6f', tokens), 'ts', string.format('%.6f', t))
redis.call('EXPIRE', KEYS[1], math.ceil(burst / rate) + 1)
return allowed
"""

# Redis's clock to the microsecond: whole seconds would make a claim last up to 1 s less than asked.
_CLAIM_SLOT = b"""
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', t)
if redis.call('ZSCORE', KEYS[1], ARGV[1]) == false and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then
  return 0
end
redis.call('ZADD', KEYS[1], t + tonumber(ARGV[3]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return 1
"""

# XX: a claim released (or expired) meanwhile is not brought back to life.
_REFRESH_SLOT = b"""
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
redis.call('ZADD', KEYS[1], 'XX', t + tonumber(ARGV[2]), ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
"""

# Clients come and go with event loops (one per test, one per server process); a script object
# without a client is run on whichever client is passed in.
_scripts = {source: AsyncScript(None, source) for source in (_TOKEN_BUCKET, _CLAIM_SLOT, _REFRESH_SLOT)}


async def _run(source: bytes, keys: list[str], args: list[Any]) -> Any:
    return await _scripts[source](keys=keys, args=args, client=async_redis())


async def chat_allowed(who: str) -> bool:
    """Take a token from `who`'s chat bucket (CHAT_RATE_PER_SECOND, bursts of CHAT_RATE_BURST)."""
    rate, burst = settings.CHAT_RATE_PER_SECOND, settings.CHAT_RATE_BURST
    return bool(await _run(_TOKEN_BUCKET, [chat_rate_key(who)], [rate, burst]))


async def claim_slot(who: str, member: str, cap: int) -> bool:
    """Count socket `member` among `who`'s open sockets, unless `cap` are open already."""
    return await _claims().claim(who, member, cap)


class ClaimBatch:
    """Slot claims made while a round trip is under way go to Redis together in the next one, in
    the order they were made (one pipeline of scripts; each claim is still its own script, so caps
    are first come, first served). A connect storm made one script call, and one pooled
    connection taken and given back, per socket: 12% of the CPU of 2,000 sockets opening at once on
    the seed room (issue 18)."""

    MAX = 500  # claims in one pipeline

    def __init__(self) -> None:
        self.pending: list[tuple[str, str, int, asyncio.Future]] = []
        self.sending = False

    async def claim(self, who: str, member: str, cap: int) -> bool:
        future = asyncio.get_running_loop().create_future()
        self.pending.append((who, member, cap, future))
        if not self.sending:
            self.sending = True
            asyncio.get_running_loop().create_task(self._send())
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:  # the socket went away: give back a slot claimed for it
            future.add_done_callback(lambda done: _release_later(done, who, member))
            raise

    async def _send(self) -> None:
        try:
            while self.pending:
                batch, self.pending = self.pending[:self.MAX], self.pending[self.MAX:]
                try:
                    results = await _claim_all(batch)
                except Exception as exc:  # Redis is down: every claim of the batch fails alike
                    results = [exc] * len(batch)
                for (*_rest, future), result in zip(batch, results, strict=True):
                    if future.done():
                        continue
                    if isinstance(result, Exception):
                        future.set_exception(result)
                    else:
                        future.set_result(bool(result))
        finally:
            self.sending = False


async def _claim_all(batch: list[tuple[str, str, int, asyncio.Future]]) -> list[Any]:
    """Each claim's script result (or its error), in one round trip: by EVALSHA, and if Redis
    forgot the script (a restart, a failover), again after loading it (a claim is idempotent: the
    same member claiming twice holds one slot)."""
    results = await _evalsha_each(batch)
    if any(isinstance(result, NoScriptError) for result in results):
        await async_redis().script_load(_CLAIM_SLOT)
        results = await _evalsha_each(batch)
    return results


async def _evalsha_each(batch: list[tuple[str, str, int, asyncio.Future]]) -> list[Any]:
    pipe = async_redis().pipeline(transaction=False)
    for who, member, cap, _future in batch:
        pipe.evalsha(_scripts[_CLAIM_SLOT].sha, 1, socket_slots_key(who), member, cap, SLOT_TTL_SECONDS)
    return await pipe.execute(raise_on_error=False)


def _release_later(claimed: asyncio.Future, who: str, member: str) -> None:
    if not claimed.cancelled() and claimed.exception() is None and claimed.result():
        asyncio.get_running_loop().create_task(_release_quietly(who, member))


async def _release_quietly(who: str, member: str) -> None:
    try:
        await release_slot(who, member)
    except Exception:  # the claim lapses by itself within SLOT_TTL_SECONDS
        logger.warning("could not release the socket slot of %s", who, exc_info=True)


_per_loop: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[type, Any]]" = weakref.WeakKeyDictionary()


def _of_this_loop(kind: type[T]) -> T:
    """This event loop's one `kind()` (each server process runs one loop; each test its own)."""
    mine = _per_loop.setdefault(asyncio.get_running_loop(), {})
    if kind not in mine:
        mine[kind] = kind()
    return mine[kind]


def _claims() -> ClaimBatch:
    return _of_this_loop(ClaimBatch)


class SlotKeeper:
    """Keeps the claims of one event loop's open sockets alive: one task refreshing all of them
    every SLOT_REFRESH_SECONDS, in pipelines, where a task per socket each sent its own script
    (3,000 sockets: 3,000 sleeping tasks and 100 round trips a second)."""

    BATCH = 500

    def __init__(self) -> None:
        self.claims: dict[str, str] = {}  # member (the socket's channel name) -> who
        self.task: asyncio.Task | None = None

    def keep(self, who: str, member: str) -> None:
        self.claims[member] = who
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.run())

    def drop(self, member: str) -> None:
        self.claims.pop(member, None)

    async def refresh(self) -> None:
        claims = list(self.claims.items())
        for start in range(0, len(claims), self.BATCH):
            pipe = async_redis().pipeline(transaction=False)
            for member, who in claims[start:start + self.BATCH]:
                await _scripts[_REFRESH_SLOT](keys=[socket_slots_key(who)], args=[member, SLOT_TTL_SECONDS],
                                              client=pipe)
            await pipe.execute()

    async def run(self) -> None:
        while self.claims:
            await asyncio.sleep(SLOT_REFRESH_SECONDS)
            try:
                await self.refresh()
            except Exception:  # Redis is down: claims may lapse, which errs on the side of letting in
                logger.warning("could not refresh %s socket slot(s)", len(self.claims), exc_info=True)


def slot_keeper() -> SlotKeeper:
    """This event loop's keeper."""
    return _of_this_loop(SlotKeeper)


async def release_slot(who: str, member: str) -> None:
    await async_redis().zrem(socket_slots_key(who), member)
