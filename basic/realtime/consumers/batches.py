"""`/ws/batches/{id}/`: one batch's snapshot (with its members) or missed aggregate events, then its
live ones; the same ownership, replay and gap rules as a job's socket (event_feed.py)."""
from typing import Any

from basic.jobs import batches, event_store, events
from basic.models import Batch
from basic.realtime.batch_feed import BatchFeed
from basic.realtime.consumers.event_feed import EventFeedConsumer
from basic.realtime.db_reads import InFlight, database_read

VISIBILITY = InFlight()
read_visible_batch = database_read(lambda user, batch_id: batches.batch_visible_to(user=user, batch_id=batch_id))
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

    async def find(self, subject_id: str) -> object | None:
        return await VISIBILITY.get((self.user.pk, subject_id), lambda: read_visible_batch(self.user, subject_id))

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
