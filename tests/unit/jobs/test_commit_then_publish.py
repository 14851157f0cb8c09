"""Commit, then publish: `services.job_start` sends the run's task only once the job row is committed,
so a worker never looks for a row that is not there yet; a rollback sends nothing; a broker outage at
the commit still ends the job failed. Real commits, so `transaction=True`."""
import pytest
from django.db import transaction
from kombu.exceptions import OperationalError

from basic.jobs import services
from basic.jobs.event_store import read_events_sync
from basic.jobs.registry import get_kind
from basic.models import Job
from tests import job_kinds

pytestmark = pytest.mark.django_db(transaction=True)


class Rollback(Exception):
    pass


def start(owner):
    return services.job_start(kind=get_kind(job_kinds.NAME), owner=owner, data={"steps": 1})


def test_inside_a_transaction_the_task_is_sent_only_after_the_commit(alice, queued):
    with transaction.atomic():
        job = start(alice)
        assert queued == [], "sent before the row was committed"
        assert Job.objects.filter(id=job.id).exists()
    assert [(call["name"], call["task_id"], call["args"]) for call in queued] == \
        [("basic.run_job", str(job.id), [str(job.id)])]


def test_a_rollback_sends_nothing_and_leaves_no_job(alice, queued):
    with pytest.raises(Rollback), transaction.atomic():
        start(alice)
        raise Rollback
    assert queued == []
    assert not Job.objects.exists()


def test_outside_a_transaction_the_task_is_sent_before_job_start_returns(alice, queued):
    job = start(alice)
    assert [call["task_id"] for call in queued] == [str(job.id)]


@pytest.fixture
def broker_down(monkeypatch):
    from app.celery import app

    def down(*args, **kwargs):
        raise OperationalError("Error 111 connecting to 127.0.0.1:1. Connection refused.")

    monkeypatch.setattr(app, "send_task", down)


def test_a_broker_outage_at_the_commit_ends_the_job_failed_and_tells_the_caller(alice, broker_down):
    with pytest.raises(services.BrokerUnavailable), transaction.atomic():
        job = start(alice)
    job.refresh_from_db()  # committed, then failed: never left queued
    assert (job.status, job.error) == ("failed", services.BROKER_DOWN)
    assert [event["type"] for event in read_events_sync(job.id)] == ["job.failed"]


def test_a_broker_outage_outside_a_transaction_raises_from_job_start_as_before(alice, broker_down):
    with pytest.raises(services.BrokerUnavailable):
        start(alice)
    assert Job.objects.get().status == "failed"
