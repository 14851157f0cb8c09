"""A batch's events: its aggregate over its members (`batch.progress`, only when the percent or a
count changes) and exactly one end (`batch.done`, `batch.failed` or `batch.cancelled`).

Every member event leaves through `transitions.push`, which calls `member_changed`. The aggregate
is computed in Redis where the batch's seq is assigned (event_store.aggregate_batch), so members
ending at once on several workers give gapless seqs in aggregate order, never backwards. The end
is the database's: the member whose end leaves none active finishes the batch by a conditional
update (`finished IS NULL`) and only the call that won sends the end, which closes the aggregate
in the same script so nothing follows it. If that worker dies in between, the recovery sweep
finishes the batch (`finish_settled_batches`).

Neither the percent nor the seq goes back when Redis comes back empty (docs/design.md trap 7): the
row keeps the seq and percent of the last aggregate event stored (`last_seq`, `last_progress`), and
when the script finds no aggregate in Redis it is given those as floors, with the members' statuses
and percents from the database to recount from (`_restore`).
"""
import logging
import time
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any
from uuid import UUID

import redis
from django.db.models import Count, F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from basic.core import metrics
from basic.core.database_outages import unless_database_down
from basic.core.reverse_by_id import reverse_by_id
from basic.jobs import event_store, events
from basic.jobs.event_schemas import check_event
from basic.jobs.models import Batch, Job
from basic.jobs.publish import TERMINAL_PUSH_ATTEMPTS, RedisEventPusher, get_pusher

logger = logging.getLogger(__name__)

END_EVENTS = {
    Batch.Status.DONE: events.BATCH_DONE,
    Batch.Status.FAILED: events.BATCH_FAILED,
    Batch.Status.CANCELLED: events.BATCH_CANCELLED,
}
COUNTED = ("queued", "running", "done", "failed", "cancelled")


def download_url(batch_id: UUID | str) -> str:
    return reverse_by_id("batch-download", batch_id)


def batch_groups(batch_id: UUID | str, owner_id: int | None) -> list[str]:
    """Its own socket's group, and its owner's `/ws/events/` feed."""
    return [events.batch_group(batch_id)] + ([events.user_group(owner_id)] if owner_id is not None else [])


@lru_cache(maxsize=4096)
def _total(batch_id: UUID) -> int:
    """A batch's member count (fixed at its start), read once per process."""
    return Batch.objects.filter(id=batch_id).values_list("total", flat=True).first() or 0


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def member_changed(job: Job, event_type: str) -> None:
    """A member's event was pushed: update its batch's aggregate (an event only if it changed), mark
    the batch running at its first start, and finish it if this member was the last to end."""
    if job.batch_id is None:
        return
    total = _total(job.batch_id)
    if total:
        _aggregate(job, total)
    if event_type == events.JOB_STARTED:  # not per progress event: an UPDATE takes SQLite's write lock
        Batch.objects.filter(id=job.batch_id, status__in=(Batch.Status.SCHEDULED, Batch.Status.QUEUED)).update(
            status=Batch.Status.RUNNING)
    elif job.is_terminal:
        finish_if_settled(batch_id=job.batch_id)


def _aggregate(job: Job, total: int) -> None:
    pusher = get_pusher()
    one_trip = isinstance(pusher, RedisEventPusher) and pusher.one_trip
    groups = batch_groups(job.batch_id, job.owner_id)
    fields = {"type": events.BATCH_PROGRESS, "batch": str(job.batch_id), "status": Batch.Status.QUEUED, "ts": _now()}
    try:
        event = event_store.aggregate_batch(
            job.batch_id, member=job.id, status=job.status, progress=100 if job.is_terminal else job.progress,
            total=total, fields=fields, message_type=events.LAYER_JOB_EVENT,
            channels=pusher.channels(groups) if one_trip else [], restore=lambda: _restore(job.batch_id))
        if event is not None and not one_trip:
            pusher.publish(groups, event)
    except redis.RedisError as exc:  # dropped like a job's progress: the next change supersedes it
        logger.warning("batch %s aggregate after job %s failed: %s", job.batch_id, job.id, exc)
        return
    if event is not None:
        # The floors for a Redis that comes back empty. Aggregate events come in seq order with a
        # percent that never goes back, so the highest seq's percent is the one to keep. One UPDATE
        # per aggregate event: at most a hundred percent steps plus each member's status changes.
        # Best effort, like the member's own progress write: a database blip skips it (the next
        # aggregate event writes a higher floor) rather than stopping the member's body.
        unless_database_down(lambda: Batch.objects.filter(id=job.batch_id, last_seq__lt=event["seq"]).update(
            last_seq=event["seq"], last_progress=event["progress"]))
        metrics.event_pushed(events.BATCH_PROGRESS)


