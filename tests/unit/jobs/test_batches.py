"""A batch's aggregate and its one end (basic/jobs/batch_events.py), with `test_steps` members run
in-process on the real Redis: gapless seqs, a percent that never goes back, an event only when
something changed, exactly one end (never followed by anything), and the sweep's repair."""
import pytest
from kombu.exceptions import OperationalError

from basic.core.keys import batch_aggregate_key
from basic.core.redis_clients import sync_redis
from basic.jobs import batch_events, batches, event_store, transitions
from basic.jobs.event_schemas import check_event
from basic.jobs.event_store import batch_stream, read_events_sync
from basic.jobs.registry import get_kind
from basic.jobs.runner import run_job
from basic.models import Batch, Job
from tests import job_kinds

pytestmark = pytest.mark.django_db(transaction=True)  # batch_start commits its own block


@pytest.fixture
def start_batch(alice, queued):
    def make(*param_sets):
        kind = get_kind(job_kinds.NAME)
        members = []
        for params in param_sets:
            validated = kind.params(data=params)
            validated.is_valid(raise_exception=True)
            members.append(batches.MemberRequest(kind=kind, data=validated.validated_data))
        return batches.batch_start(owner=alice, members=members)
    return make


def members(batch):
    return list(batches.members_of(batch))


def stream(batch):
    return read_events_sync(batch_stream(batch.id))


def test_members_run_to_one_done_with_gapless_monotonic_aggregate(start_batch):
    batch = start_batch({"steps": 4}, {"steps": 2}, {"steps": 3})
    for job in members(batch):
        run_job(job.id)
    sent = stream(batch)
    assert [e["seq"] for e in sent] == list(range(1, len(sent) + 1))
    for event in sent:
        check_event(event)  # every event as stored matches its schema
    progress = [e["progress"] for e in sent]
    assert progress == sorted(progress) and progress[-1] == 100
    assert [e["type"] for e in sent].count("batch.done") == 1 and sent[-1]["type"] == "batch.done"
    assert (sent[-1]["done"], sent[-1]["total"], sent[-1]["status"]) == (3, 3, "done")
    assert sent[-1]["download_url"].endswith(f"/api/batches/{batch.id}/download/")
    signatures = [(e["progress"], e["queued"], e["running"], e["done"]) for e in sent[:-1]]
    assert len(signatures) == len(set(signatures))  # nothing sent twice for the same aggregate
    batch.refresh_from_db()
    assert batch.status == "done" and batch.finished and batch.last_seq == sent[-1]["seq"]


def test_a_failed_member_fails_the_batch_and_a_cancelled_batch_ends_cancelled(start_batch):
    failing = start_batch({"steps": 2}, {"steps": 2, "refuse_at": 1})
    for job in members(failing):
        run_job(job.id)
    assert stream(failing)[-1]["type"] == "batch.failed"
    cancelled = start_batch({"steps": 2}, {"steps": 2})
    first, second = members(cancelled)
    run_job(first.id)
    assert batches.batch_cancel(batch=cancelled)
    run_job(second.id)  # cancelled before it started: skipped
    sent = stream(cancelled)
    assert sent[-1]["type"] == "batch.cancelled" and (sent[-1]["done"], sent[-1]["cancelled"]) == (1, 1)
    assert [e["type"] for e in sent].count("batch.cancelled") == 1
    assert not batches.batch_cancel(batch=Batch.objects.get(id=cancelled.id))


@pytest.mark.parametrize("counts, cancel_requested, status", [
    ({"done": 3, "failed": 0, "cancelled": 0}, False, "done"),
    ({"done": 3, "failed": 0, "cancelled": 0}, True, "done"),  # the cancel came too late to stop any
    ({"done": 2, "failed": 1, "cancelled": 0}, False, "failed"),
    ({"done": 1, "failed": 1, "cancelled": 1}, True, "failed"),
    ({"done": 2, "failed": 0, "cancelled": 1}, False, "cancelled"),
    ({"done": 2, "failed": 0, "cancelled": 1}, True, "cancelled"),
])
def test_end_status(counts, cancel_requested, status):
    assert batch_events.end_status({"queued": 0, "running": 0, **counts},
                                   cancel_requested=cancel_requested) == status


