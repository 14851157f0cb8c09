"""`/ws/jobs/{id}/`: one job's snapshot or missed events, then its live events; the socket side
of the rules in basic/realtime/job_feed.py (reads, sends, the lock and the resync timer)."""
import asyncio
import json
import logging
import random
import time
import uuid
from typing import Any

from django.conf import settings
from django.utils import timezone

from basic.core.rate_limit import TokenBucket
from basic.jobs import event_store, events, services
from basic.models import Job
from basic.realtime import close_codes, job_feed
from basic.realtime.auth import query_param
from basic.realtime.consumers.base import AuthenticatedConsumer, encoded_once
from basic.realtime.db_reads import InFlight, database_read
from basic.realtime.job_feed import JobFeed
from basic.realtime.shared_reads import SharedReads

# The socket log lines keep the name they have always had, so operators' filters survive the move.
logger = logging.getLogger("basic.consumers")

# One history read and one row read per job per round in this process, whatever the sockets.
RESYNC_READS = SharedReads(ttl=1.0)
# Sockets of one user opening on one job at the same moment share the ownership check in flight.
VISIBILITY = InFlight()
read_visible_job = database_read(lambda user, job_id: services.job_visible_to(user=user, job_id=job_id))


class JobEventsConsumer(AuthenticatedConsumer):
    """`/ws/jobs/{id}/`: a snapshot (or the missed events after `?after=SEQ`), then live events.

    Each event is sent once and in `seq` order: live events at or below the last sent seq are
    dropped, and a jump in seq (a message the live layer lost) is filled from the job's stream.
    While the job runs, the stream is also checked every few seconds, so even a lost *last*
    event (or one Redis never stored because it was down) reaches the client.
    """

    job_id: str = ""
    feed: JobFeed
    _resync: asyncio.Task | None = None

    async def start(self) -> None:
        # Any spelling of the id (upper case, no dashes, {braces}, urn:uuid:) names the same job;
        # groups and Redis keys use the canonical one, which is where events are published.
        try:
            job_id = str(uuid.UUID(self.scope["url_route"]["kwargs"]["job_id"]))
        except ValueError:
            job_id = None
        job = job_id and await VISIBILITY.get((self.user.pk, job_id), lambda: read_visible_job(self.user, job_id))
        if not job:
            await self.reject(close_codes.CLOSE_NOT_FOUND, "not_found", "No such job.")
            return
        raw_after = query_param(self.scope, "after")
        after = job_feed.parse_after(raw_after) if raw_after is not None else None
        if raw_after is not None and after is None:
            await self.reject(close_codes.CLOSE_BAD_REQUEST, "invalid_after", "`after` must be a whole number >= 0.")
            return
        if not await self.claim_socket_slot():
            return
        self.feed = JobFeed()
        self.job_id = job_id
        self.resume_limiter = TokenBucket(rate=settings.WS_RESUME_RATE_PER_SECOND, burst=settings.WS_RESUME_BURST)
        self.lock = asyncio.Lock()
        # Join the group before reading history, so nothing falls between the two.
        await self.join_group(events.job_group(self.job_id))  # left by the base, however it ends
        await self.accept()
        async with self.lock:
            if after is None:
                await self.send_snapshot()
            else:
                await self.replay(after)
        self._resync = self.start_task(self._resync_until_ended())  # cancelled by the base at the end

    async def _resync_until_ended(self) -> None:
        interval = settings.JOB_SOCKET_RESYNC_SECONDS
        await asyncio.sleep(random.uniform(0, interval))  # sockets of one job don't all wake at once
        while not self.feed.ended:
            await asyncio.sleep(interval)
            try:
                last = await RESYNC_READS.get(("last", self.job_id), lambda: event_store.last_event(self.job_id))
                async with self.lock:
                    if self.feed.behind(last):
                        await self.catch_up()  # this socket missed something: read it for itself
                    # Only a quiet job can have ended unseen; a busy one costs no database query.
                    if self.feed.quiet(time.monotonic(), interval):
                        await self.settle_if_finished()
            except Exception:  # Redis or the database is down: try again next round
                logger.warning("resync of job %s failed", self.job_id, exc_info=True)

    async def layer_reconnected(self, message: dict[str, Any]) -> None:
        """Events published while the layer was reconnecting are in the job's stream: send them."""
        if self.job_id and not self.feed.ended:
            async with self.lock:
                await self.catch_up()

    async def send_snapshot(self) -> None:
        last = await event_store.last_event(self.job_id)
        job = await database_read(Job.objects.select_related("owner").get)(id=self.job_id)
        self.feed.start_snapshot(last)
        await self.send_json(self.feed.snapshot(job))

    async def replay(self, after: int) -> None:
        missed = await event_store.read_events_after(self.job_id, after)
        last = await event_store.last_event(self.job_id) if job_feed.replay_needs_last(after, missed) else None
        if job_feed.history_lost(after, missed, last):
            await self.send_snapshot()  # history was trimmed or expired: the best we can do
            return
        self.feed.start_replay(after, missed, last)
        for event in missed:
            await self.send_event(event)
        await self.settle_if_finished()

    async def catch_up(self, upto: int | None = None) -> None:
        for event in await event_store.read_events_after(self.job_id, self.feed.last_seq, upto=upto):
            await self.send_event(event)

    async def settle_if_finished(self) -> None:
        if self.feed.ended:  # no database query for a socket that already told the end
            return
        job = await RESYNC_READS.get(("row", self.job_id), database_read(
            lambda: Job.objects.select_related("owner").get(id=self.job_id)))
        grace = timezone.timedelta(seconds=settings.JOB_TERMINAL_EVENT_GRACE_SECONDS)
        if self.feed.ended_unseen(job, timezone.now(), grace):
            await self.send_json(self.feed.snapshot(job))

    async def send_event(self, event: dict[str, Any], text: str | None = None) -> None:
        if self.feed.take(event):
            await self.send(text_data=text if text is not None else json.dumps(event))

    async def job_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        async with self.lock:
            if self.feed.gap_before(event):
                await self.catch_up(upto=event["seq"] - 1)
            await self.send_event(event, encoded_once(message, "event", lambda: event))

    async def handle_frame(self, content: dict[str, Any]) -> None:
        kind = content.get("type")
        if kind == "resume":
            if not self.resume_limiter.allow():
                await self.strike(settings.WS_RESUME_STRIKES, "Too many resume frames")
                return
            after = job_feed.parse_after(content.get("after"))
            if after is None:
                await self.send_error("invalid_after", "`after` must be a whole number >= 0.")
                return
            async with self.lock:
                self.feed.rewind(after)
                await self.replay(after)
        elif kind == "ping":
            await self.send_json({"type": "pong"})
        else:
            await self.send_error("unknown_type", "Known frame types: resume, ping.")