def _restore(batch_id: UUID) -> event_store.BatchRestore | None:
    """What the database knows of the batch's aggregate, for the script when Redis holds none (the
    batch's first event, or a Redis that came back empty); None once the batch has ended, so no
    aggregate event follows its end even when Redis lost the mark its end left."""
    row = Batch.objects.filter(id=batch_id, finished__isnull=True).values_list("last_seq", "last_progress").first()
    if row is None:
        return None
    members = {}
    for job_id, status, progress in Job.objects.filter(batch_id=batch_id).values_list("id", "status", "progress"):
        ended = status in Job.TERMINAL
        state = Job.Status.QUEUED if status == Job.Status.SCHEDULED else status
        if ended or state != Job.Status.QUEUED or progress:
            members[str(job_id)] = f"{state}:{100 if ended else progress}"
    return event_store.BatchRestore(seq=row[0], progress=row[1], members=members)


def batch_percent(batch: Batch, members: list[Job]) -> int:
    """The batch's percent from its members' rows (an ended member counts 100), never below the last
    `batch.progress` sent: a member's row is written at most every JOB_PROGRESS_DB_INTERVAL_SECONDS,
    so the rows can lag the events, and a snapshot or a REST read must not step a bar back."""
    if not members:
        return 100 if batch.finished else 0
    mean = min(100, sum(100 if job.is_terminal else job.progress for job in members) // len(members))
    return max(mean, batch.last_progress)


def member_counts(batch_id: UUID | str) -> dict[str, int]:
    """How many members are in each status (from the database), scheduled counted as queued."""
    counts = dict.fromkeys(COUNTED, 0)
    for row in Job.objects.filter(batch_id=batch_id).values("status").annotate(n=Count("id")).order_by():
        counts["queued" if row["status"] == Job.Status.SCHEDULED else row["status"]] += row["n"]
    return counts


def end_status(counts: dict[str, int], *, cancel_requested: bool) -> str:
    """How a batch whose members have all ended ends: failed if any failed; cancelled if it (or, with
    none failed, a member) was cancelled and not every member is done; else done."""
    if counts["failed"]:
        return Batch.Status.FAILED
    if counts["cancelled"] or (cancel_requested and counts["done"] < sum(counts.values())):
        return Batch.Status.CANCELLED
    return Batch.Status.DONE


def finish_if_settled(*, batch_id: UUID | str) -> bool:
    """End the batch if none of its members is active; True if this call did (and sent its end)."""
    counts = member_counts(batch_id)
    if counts["queued"] or counts["running"]:
        return False
    batch = Batch.objects.filter(id=batch_id, finished__isnull=True).first()
    if batch is None:
        return False
    status = end_status(counts, cancel_requested=batch.cancel_requested)
    expected_seq = batch.last_seq + 1
    won = Batch.objects.filter(id=batch_id, finished__isnull=True).update(
        status=status, finished=timezone.now(), last_seq=Greatest(F("last_seq"), Value(expected_seq))) == 1
    if not won:
        return False
    batch.status = status
    sent = _push_end(batch, counts)
    if sent is not None and sent["seq"] > expected_seq:
        Batch.objects.filter(id=batch_id, last_seq__lt=sent["seq"]).update(last_seq=sent["seq"])
    logger.info("batch %s", status, extra={"batch": str(batch_id), "owner": batch.owner_id, "outcome": status})
    return True


def end_event(batch: Batch, counts: dict[str, int]) -> dict[str, Any]:
    event = {
        "type": END_EVENTS[batch.status], "batch": str(batch.id), "status": batch.status, "progress": 100,
        "message": f"{counts['done']} of {batch.total} done"
                   + (f", {counts['failed']} failed" if counts["failed"] else "")
                   + (f", {counts['cancelled']} cancelled" if counts["cancelled"] else ""),
        "total": batch.total, **counts, "ts": _now(), "download_url": download_url(batch.id),
    }
    check_event(event, with_seq=False)
    return event


def _push_end(batch: Batch, counts: dict[str, int]) -> dict[str, Any] | None:
    """The end event, tried like a job's (it must not be lost); None if Redis stayed down (the
    socket then reports the end from the row, as for a job)."""
    event = end_event(batch, counts)
    pusher = get_pusher()
    groups = batch_groups(batch.id, batch.owner_id)
    for attempt in range(1, TERMINAL_PUSH_ATTEMPTS + 1):
        try:
            one_trip = isinstance(pusher, RedisEventPusher) and pusher.one_trip
            sent = event_store.close_batch(batch.id, event, floor=batch.last_seq, message_type=events.LAYER_JOB_EVENT,
                                           channels=pusher.channels(groups) if one_trip else [])
            if sent is not None and not one_trip:
                pusher.publish(groups, sent)
            metrics.event_pushed(event["type"])
            return sent
        except redis.RedisError as exc:
            logger.warning("push %s for batch %s failed (attempt %d): %s", event["type"], batch.id, attempt, exc)
            if attempt < TERMINAL_PUSH_ATTEMPTS:
                time.sleep(min(0.2 * 2**attempt, 2))
    metrics.push_failed(event["type"])
    return None


def finish_settled_batches(limit: int = 500) -> list[UUID]:
    """The recovery sweep's part: end the batches whose members have all ended but whose end was
    never recorded (the worker that ended the last member died first)."""
    settled = (Batch.objects.filter(finished__isnull=True)
               .exclude(jobs__status__in=Job.ACTIVE).values_list("id", flat=True)[:limit])
    return [batch_id for batch_id in list(settled) if finish_if_settled(batch_id=batch_id)]
