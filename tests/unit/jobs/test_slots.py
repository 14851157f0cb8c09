"""Concurrency caps' slots (basic/jobs/slots.py) against the session's Redis: granted up to the cap,
waiters served in their order, a dead holder's slot and a silent waiter's place lapse by
themselves, and a job waiting on its owner's cap does not hold up other owners' jobs."""
import time
import uuid

import pytest

from basic.core.keys import slot_keys
from basic.jobs import services, slots
from basic.jobs.models import Job
from basic.jobs.registry import get_kind
from basic.jobs.runner import run_job
from basic.jobs.slots import Cap


@pytest.fixture(autouse=True)
def own_keys(settings, redis_client):
    settings.REDIS_KEY_PREFIX = f"test-slots-{uuid.uuid4().hex[:8]}"
    yield
    for key in redis_client.scan_iter(match=f"{settings.REDIS_KEY_PREFIX}:*"):
        redis_client.delete(key)


def cap(limit: int, owner: int | None = None) -> Cap:
    return Cap(slot_keys("probe", owner), limit, per_user=owner is not None)


def test_slots_are_granted_up_to_the_cap_and_the_rest_wait():
    kind_cap = cap(2)
    assert slots.acquire("a", 1, [kind_cap]) is None
    assert slots.acquire("b", 2, [kind_cap]) is None
    wait = slots.acquire("c", 3, [kind_cap])
    assert (wait.running, wait.ahead) == (2, 0)
    assert wait.message("Thumbnail") == "waiting: 2 of 2 Thumbnail jobs running"
    assert slots.acquire("a", 1, [kind_cap]) is None  # a holder asking again keeps its slot
    slots.release("a", [kind_cap])
    assert slots.acquire("c", 3, [kind_cap]) is None


def test_waiters_are_served_in_their_order_whoever_asks_first():
    kind_cap = cap(1)
    assert slots.acquire("holder", 0, [kind_cap]) is None
    assert slots.acquire("second", 2, [kind_cap]) is not None  # asks first, arrived later
    assert slots.acquire("first", 1, [kind_cap]) is not None
    slots.release("holder", [kind_cap])
    wait = slots.acquire("second", 2, [kind_cap])
    assert (wait.running, wait.ahead) == (0, 1)
    assert wait.message("Thumbnail") == "waiting: 0 of 1 Thumbnail jobs running, 1 waiting ahead"
    assert slots.acquire("first", 1, [kind_cap]) is None
    slots.release("first", [kind_cap])
    assert slots.acquire("second", 2, [kind_cap]) is None


def test_a_dead_holders_slot_lapses_unless_renewed():
    kind_cap = cap(1)
    assert slots.acquire("renewed", 0, [kind_cap], seconds=1) is None
    time.sleep(0.6)
    slots.renew("renewed", [kind_cap], seconds=1)
    time.sleep(0.6)  # past its first expiry, not its renewed one
    assert slots.acquire("other", 1, [kind_cap], seconds=1) is not None
    time.sleep(0.5)  # the holder is gone (a SIGKILLed worker): nothing renews it
    assert slots.acquire("other", 1, [kind_cap], seconds=1) is None


def test_a_waiter_that_stops_asking_is_dropped_from_the_line():
    kind_cap = cap(1)
    assert slots.acquire("holder", 0, [kind_cap], seconds=1) is None
    assert slots.acquire("silent", 1, [kind_cap], seconds=1) is not None
    slots.release("holder", [kind_cap])
    assert slots.acquire("patient", 2, [kind_cap], seconds=1).ahead == 1
    time.sleep(2.1)  # two leases without a word from "silent" (cancelled, its message lost)
    assert slots.acquire("patient", 2, [kind_cap], seconds=1) is None
    wait = slots.acquire("silent", 1, [kind_cap], seconds=1)  # asking again puts it back in line
    assert (wait.running, wait.ahead) == (1, 0)


def test_release_frees_the_slot_and_leaves_the_line():
    kind_cap = cap(1)
    assert slots.acquire("holder", 0, [kind_cap]) is None
    assert slots.acquire("gone", 1, [kind_cap]) is not None
    slots.release("gone", [kind_cap])  # cancelled while waiting
    slots.release("holder", [kind_cap])
    assert slots.acquire("next", 2, [kind_cap]) is None


def test_a_job_held_back_by_its_owners_cap_does_not_hold_up_other_owners():
    alice_cap, bob_cap, kind_cap = cap(1, owner=1), cap(1, owner=2), cap(2)
    assert slots.acquire("alice-1", 1, [alice_cap, kind_cap]) is None
    wait = slots.acquire("alice-2", 2, [alice_cap, kind_cap])
    assert wait.cap == alice_cap and wait.message("Thumbnail") == "waiting: 1 of 1 of your Thumbnail jobs running"
    assert slots.acquire("bob-1", 3, [bob_cap, kind_cap]) is None  # the kind's second slot
    wait = slots.acquire("alice-3", 4, [alice_cap, kind_cap])
    assert wait.cap == alice_cap
    slots.release("alice-1", [alice_cap, kind_cap])
    assert slots.acquire("alice-3", 4, [alice_cap, kind_cap]).cap == alice_cap  # alice-2 is first
    assert slots.acquire("alice-2", 2, [alice_cap, kind_cap]) is None


def test_a_kinds_caps_come_from_its_policy(settings):
    steps = get_kind("test_steps")
    assert slots.caps_of(steps, 7) == []
    settings.JOB_KIND_POLICIES = {"test_steps": {"concurrency": 3, "per_user_concurrency": 1}}
    assert [(c.limit, c.per_user) for c in slots.caps_of(steps, 7)] == [(1, True), (3, False)]
    assert [(c.limit, c.per_user) for c in slots.caps_of(steps, None)] == [(3, False)]


def test_a_job_over_its_cap_waits_queued_saying_why_and_asks_again(settings, alice, monkeypatch):
    settings.JOB_KIND_POLICIES = {"test_steps": {"concurrency": 1}}
    caps = slots.caps_of(get_kind("test_steps"), alice.id)
    assert slots.acquire("elsewhere", 0, caps) is None  # the only slot, held by another run
    sent = []
    monkeypatch.setattr(services, "enqueue", lambda job, countdown=None: sent.append(countdown))
    job = Job.objects.create(kind="test_steps", owner=alice, params={"steps": 1, "delay": 0})
    run_job(job.id)
    run_job(job.id)
    job.refresh_from_db()
    assert (job.status, job.message) == ("queued", "waiting: 1 of 1 Test steps jobs running")
    assert job.last_seq == 1  # one event, not one per ask
    assert len(sent) == 2 and all(0.5 <= countdown <= 1.5 for countdown in sent)
    slots.release("elsewhere", caps)
    run_job(job.id)
    job.refresh_from_db()
    assert job.status == "done"
    assert slots.acquire("after", 2, caps) is None  # the run gave its slot back
