"""The batch socket's own rules beside the job socket's (basic/realtime/job_feed.py, whose replay,
dedup and gap rules it shares): its snapshot, and the events that end it."""
from django.utils import timezone

from basic.jobs import batch_events, events
from basic.jobs.event_schemas import BatchSnapshot, check_event
from basic.models import Batch, Job
from basic.realtime.job_feed import JobFeed


def batch_snapshot(batch: Batch, members: list[Job], seq: int) -> BatchSnapshot:
    """The batch and its members' rows as the frame a batch socket is sent first (or instead of a
    replay that history can no longer serve); `seq` is the last event it stands for."""
    counts = dict.fromkeys(batch_events.COUNTED, 0)
    for job in members:
        counts["queued" if job.status == Job.Status.SCHEDULED else job.status] += 1
    ended = counts["done"] + counts["failed"] + counts["cancelled"]
    snapshot: BatchSnapshot = {
        "type": events.BATCH_SNAPSHOT,
        "batch": str(batch.id),
        "seq": seq,
        "status": batch.status,
        "progress": batch_events.batch_percent(batch, members),
        "message": f"{ended} of {batch.total} finished",
        "total": batch.total,
        **counts,
        "owner": batch.owner.get_username(),
        "created": batch.created.isoformat(),
        "finished": batch.finished.isoformat() if batch.finished else None,
        "members": [{"job": str(job.id), "kind": job.kind, "status": job.status, "progress": job.progress,
                     "message": job.message, "seq": job.last_seq} for job in members],
        "download_url": batch_events.download_url(batch.id),
        "ts": timezone.now().isoformat(timespec="milliseconds"),
    }
    check_event(snapshot)
    return snapshot


class BatchFeed(JobFeed):
    """What one socket has been sent of one batch."""

    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(terminal=events.BATCH_TERMINAL_EVENTS)

    def batch_snapshot(self, batch: Batch, members: list[Job]) -> BatchSnapshot:
        """The snapshot frame of `batch` at the last seq; a terminal one ends the feed."""
        self.ended = batch.is_terminal
        return batch_snapshot(batch, members, self.last_seq)
