"""The chaos soak in CI (issue 21, item 6): tests/soak's harness (`python -m tests.soak`, whose
default is 10 minutes and 1,000 sockets) for about two minutes of load on a whole stack:
PostgreSQL, a Redis master with its replica and three sentinels, two Daphnes behind nginx, a
gevent and a prefork worker. Meanwhile every kind of fault is injected at least once, in a seeded
random order: a worker killed, a web process killed, Redis failed over, PostgreSQL restarted,
Redis paused. The soak runs once (a module fixture); each test below checks one invariant and says
its numbers when it breaks (docs/soak.md: what each one means).

SOAK_SECONDS (120), SOAK_SOCKETS (250: what opens reliably through the kills on a busy 2-core
box) and SOAK_SEED (random, printed) change the run.
"""
import os

import pytest
from rich.console import Console

from tests import databases, postgres
from tests.nginx import require_nginx
from tests.sentinel import require_sentinel
from tests.soak import SoakConfig, SoakResult, run_soak
from tests.soak.report import render

# Setup (~25 s), the load, the drain (at most 45 s; jobs are sized to end within it even when
# their worker is killed at their last step): about 3 minutes with the defaults.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(420)]

SECONDS = float(os.environ.get("SOAK_SECONDS", "120"))
SOCKETS = int(os.environ.get("SOAK_SOCKETS", "250"))
SEED = os.environ.get("SOAK_SEED", "")


@pytest.fixture(scope="module")
def soak() -> SoakResult:
    require_nginx()
    require_sentinel()
    reason = postgres.postgres_missing_reason()
    if reason:
        (pytest.fail if databases.in_ci() else pytest.skip)(reason)
    config = SoakConfig(seconds=SECONDS, sockets=SOCKETS, drain_timeout=45,
                        **({"seed": int(SEED)} if SEED else {}))
    result = run_soak(config, say=print)
    render(result, Console(width=150, force_terminal=False))
    return result


def explain(result: SoakResult, name: str) -> str:
    check = result.check(name)
    where = "" if result.ok else f" (seed {result.config.seed}; logs in {result.workdir})"
    return f"{check}{where}"


def test_every_kind_of_fault_is_injected_and_survived(soak: SoakResult):
    assert soak.check("faults injected and survived").ok, explain(soak, "faults injected and survived")


def test_every_started_job_ends_exactly_once(soak: SoakResult):
    assert soak.check("jobs end exactly once").ok, explain(soak, "jobs end exactly once")


def test_every_job_socket_is_gapless_across_its_resumes(soak: SoakResult):
    assert soak.check("socket streams gapless").ok, explain(soak, "socket streams gapless")


def test_chat_loses_no_accepted_message(soak: SoakResult):
    assert soak.check("chat loses nothing").ok, explain(soak, "chat loses nothing")


def test_rest_answers_no_5xx_but_503_during_outages(soak: SoakResult):
    assert soak.check("HTTP: no 5xx but 503 in outages").ok, explain(soak, "HTTP: no 5xx but 503 in outages")


def test_memory_and_open_files_are_flat_after_the_load(soak: SoakResult):
    assert soak.check("memory and open files flat").ok, explain(soak, "memory and open files flat")


def test_redis_keys_are_flat_after_the_load(soak: SoakResult):
    assert soak.check("Redis keys flat").ok, explain(soak, "Redis keys flat")
