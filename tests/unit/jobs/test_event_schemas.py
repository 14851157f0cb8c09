"""Every job event the lifecycle stores matches its type's schema (basic/jobs/event_schemas.py), for
each outcome, with the `test_steps` kind run in-process on the real Redis; a wrong event is refused."""
import uuid

import pytest

from basic.jobs import event_schemas, services, transitions
from basic.jobs.context import JobContext
from basic.jobs.event_schemas import EventShapeError, check_event
from basic.jobs.event_store import read_events_sync
from basic.jobs.events import BATCH_EVENT_TYPES, BATCH_SNAPSHOT, JOB_EVENT_TYPES, JOB_SNAPSHOT
from basic.jobs.registry import get_kind
from basic.jobs.runner import run_job
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db


@pytest.fixture
def start(alice, queued):
    def make(**params):
        kind = get_kind(job_kinds.NAME)
        validated = kind.params(data=params)
        validated.is_valid(raise_exception=True)
        return services.job_start(kind=kind, owner=alice, data=validated.validated_data)
    return make


def stored(job):
    events = read_events_sync(job.id)
    for event in events:
        check_event(event)
    return [event["type"] for event in events]


def test_a_done_job_stores_only_events_of_their_schemas(start):
    job = start()
    run_job(job.id)
    assert stored(job) == ["job.started"] + ["job.progress"] * 3 + ["job.done"]


@pytest.mark.parametrize("params", [{"crash_at": 2}, {"refuse_at": 3}])
def test_a_failed_job_stores_only_events_of_their_schemas(start, params):
    job = start(**params)
    run_job(job.id)
    assert stored(job)[-1] == "job.failed"


def test_a_job_cancelled_while_running_stores_only_events_of_their_schemas(start, monkeypatch):
    job = start(steps=5)
    real_progress = JobContext.progress

    def cancel_at_step_two(self, done, total, message="", **kwargs):
        if done == 2:
            services.job_cancel(job=Job.objects.get(id=job.id))
        real_progress(self, done, total, message, **kwargs)

    monkeypatch.setattr(JobContext, "progress", cancel_at_step_two)
    run_job(job.id)
    assert stored(job)[-1] == "job.cancelled"


def test_a_job_cancelled_while_queued_and_one_the_broker_refused_store_events_of_their_schemas(start, monkeypatch):
    job = start()
    services.job_cancel(job=job)
    assert stored(job) == ["job.cancelled"]

    from app.celery import app

    def down(*args, **kwargs):
        raise OSError("Connection refused")

    monkeypatch.setattr(app, "send_task", down)
    with pytest.raises(services.BrokerUnavailable):
        start()
    assert stored(Job.objects.get(status="failed")) == ["job.failed"]


@pytest.mark.parametrize("outcome", ["queued", "done"])
def test_the_snapshot_a_job_socket_sends_matches_its_schema(start, outcome):
    from basic.realtime.job_feed import job_snapshot  # the job socket's first frame

    job = start()
    if outcome == "done":
        run_job(job.id)
    job = Job.objects.select_related("owner").get(id=job.id)
    snapshot = job_snapshot(job, job.last_seq)
    check_event(snapshot)
    assert ("result_url" in snapshot) == (outcome == "done")


def progress_event(**changes):
    event = {"type": "job.progress", "job": str(uuid.uuid4()), "seq": 3, "kind": "test_steps", "status": "running",
             "progress": 42, "message": "Step 3 of 7", "ts": "2025-01-01T00:00:00.000+00:00"}
    return {key: value for key, value in {**event, **changes}.items() if value is not ...}


def test_a_well_formed_event_passes_and_seq_is_only_for_stored_events():
    check_event(progress_event())
    check_event(progress_event(seq=...), with_seq=False)
    with pytest.raises(EventShapeError, match=r"job.progress: missing keys \['seq'\]"):
        check_event(progress_event(seq=...))
    with pytest.raises(EventShapeError, match=r"extra keys \['seq'\]"):
        check_event(progress_event(), with_seq=False)


@pytest.mark.parametrize(("event", "refusal"), [
    (progress_event(kind=...), r"^job.progress: missing keys \['kind'\], extra keys \[\]$"),
    (progress_event(error="boom"), r"^job.progress: missing keys \[\], extra keys \['error'\]$"),
    (progress_event(progress="42"), r"^job.progress: 'progress' is str, not int$"),
    (progress_event(message=None), r"^job.progress: 'message' is NoneType, not str$"),
    (progress_event(type="job.done"), r"^job.done: missing keys \['result', 'result_url'\]"),
    ({**progress_event(type="job.done"), "result_url": "/x/", "result": ["not", "a", "dict"]},
     r"^job.done: 'result' is list, not dict$"),
    (progress_event(type="job.paused"), r"^unknown job event type 'job.paused'$"),
    (progress_event(type=...), r"^unknown job event type None$"),
])
def test_a_wrong_event_is_refused_naming_its_type_and_keys(event, refusal):
    with pytest.raises(EventShapeError, match=refusal):
        check_event(event)


def test_the_lifecycle_refuses_to_send_a_wrong_event(start):
    job = start()
    with pytest.raises(EventShapeError, match="job.done: missing keys"):
        transitions.push(job, "job.done")  # no result nor result_url
    assert read_events_sync(job.id) == []


def test_every_job_and_batch_event_type_has_a_schema():
    assert set(event_schemas.SCHEMAS) == JOB_EVENT_TYPES | {JOB_SNAPSHOT} | BATCH_EVENT_TYPES | {BATCH_SNAPSHOT}
