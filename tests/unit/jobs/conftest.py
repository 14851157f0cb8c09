import pytest
from django.utils import timezone

from basic.jobs import events, transitions
from basic.jobs.leases import JobLease
from basic.models import Job


@pytest.fixture
def running(alice):
    """A job of alice's that has started (its lease held, job.started sent): (job, lease)."""
    job = Job.objects.create(kind="students_by_age", owner=alice, status="running", started=timezone.now())
    lease = JobLease(job.id)
    assert lease.acquire()
    transitions.push(job, events.JOB_STARTED)
    yield job, lease
    lease.release()
