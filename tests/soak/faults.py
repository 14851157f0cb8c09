"""The fault injector: one fault at a time, at seeded random times, each followed by its recovery
(the killed process replaced, /readyz 200 through nginx) before the next. Faults come in rounds,
every kind once per round in a random order, and the first round always completes, so even a
two-minute soak injects each kind at least once."""
import asyncio
import random
import time
from collections.abc import Callable
from dataclasses import dataclass

from tests.soak.config import OUTAGE_GRACE_SECONDS, PAUSE_SECONDS, RECOVERY_TIMEOUT_SECONDS
from tests.soak.stack import SoakStack, wait_until

KINDS = ("worker_kill", "web_kill", "redis_failover", "postgres_restart", "redis_pause")
# Faults that take away something the REST API needs, so a 503 may answer meanwhile. A worker's
# death is not one: the API never waits for a worker.
OUTAGES = frozenset({"web_kill", "redis_failover", "postgres_restart", "redis_pause"})
# About how long a fault takes to inject and recover from on a busy 2-core box.
EXPECTED_RECOVERY = 12.0


@dataclass
class Fault:
    kind: str
    at: float  # time.monotonic() when it struck
    recovered: float | None = None
    detail: str = ""
    error: str = ""

    @property
    def survived(self) -> bool:
        return self.recovered is not None and not self.error

    @property
    def recovery_seconds(self) -> float | None:
        return None if self.recovered is None else self.recovered - self.at

    def window(self) -> tuple[float, float]:
        """When REST may answer 503 because of this fault (none for a worker kill)."""
        end = self.recovered if self.recovered is not None else self.at + RECOVERY_TIMEOUT_SECONDS
        return self.at - 0.5, end + OUTAGE_GRACE_SECONDS


class Injector:
    def __init__(self, stack: SoakStack, rng: random.Random, say: Callable[[str], object]) -> None:
        self.stack, self.rng, self.say = stack, rng, say
        self.faults: list[Fault] = []
        self.first_round_done = asyncio.Event()

    async def run(self, stop_by: float) -> None:
        """Inject rounds of faults until `stop_by` (time.monotonic()); the first round whatever the time."""
        mean_gap = min(25.0, max(2.0, (stop_by - time.monotonic()) / len(KINDS) - EXPECTED_RECOVERY))
        first = True
        while first or time.monotonic() + EXPECTED_RECOVERY < stop_by:
            order = self.rng.sample(KINDS, len(KINDS))
            for left, kind in zip(range(len(order), 0, -1), order, strict=True):
                gap = self.rng.uniform(0.5, 1.5) * mean_gap
                if first:  # what is left of the first round must still fit
                    gap = min(gap, max(0.0, (stop_by - time.monotonic()) / left - EXPECTED_RECOVERY))
                elif time.monotonic() + gap + EXPECTED_RECOVERY > stop_by:
                    return
                await asyncio.sleep(gap)
                await self.inject(kind)
            first = False
            self.first_round_done.set()

    async def inject(self, kind: str) -> Fault:
        fault = Fault(kind, time.monotonic())
        self.faults.append(fault)
        self.say(f"fault {len(self.faults)}: {kind}")
        try:
            await asyncio.wait_for(asyncio.to_thread(getattr(self, kind), fault), RECOVERY_TIMEOUT_SECONDS)
            fault.recovered = time.monotonic()
        except Exception as error:  # noted: the fault was not survived
            fault.error = f"{type(error).__name__}: {error}"[:300]
        self.say(f"  {kind} {fault.detail}: " + (f"recovered in {fault.recovery_seconds:.1f}s"
                                                  if fault.survived else f"NOT recovered: {fault.error}"))
        return fault

    # Each runs in a thread: the fault, then the wait for its recovery.

    def worker_kill(self, fault: Fault) -> None:
        which = self.rng.choice(("io", "cpu"))
        fault.at = time.monotonic()
        pid = self.stack.kill_worker(which)
        self.stack.start_worker(which)
        fault.detail = f"({which} worker {pid})"

    def web_kill(self, fault: Fault) -> None:
        pick = self.rng.random()
        victim, fault.at = self.stack.kill_web_process(
            lambda old: sorted(old, key=lambda p: p.pid)[int(pick * len(old))])
        fault.detail = f"(daphne {victim})"
        wait_until(lambda: self.stack.web_pool_whole(victim), RECOVERY_TIMEOUT_SECONDS, "the web pool whole again")
        wait_until(self.stack.ready, RECOVERY_TIMEOUT_SECONDS, "/readyz")

    def redis_failover(self, fault: Fault) -> None:
        fault.at = time.monotonic()
        old, new = self.stack.fail_over_redis()
        fault.detail = f"({old} -> {new})"
        wait_until(self.stack.ready, RECOVERY_TIMEOUT_SECONDS, "/readyz")
        wait_until(lambda: self.stack.replica_back(old), RECOVERY_TIMEOUT_SECONDS, f"{old} replicating {new}")

    def postgres_restart(self, fault: Fault) -> None:
        fault.at = time.monotonic()
        self.stack.restart_postgres()
        wait_until(self.stack.ready, RECOVERY_TIMEOUT_SECONDS, "/readyz")

    def redis_pause(self, fault: Fault) -> None:
        seconds = self.rng.uniform(*PAUSE_SECONDS)
        fault.at = time.monotonic()
        master = self.stack.pause_redis_master(seconds)
        fault.detail = f"({master} for {seconds:.1f}s)"
        wait_until(self.stack.ready, RECOVERY_TIMEOUT_SECONDS, "/readyz")
