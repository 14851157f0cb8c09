"""A batch's aggregate across a Redis that comes back empty mid-batch (docs/design.md trap 7): the
next `batch.progress` is never below the last one sent, its seq follows the last one without a gap,
the counts still include the members that ended before, and nothing follows the batch's end. The
members run in-process on the real Redis (basic/jobs/batch_events.py)."""
import pytest

from basic.core.keys import batch_aggregate_key, batch_members_key, batch_seq_key, batch_stream_key
from basic.core.redis_clients import sync_redis
from basic.jobs import batches, events, transitions
from basic.jobs.event_store import batch_stream, read_events_sync
from basic.jobs.registry import get_kind
from basic.jobs.runner import run_job
from basic.models import Batch, Job
from tests import job_kinds

pytestmark = pytest.mark.django_db(transaction=True)  # batch_start commits its own block


@pytest.fixture
def start_batch(alice, queued):
    def make(count):
        kind = get_kind(job_kinds.NAME)
        params = kind.params(data={"steps": 2})
        params.is_valid(raise_exception=True)
        member = batches.MemberRequest(kind=kind, data=params.validated_data)
        return batches.batch_start(owner=alice, members=[member] * count)
    return make


def members(batch):
    return list(batches.members_of(batch))


def stream(batch):
    return read_events_sync(batch_stream(batch.id))


def redis_comes_back_empty(batch):
    """Everything Redis held of the batch is gone: its stream, seq counter and aggregate."""
    keys = [key(batch.id) for key in (batch_stream_key, batch_seq_key, batch_members_key, batch_aggregate_key)]
    assert sync_redis().delete(*keys) >= 3  # (the members hash too, once a member reported)


def test_the_percent_and_the_seq_go_on_from_where_they_were(start_batch):
    batch = start_batch(3)
    first, second, third = members(batch)
    run_job(first.id)
    before = stream(batch)
    last = before[-1]
    assert (last["type"], last["done"], last["progress"]) == ("batch.progress", 1, 33)
    row = Batch.objects.get(id=batch.id)
    assert (row.last_seq, row.last_progress) == (last["seq"], 33), "the row keeps the floors"

    redis_comes_back_empty(batch)
    run_job(second.id)
    after = stream(batch)
    assert after[0]["seq"] == last["seq"] + 1, "seq goes on, neither back to 1 nor with a gap"
    assert after[0]["progress"] >= last["progress"]
    assert after[0]["done"] == 1, "the member that ended before the loss still counts (from the database)"
    run_job(third.id)
    after = stream(batch)
    sent = before + after
    assert [e["seq"] for e in sent] == list(range(1, len(sent) + 1))  # gapless across the loss
    progress = [e["progress"] for e in sent]
    assert progress == sorted(progress)  # never back
    assert [e["type"] for e in sent].count("batch.done") == 1 and sent[-1]["type"] == "batch.done"
    assert (sent[-1]["done"], sent[-1]["seq"]) == (3, Batch.objects.get(id=batch.id).last_seq)


def test_the_percent_holds_even_where_the_database_lags_behind_redis(start_batch):
    """A running member's row is written about once a second; its last percent may be in Redis
    only. After the loss the recount from the rows is lower: the row's last percent is the floor."""
    batch = start_batch(3)
    first, second, _ = members(batch)
    first.status, first.progress = Job.Status.RUNNING, 90  # sent, not yet in its row
    transitions.push(first, events.JOB_PROGRESS)
    last = stream(batch)[-1]
    assert (last["progress"], last["running"]) == (30, 1)

    redis_comes_back_empty(batch)
    second.status = Job.Status.RUNNING
    transitions.push(second, events.JOB_STARTED)
    following = stream(batch)
    assert [e["seq"] for e in following] == [last["seq"] + 1]
    assert following[0]["progress"] == 30, "not the rows' 0"


def test_nothing_follows_the_end_even_when_redis_lost_it(start_batch):
    batch = start_batch(1)
    (job,) = members(batch)
    run_job(job.id)
    assert stream(batch)[-1]["type"] == "batch.done"
    redis_comes_back_empty(batch)
    job.refresh_from_db()
    transitions.push(job, events.JOB_PROGRESS)  # a late member event, e.g. from a slow worker
    assert stream(batch) == []
