"""A batch's percent in a snapshot frame and over REST: the mean of its members' rows, never below
the last `batch.progress` sent (the rows are written at most once a second, so they lag the events;
a socket that connects, or a page that polls, must not see the bar go back)."""
import pytest

from basic.jobs import batch_events
from basic.models import Batch, Job
from basic.realtime.batch_feed import batch_snapshot

pytestmark = pytest.mark.django_db


def test_the_percent_is_the_members_mean_and_never_below_the_last_one_sent(alice, api):
    batch = Batch.objects.create(owner=alice, total=2, last_progress=0)
    first = Job.objects.create(kind="test_steps", owner=alice, batch=batch, status="running", progress=40)
    Job.objects.create(kind="test_steps", owner=alice, batch=batch, status="done", progress=100)
    members = list(batch.jobs.all())
    assert batch_events.batch_percent(batch, members) == 70
    Batch.objects.filter(id=batch.id).update(last_progress=85)  # sent from fresher progress than the rows
    batch.refresh_from_db()
    assert batch_events.batch_percent(batch, members) == 85
    assert batch_snapshot(batch, members, seq=3)["progress"] == 85
    assert api.get(f"/api/batches/{batch.id}/").json()["progress"] == 85
    Job.objects.filter(id=first.id).update(progress=90)
    assert api.get(f"/api/batches/{batch.id}/").json()["progress"] == 95
