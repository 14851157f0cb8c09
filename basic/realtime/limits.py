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
  cheaper, but it can't tell which socket a late DECR belongs to. Claims and releases asked in one
  turn of the event loop share one script (`SlotBatches`): a connect storm's sockets claim together.
"""
import asyncio
import logging
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from django.conf import settings
from redis.commands.core import AsyncScript

from basic.core.keys import chat_rate_key, socket_slots_key
from basic.core.redis_clients import async_redis

logger = logging.getLogger(__name__)

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
# One call releases, then claims, a batch of sockets. ARGV[1] is the claims' lifetime, ARGV[2] how
# many of KEYS are releases: KEYS[i] with the socket ARGV[2 + i]. The rest are claims, each a
# sender's set with the socket and its cap next in ARGV. The same key may come more than once (one
# user's sockets opened together); each claim sees the ones before it.
_SLOTS = b"""
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local ttl = tonumber(ARGV[1])
local releases = tonumber(ARGV[2])
for i = 1, releases do
  redis.call('ZREM', KEYS[i], ARGV[2 + i])
end
local claimed = {}
local arg = 3 + releases
for i = releases + 1, #KEYS do
  local key, member, cap = KEYS[i], ARGV[arg], tonumber(ARGV[arg + 1])
  arg = arg + 2
  redis.call('ZREMRANGEBYSCORE', key, '-inf', t)
  if redis.call('ZSCORE', key, member) == false and redis.call('ZCARD', key) >= cap then
    claimed[#claimed + 1] = 0
  else
    redis.call('ZADD', key, t + ttl, member)
    redis.call('EXPIRE', key, ttl)
    claimed[#claimed + 1] = 1
  end
end
return claimed
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
_scripts = {source: AsyncScript(None, source)
            for source in (_TOKEN_BUCKET, _SLOTS, _REFRESH_SLOT)}


async def _run(source: bytes, keys: list[str], args: list[Any]) -> Any:
    return await _scripts[source](keys=keys, args=args, client=async_redis())


async def chat_allowed(who: str) -> bool:
    """Take a token from `who`'s chat bucket (CHAT_RATE_PER_SECOND, bursts of CHAT_RATE_BURST)."""
    rate, burst = settings.CHAT_RATE_PER_SECOND, settings.CHAT_RATE_BURST
    return bool(await _run(_TOKEN_BUCKET, [chat_rate_key(who)], [rate, burst]))


async def claim_slot(who: str, member: str, cap: int) -> bool:
    """Count socket `member` among `who`'s open sockets, unless `cap` are open already."""
    return bool(await _slot_batches().submit(_CLAIM, (socket_slots_key(who), member, cap)))


async def release_slot(who: str, member: str) -> None:
    await _slot_batches().submit(_RELEASE, (socket_slots_key(who), member, 0))


_CLAIM, _RELEASE = "claim", "release"
_Request = tuple[str, str, int]  # a sender's key, the socket, the cap (claims only)


class SlotBatches:
    """Claims and releases of socket slots asked for in the same turn of the event loop go to
    Redis together, in one script: the releases first, then the claims, each in the order asked.

    In a connect storm every socket claimed with a script of its own, and released with a ZREM when
    it closed: ~10% of the web process's CPU per socket opened (py-spy, 5,000 sockets at once,
    issue 18), most of it redis-py's per-command work. Batching keeps each answer the same, and a
    release asked in the same turn as a claim runs before it (a client that closes and comes back
    at once finds its slot free). One script, not a pipeline of them: redis-py's pipeline asks
    SCRIPT EXISTS before every run, a second round trip."""

    MAX_BATCH = 500  # sockets per script, so that no one call keeps Redis busy for long

    def __init__(self) -> None:
        self.pending: dict[str, list[tuple[_Request, asyncio.Future]]] = {_CLAIM: [], _RELEASE: []}
        self.flush_due = False
        self.sending: set[asyncio.Task] = set()  # the loop keeps only weak references to tasks

    def submit(self, kind: str, request: _Request) -> asyncio.Future:
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.pending[kind].append((request, future))
        if not self.flush_due:
            self.flush_due = True
            loop.call_soon(self._flush)
        return future

    def _flush(self) -> None:
        self.flush_due = False
        asked = [(_RELEASE, *pair) for pair in self.pending[_RELEASE]]
        asked += [(_CLAIM, *pair) for pair in self.pending[_CLAIM]]
        self.pending = {_CLAIM: [], _RELEASE: []}
        task = asyncio.get_running_loop().create_task(self._send(asked))
        self.sending.add(task)
        task.add_done_callback(self.sending.discard)

    async def _send(self, asked: list[tuple[str, _Request, asyncio.Future]]) -> None:
        for start in range(0, len(asked), self.MAX_BATCH):
            batch = asked[start:start + self.MAX_BATCH]
            releases = [request for kind, request, _future in batch if kind == _RELEASE]
            claims = [request for kind, request, _future in batch if kind == _CLAIM]
            keys = [key for key, _member, _cap in releases + claims]
            args = [SLOT_TTL_SECONDS, len(releases), *(member for _key, member, _cap in releases),
                    *(value for _key, member, cap in claims for value in (member, cap))]
            try:
                answers = await _run(_SLOTS, keys, args)
            except Exception as error:  # every socket waiting on this call hears why
                for _kind, _request, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            claimed = iter(answers)
            for kind, _request, future in batch:
                result = next(claimed) if kind == _CLAIM else None
                if not future.done():  # (done: its socket went away meanwhile)
                    future.set_result(result)


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


_Kept = TypeVar("_Kept")


def _of_this_loop(kept: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Kept]",
                  make: Callable[[], _Kept]) -> _Kept:
    """The running event loop's one `make()` (each server process runs one loop; each test its own)."""
    loop = asyncio.get_running_loop()
    found = kept.get(loop)
    if found is None:
        found = kept[loop] = make()
    return found


_keepers: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlotKeeper]" = weakref.WeakKeyDictionary()
_batches: "weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, SlotBatches]" = weakref.WeakKeyDictionary()


def slot_keeper() -> SlotKeeper:
    return _of_this_loop(_keepers, SlotKeeper)


def _slot_batches() -> SlotBatches:
    return _of_this_loop(_batches, SlotBatches)
