"""A lease per running job in Redis: who is running it, renewed every chunk, gone when the worker dies.

It makes the task safe to deliver twice (a duplicate finds the lease taken and drops out) and lets
live workers find jobs whose worker was killed (RUNNING, but no lease) and run them again.
"""
import logging
import time
import uuid
from uuid import UUID

import redis
from django.conf import settings

from basic.core.keys import lease_key, queued_key
from basic.core.redis_clients import run_script, sync_redis
from basic.jobs import slots

logger = logging.getLogger(__name__)

# Renew a lease we still hold, or take back one that vanished (a Redis that came back empty:
# docs/design.md trap 7); only a lease held by another run is lost.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
if not holder then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) return 1 end
return 0
"""
# Release only a lease we still hold; with ARGV[2] = '1', drop the job's queue marker too (the run
# ended the job: `forget_marker_on_release`).
_RELEASE = """
if ARGV[2] == '1' then redis.call('DEL', KEYS[2]) end
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
# Take a free lease and, if taken, drop the job's queue marker (basic/jobs/queue_markers.py): the
# run's first two Redis writes in one round trip.
_ACQUIRE_AND_CLEAR = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'EX', ARGV[2]) then
  redis.call('DEL', KEYS[2])
  return 1
end
return 0
"""

class LeaseLost(Exception):
    """Another run took the job over (this worker stalled past the lease); stop without side effects."""


class JobLease:
    def __init__(self, job_id: UUID | str, seconds: int | None = None) -> None:
        self.key = lease_key(job_id)
        self.seconds = seconds or settings.JOB_LEASE_SECONDS
        self.holder = uuid.uuid4().hex
        # The concurrency slots the run holds (basic/jobs/slots.py): renewed with the lease, at most
        # every sixth of it (one more round trip, not one per progress event).
        self.slots: list[slots.Cap] = []
        self._slots_renewed_at = 0.0
        self.checked_at = float("-inf")  # time.monotonic() when Redis last said this run holds it
        # Set by a run that ends its job: the release drops the job's queue marker in its round trip
        # (transitions.finish would have, in one of its own).
        self.forget_marker_on_release = False

    def acquire(self) -> bool:
        """Take the lease if it is free. Taking it also clears the job's queue marker (its message
        has been received: basic/jobs/queue_markers.py), in the same round trip."""
        taken = bool(run_script(_ACQUIRE_AND_CLEAR, keys=[self.key, queued_key(self.job_id)],
                                args=[self.holder, self.seconds]))
        if taken:
            self.checked_at = time.monotonic()
        return taken

    def renew(self) -> None:
        """Extend the lease (or take it back if it vanished); LeaseLost if another run holds it. A
        Redis outage is not a reason to abandon the work, so it only logs: the lease is checked
        again at the next step."""
        try:
            renewed = run_script(_RENEW, keys=[self.key], args=[self.holder, self.seconds])
        except redis.RedisError as exc:
            logger.warning("could not renew %s: %s", self.key, exc)
            return
        if not renewed:
            raise LeaseLost(self.key)
        now = self.checked_at = time.monotonic()
        if self.slots and now - self._slots_renewed_at >= self.seconds / 6:
            try:
                slots.renew(self.job_id, self.slots, self.seconds)
                self._slots_renewed_at = now
            except redis.RedisError as exc:
                logger.warning("could not renew the slots of job %s: %s", self.job_id, exc)

    def renew_unless_checked_within(self, seconds: float) -> None:
        """`renew`, unless Redis said this run holds the lease less than `seconds` ago: the run's
        last check before committing its end. A body checks it every JOB_CHECK_INTERVAL_SECONDS,
        so one that recent is as fresh as any the body had, and a job that ends sooner spends no
        round trip on it (issue 19)."""
        if time.monotonic() - self.checked_at >= seconds:
            self.renew()

    def hold_slots(self, caps: list[slots.Cap]) -> None:
        """The run took these slots (just now): renew them with the lease from here on."""
        self.slots, self._slots_renewed_at = caps, time.monotonic()

    @property
    def job_id(self) -> str:
        return self.key.split(":")[1]

    def release(self) -> None:
        try:
            run_script(_RELEASE, keys=[self.key, queued_key(self.job_id)],
                       args=[self.holder, "1" if self.forget_marker_on_release else "0"])
        except redis.RedisError as exc:  # it expires by itself
            logger.warning("could not release %s: %s", self.key, exc)


def is_leased(job_id: UUID | str) -> bool:
    return bool(sync_redis().exists(lease_key(job_id)))