def test_the_end_is_sent_once_however_many_times_settling_is_tried(start_batch):
    batch = start_batch({"steps": 1})
    run_job(members(batch)[0].id)
    assert not batch_events.finish_if_settled(batch_id=batch.id)  # ended already
    Batch.objects.filter(id=batch.id).update(finished=None, status="running")  # as if the row lost it
    assert batch_events.finish_if_settled(batch_id=batch.id)  # the row is set again ...
    assert [e["type"] for e in stream(batch)].count("batch.done") == 1  # ... but the stream is closed


def test_no_aggregate_event_follows_the_end(start_batch):
    batch = start_batch({"steps": 1})
    job = members(batch)[0]
    run_job(job.id)
    before = len(stream(batch))
    job.refresh_from_db()
    transitions.push(job, "job.progress")  # a late member event, e.g. from a slow worker
    assert len(stream(batch)) == before
    assert sync_redis().hget(batch_aggregate_key(batch.id), "closed") == b"1"


def test_a_member_bar_never_goes_back_when_it_is_retried(start_batch):
    batch = start_batch({"steps": 2}, {"steps": 2})
    first = members(batch)[0]
    fields = {"type": "batch.progress", "batch": str(batch.id), "status": "queued", "ts": "now"}
    sent = [event_store.aggregate_batch(batch.id, member=first.id, status=status, progress=pct, total=2,
                                        fields=fields, message_type="job.event", channels=[])
            for status, pct in [("running", 60), ("queued", 0), ("running", 30), ("running", 80)]]
    # A retry puts the member back in the queue at 0%: the counts change, the percent holds at its
    # high-water mark until the new attempt passes it.
    assert [e["progress"] for e in sent] == [30, 30, 30, 40]
    assert [(e["queued"], e["running"]) for e in sent] == [(1, 1), (2, 0), (1, 1), (1, 1)]
    assert [e["seq"] for e in sent] == [1, 2, 3, 4]
    again = event_store.aggregate_batch(batch.id, member=first.id, status="running", progress=80, total=2,
                                        fields=fields, message_type="job.event", channels=[])
    assert again is None  # nothing changed: nothing sent


def test_the_sweep_ends_a_batch_whose_last_member_ended_unannounced(start_batch):
    batch = start_batch({"steps": 1}, {"steps": 1})
    # Both members ended, but the worker died before the batch's end (no hook ran).
    Job.objects.filter(batch=batch).update(status="done", finished="2026-01-01T00:00:00Z")
    assert batch_events.finish_settled_batches() == [batch.id]
    assert stream(batch)[-1]["type"] == "batch.done"
    assert batch_events.finish_settled_batches() == []


def test_a_broker_outage_at_the_commit_fails_every_member(alice, monkeypatch):
    from app.celery import app

    def down(*args, **kwargs):
        raise OperationalError("no broker")
    monkeypatch.setattr(app, "send_task", down)
    kind = get_kind(job_kinds.NAME)
    with pytest.raises(batches.services.BrokerUnavailable):
        batches.batch_start(owner=alice, members=[batches.MemberRequest(kind=kind, data={"steps": 1})] * 3)
    batch = Batch.objects.get()
    assert set(Job.objects.values_list("status", flat=True)) == {"failed"}
    assert batch.status == "failed" and stream(batch)[-1]["type"] == "batch.failed"


def test_the_batch_is_running_from_its_first_members_start(start_batch):
    batch = start_batch({"steps": 1}, {"steps": 1})
    job = members(batch)[0]
    job.status = "running"
    transitions.push(job, "job.progress")
    assert Batch.objects.get(id=batch.id).status == "queued"  # a progress event alone changes no row
    transitions.push(job, "job.started")
    assert Batch.objects.get(id=batch.id).status == "running"
