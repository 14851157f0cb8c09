"""How big and how long a soak is, and the tolerances its invariants allow (docs/soak.md says why
each is what it is)."""
import random
from dataclasses import dataclass, field


@dataclass(frozen=True)
class SoakConfig:
    seconds: float = 600.0  # load, warm-up included (longer if the first round of faults needs it)
    sockets: int = 1000  # job and chat sockets held open through the load
    seed: int = field(default_factory=lambda: random.SystemRandom().randrange(1, 10**6))
    warmup: float | None = None  # no faults before this; None: 10% of `seconds`, 15-60 s
    drain_timeout: float = 120.0  # after the load, for every started job to end
    chat_share: float = 0.4  # of `sockets`, in chat rooms; the rest watch jobs
    job_starts_per_second: float = 1.5
    rest_reads_per_second: float = 6.0

    @property
    def warmup_seconds(self) -> float:
        return self.warmup if self.warmup is not None else min(60.0, max(15.0, self.seconds * 0.1))


# The product's settings the soak changes, and why (docs/soak.md, "The stack").
STACK_SETTINGS = {
    # A killed worker's job is found after one lease and a sweep (lease / 2): 10 s + 5 s, not 30 + 15,
    # so a two-minute run drains in seconds. Lost messages are sent again after 15 s, not 30.
    "JOB_LEASE_SECONDS": "10",
    "JOB_REQUEUE_AFTER_SECONDS": "15",
    "JOB_RESERVED_SECONDS": "15",
    "JOB_TRIGGER_RATE": "100000/min",  # the load starts more jobs than a person would
    "WEB_PROCESSES": "2",
    "LOG_LEVEL": "WARNING",
}

# Redis is paused for less than the sentinels' down-after, so a pause is a stall and never a
# failover (the failover is a fault of its own). tests/sentinel.py's 1 s is raised to this.
SENTINEL_DOWN_AFTER_MS = 4000
PAUSE_SECONDS = (1.5, 2.5)

# REST answers during an outage window may be 503s: from the fault until the stack is back
# (/readyz 200 through nginx, the killed process replaced), plus this much, the time the product
# promises to be fully back after a failover (tests/integration/test_sentinel_failover.py).
OUTAGE_GRACE_SECONDS = 15.0
RECOVERY_TIMEOUT_SECONDS = 90.0

# Resources after the load against after the warm-up (docs/soak.md, "Flat"): a long-lived
# process may grow by half its warm-up RSS plus 32 MB (allocator high-water marks: the survivor of
# a web kill holds every socket for a while), and its open files by 16 (pooled connections).
RSS_GROWTH_FACTOR = 1.5
RSS_GROWTH_BYTES = 32 * 1024 * 1024
FDS_GROWTH = 16
# From the end of the first round of faults (every kind met once, the pools at their high-water
# mark) to the end, when a run is long enough to have both: RSS within 10% + 16 MB, open files
# (connections included) within FDS_GROWTH.
PLATEAU_RSS_FACTOR = 1.1
PLATEAU_RSS_BYTES = 16 * 1024 * 1024
# Connections a server may hold beyond those the stack's processes have open to it (one being
# closed while the sample is taken).
UNACCOUNTED_SLACK = 2
# Redis keys that are neither a job's retained history nor a TTL cache may differ by this much
# (a worker's liveness key per restarted worker lives WORKER_ALIVE_SECONDS).
OTHER_KEYS_GROWTH = 8
KEYS_PER_JOB = 2  # jobs:<id>:events and jobs:<id>:seq, kept JOB_EVENTS_TTL_SECONDS by design
KEYS_PER_BATCH = 4  # events, seq, members, aggregate
