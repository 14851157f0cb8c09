"""`/ws/jobs/{id}/`: one job's snapshot or missed events, then its live events (the shared feed
socket in event_feed.py, watching a job)."""
from typing import Any

from basic.jobs import events
from basic.models import Job
from basic.realtime.consumers.event_feed import RESYNC_READS, EventFeedConsumer
from basic.realtime.db_reads import database_read
from basic.realtime.job_feed import JobFeed

__all__ = ["RESYNC_READS", "JobEventsConsumer"]

read_owner = database_read(lambda job_id: Job.objects.filter(id=job_id).values_list("owner_id").first())
read_job = database_read(lambda job_id: Job.objects.select_related("owner").get(id=job_id))


class JobEventsConsumer(EventFeedConsumer):
    """`/ws/jobs/{id}/`: a snapshot (or the missed events after `?after=SEQ`), then live events."""

    url_kwarg = "job_id"
    not_found = "No such job."

    @property
    def job_id(self) -> str:
        return self.subject_id

    async def read_owner(self, subject_id: str) -> tuple[int | None] | None:
        return await read_owner(subject_id)

    def group(self) -> str:
        return events.job_group(self.subject_id)

    def stream(self) -> Any:
        return self.subject_id

    async def read_row(self) -> Job:
        return await read_job(self.subject_id)

    async def snapshot_of(self, feed: JobFeed) -> dict[str, Any]:
        return dict(feed.snapshot(await read_job(self.subject_id)))
