"""Concurrency caps (a kind's `concurrency` and `per_user_concurrency`): who holds a slot, who waits.

Per cap, three sorted sets in Redis (basic/core/keys.py, slot_keys): the holders (job id -> expiry,
renewed with the job's lease, so a worker killed mid-job frees its slot when its lease would
lapse), the waiters (job id -> arrival: the job's `created`, so they start in order) and when each
waiter last asked (a waiter that stopped asking, its job cancelled or its message lost, is dropped
after two leases instead of blocking the line; asking again puts it back in its place).

One script takes every cap of a job at once, atomically, so caps hold across any number of
workers. A waiting job asks again every second or so (basic/jobs/runner.py).
"""
import logging
from dataclasses import dataclass
from uuid import UUID

import redis
from django.conf import settings

from basic.core.keys import slot_keys
from basic.core.redis_clients import run_script, sync_redis
from basic.jobs.registry import JobKind, policy

logger = logging.getLogger(__name__)

# KEYS: holders, waiters, seen of each cap, narrowest first. ARGV: job, arrival, lease seconds,
# stale seconds, then each cap's limit. Returns {-1, 0, 0} if granted (the job holds a slot of
# every cap), else {index of the cap that holds it back, its running jobs, waiters ahead}.
_ACQUIRE = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
local job, arrival = ARGV[1], ARGV[2]
local lease, stale = tonumber(ARGV[3]), tonumber(ARGV[4])
local keep = math.ceil((lease + stale) * 2)
local caps = #KEYS / 3
local function touch(i)
  for k = 1, 3 do redis.call('EXPIRE', KEYS[3 * i + k], keep) end
end
local held = false
for i = 0, caps - 1 do
  local holders, waiters, seen = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
  redis.call('ZREMRANGEBYSCORE', holders, '-inf', now)
  for _, gone in ipairs(redis.call('ZRANGEBYSCORE', seen, '-inf', now - stale)) do
    redis.call('ZREM', waiters, gone)
    redis.call('ZREM', seen, gone)
  end
  if redis.call('ZSCORE', holders, job) then held = true end
end
if not held then
  for i = 0, caps - 1 do
    local holders, waiters, seen = KEYS[3 * i + 1], KEYS[3 * i + 2], KEYS[3 * i + 3]
    redis.call('ZADD', waiters, arrival, job)
    redis.call('ZADD', seen, now, job)
    touch(i)
    local running = redis.call('ZCARD', holders)
    local ahead = redis.call('ZRANK', waiters, job)
    local limit = tonumber(ARGV[5 + i])
    if running >= limit or ahead >= limit - running then
      -- Out of the wider caps' lines while a narrower one holds it back: one user's queue must
      -- not stop other users' jobs from taking the kind's free slots.
      for j = i + 1, caps - 1 do
        redis.call('ZREM', KEYS[3 * j + 2], job)
        redis.call('ZREM', KEYS[3 * j + 3], job)
      end
      return {i, running, ahead}
    end
  end
end
for i = 0, caps - 1 do
  redis.call('ZADD', KEYS[3 * i + 1], now + lease, job)
  redis.call('ZREM', KEYS[3 * i + 2], job)
  redis.call('ZREM', KEYS[3 * i + 3], job)
  touch(i)
end
return {-1, 0, 0}
"""
# KEYS: holders of each cap. ARGV: job, lease seconds. Also takes back a slot that vanished (a
# Redis that came back empty), as the lease does.
_RENEW = """
local time = redis.call('TIME')
local now = tonumber(time[1]) + tonumber(time[2]) / 1000000
for _, holders in ipairs(KEYS) do
  redis.call('ZADD', holders, now + tonumber(ARGV[2]), ARGV[1])
  redis.call('EXPIRE', holders, math.ceil(tonumber(ARGV[2]) * 6))
end
return 1
"""

@dataclass(frozen=True)
class Cap:
    """One cap a job is under: its kind's (`per_user` False) or its owner's for that kind."""

    keys: tuple[str, str, str]  # holders, waiters, seen
    limit: int
    per_user: bool


@dataclass(frozen=True)
class Wait:
    """Why a job may not start yet: `cap` has `running` jobs, and `ahead` jobs wait before it."""

    cap: Cap
    running: int
    ahead: int

    def message(self, label: str) -> str:
        whose = "of your " if self.cap.per_user else ""
        text = f"waiting: {self.running} of {self.cap.limit} {whose}{label} jobs running"
        return text if self.running >= self.cap.limit else f"{text}, {self.ahead} waiting ahead"


def caps_of(kind: JobKind, owner_id: int | None) -> list[Cap]:
    """The caps a job of `kind` owned by `owner_id` is under, narrowest first; [] if none."""
    run_policy = policy(kind)
    caps = []
    if run_policy.per_user_concurrency is not None and owner_id is not None:
        caps.append(Cap(slot_keys(kind.name, owner_id), run_policy.per_user_concurrency, per_user=True))
    if run_policy.concurrency is not None:
        caps.append(Cap(slot_keys(kind.name), run_policy.concurrency, per_user=False))
    return caps


def _lease_seconds(seconds: int | None) -> int:
    return seconds or settings.JOB_LEASE_SECONDS


def acquire(job_id: UUID | str, arrival: float, caps: list[Cap], seconds: int | None = None) -> Wait | None:
    """Take a slot of every cap for the job, or none: None if taken (or already held), else why
    it waits (it is in each cap's line, by `arrival`, until it takes them or stops asking for
    `2 * seconds`). `seconds`: how long a slot outlives its holder's last renewal (the lease's)."""
    seconds = _lease_seconds(seconds)
    keys = [key for cap in caps for key in cap.keys]
    index, running, ahead = run_script(_ACQUIRE,
        keys=keys, args=[str(job_id), repr(float(arrival)), seconds, 2 * seconds, *(cap.limit for cap in caps)])
    return None if index < 0 else Wait(caps[index], running, ahead)


def renew(job_id: UUID | str, caps: list[Cap], seconds: int | None = None) -> None:
    """Keep the job's slots another `seconds` (the lease's); raises RedisError like any call."""
    run_script(_RENEW, keys=[cap.keys[0] for cap in caps], args=[str(job_id), _lease_seconds(seconds)])


def release(job_id: UUID | str, caps: list[Cap]) -> None:
    """Give the job's slots back and take it out of every line. Best effort: a slot not given
    back lapses by itself within a lease."""
    pipe = sync_redis().pipeline(transaction=True)
    for cap in caps:
        for key in cap.keys:
            pipe.zrem(key, str(job_id))
    try:
        pipe.execute()
    except redis.RedisError as exc:
        logger.warning("could not release the slots of job %s: %s", job_id, exc)
