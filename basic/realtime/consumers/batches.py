"""`/ws/batches/{id}/`: one batch's snapshot (with its members) or missed aggregate events, then its
live ones; the same ownership, replay and gap rules as a job's socket (event_feed.py)."""
from typing import Any

from basic.jobs import batches, event_store, events
from basic.models import Batch
from basic.realtime.batch_feed import BatchFeed
from basic.realtime.consumers.event_feed import EventFeedConsumer
from basic.realtime.db_reads import database_read

read_owner = database_read(lambda batch_id: Batch.objects.filter(id=batch_id).values_list("owner_id").first())
read_batch = database_read(lambda batch_id: Batch.objects.select_related("owner").get(id=batch_id))
read_batch_and_members = database_read(lambda batch_id: (
    Batch.objects.select_related("owner").get(id=batch_id),
    list(batches.members_of(Batch(id=batch_id)))))


class BatchEventsConsumer(EventFeedConsumer):
    """`/ws/batches/{id}/`: `batch.snapshot` (or the missed events after `?after=SEQ`), then
    `batch.progress` events and one end."""

    url_kwarg = "batch_id"
    not_found = "No such batch."
    feed: BatchFeed

    async def read_owner(self, subject_id: str) -> tuple[int | None] | None:
        return await read_owner(subject_id)

    def group(self) -> str:
        return events.batch_group(self.subject_id)

    def stream(self) -> Any:
        return event_store.batch_stream(self.subject_id)

    def new_feed(self) -> BatchFeed:
        return BatchFeed()

    async def read_row(self) -> Batch:
        return await read_batch(self.subject_id)

    async def snapshot_of(self, feed: BatchFeed) -> dict[str, Any]:  # type: ignore[override]
        batch, members = await read_batch_and_members(self.subject_id)
        return dict(feed.batch_snapshot(batch, members))
