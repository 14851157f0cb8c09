"""A lease per running job in Redis: who is running it, renewed every chunk, gone when the worker dies.

It makes the task safe to deliver twice (a duplicate finds the lease taken and drops out) and lets
live workers find jobs whose worker was killed (RUNNING, but no lease) and run them again.
"""
import logging
import uuid
from uuid import UUID

import redis
from django.conf import settings

from basic.core.keys import lease_key
from basic.core.redis_clients import sync_redis

logger = logging.getLogger(__name__)

# Renew a lease we still hold, or take back one that vanished (a Redis that came back empty:
# docs/design.md trap 7); only a lease held by another run is lost.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
return 0
"""
# Release only a lease we still hold.
_RELEASE = "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0"


class LeaseLost(Exception):
    """Another run took the job over (this worker stalled past the lease); stop without side effects."""


class JobLease:
    def __init__(self, job_id: UUID | str, seconds: int | None = None) -> None:
        self.key = lease_key(job_id)
        self.seconds = seconds or settings.JOB_LEASE_SECONDS
        self.holder = uuid.uuid4().hex

    def acquire(self) -> bool:
        return bool(sync_redis().set(self.key, self.holder, nx=True, ex=self.seconds))

    def renew(self) -> None:
        """Extend the lease (or take it back if it vanished); LeaseLost if another run holds it. A
        Redis outage is not a reason to abandon the work, so it only logs: the lease is checked
        again at the next step."""
        try:
            renewed = sync_redis().eval(_RENEW, 1, self.key, self.holder, self.seconds)
        except redis.RedisError as exc:
            logger.warning("could not renew %s: %s", self.key, exc)
            return
        if not renewed:
            raise LeaseLost(self.key)

    def release(self) -> None:
        try:
            sync_redis().eval(_RELEASE, 1, self.key, self.holder)
        except redis.RedisError as exc:  # it expires by itself
            logger.warning("could not release %s: %s", self.key, exc)


def is_leased(job_id: UUID | str) -> bool:
    return bool(sync_redis().exists(lease_key(job_id)))
