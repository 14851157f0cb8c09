"""The shared socket side of a numbered event feed (a job's `/ws/jobs/{id}/`, a batch's
`/ws/batches/{id}/`): ownership (4404), `?after=SEQ` replay or a snapshot, live events deduped and
gap-filled by `seq`, `resume` frames, and the resync timer; the rules are basic/realtime/job_feed.py's.
A subclass says what it watches: how to find it, its group, its stream, its row and snapshot."""
import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone

from basic.core.rate_limit import TokenBucket
from basic.jobs import event_store, services
from basic.realtime import close_codes, job_feed
from basic.realtime.auth import query_param
from basic.realtime.consumers.authenticated import AuthenticatedConsumer
from basic.realtime.feed_watch import FEEDS, RESYNC_FAILED
from basic.realtime.frames import event_outlet_text, event_text
from basic.realtime.job_feed import JobFeed
from basic.realtime.shared_reads import NextRead, SharedReads

# The socket log lines keep the name they have always had, so operators' filters survive the move.
logger = logging.getLogger("basic.consumers")

# One history read and one row read per feed per round in this process, whatever the sockets.
RESYNC_READS = SharedReads(ttl=1.0)
# Sockets opening on one feed together share its snapshot: read after each joined, encoded once.
SNAPSHOTS = NextRead()
# Who owns a job or batch never changes, so sockets opening on one within a second share one read
# of its owner (`find`); a row deleted meanwhile is found missing by the snapshot read (a 4404).
OWNERS = SharedReads(ttl=1.0)


class OutletLock(asyncio.Lock):
    """The feed's lock, which also tells the socket's outlet when it is taken and given back:
    while a snapshot, a replay or a catch-up is under way, live events wait for it in the
    socket's handler instead of passing it on the outlet."""

    def __init__(self, changed: Callable[[], None]) -> None:
        super().__init__()
        self._changed = changed

    async def acquire(self) -> bool:
        taken = await super().acquire()
        self._changed()
        return taken

    def release(self) -> None:
        super().release()
        self._changed()


class EventFeedConsumer(AuthenticatedConsumer):
    """A snapshot (or the missed events after `?after=SEQ`), then live events.

    Each event is sent once and in `seq` order: live events at or below the last sent seq are
    dropped, and a jump in seq (a message the live layer lost) is filled from the stream. While the
    feed has not ended, the stream is also checked every few seconds, so even a lost *last* event
    (or one Redis never stored because it was down) reaches the client.
    """

    url_kwarg = ""  # the route's id parameter
    not_found = "No such job."
    subject_id: str = ""
    feed: JobFeed
    lock: "OutletLock | None" = None  # made by start(), with the feed
    _watched = False  # a member of its feed's resync round (FEEDS)

    # --- what a subclass says ---------------------------------------------------------------

    async def read_owner(self, subject_id: str) -> tuple[int | None] | None:
        """(owner id,) of the watched row, or None if there is none."""
        raise NotImplementedError

    async def find(self, subject_id: str) -> bool:
        """Whether the watched row exists and the user may see it (a 4404 either way)."""
        found = await OWNERS.get((type(self).__name__, subject_id), lambda: self.read_owner(subject_id))
        return found is not None and services.may_see_owned(self.user, found[0])

    def group(self) -> str:
        raise NotImplementedError

    def stream(self) -> Any:
        """What basic/jobs/event_store.py reads: a job id or an EventStream."""
        raise NotImplementedError

    def new_feed(self) -> JobFeed:
        return JobFeed()

    async def read_row(self) -> Any:
        """The row now (is_terminal, finished), for settling a feed whose end was never pushed."""
        raise NotImplementedError

    async def snapshot_of(self, feed: JobFeed) -> dict[str, Any]:
        """The snapshot frame at `feed.last_seq`, read now (setting `feed.ended`); the model's
        DoesNotExist if the row was deleted."""
        raise NotImplementedError

    # --- the shared socket ----------------------------------------------------------------

    async def start(self) -> None:
        # Any spelling of the id (upper case, no dashes, {braces}, urn:uuid:) names the same one;
        # groups and Redis keys use the canonical one, which is where events are published.
        try:
            subject_id = str(uuid.UUID(self.scope["url_route"]["kwargs"][self.url_kwarg]))
        except ValueError:
            subject_id = None
        if not subject_id or not await self.find(subject_id):
            await self.reject(close_codes.CLOSE_NOT_FOUND, "not_found", self.not_found)
            return
        raw_after = query_param(self.scope, "after")
        after = job_feed.parse_after(raw_after) if raw_after is not None else None
        if raw_after is not None and after is None:
            await self.reject(close_codes.CLOSE_BAD_REQUEST, "invalid_after", "`after` must be a whole number >= 0.")
            return
        if not await self.claim_socket_slot():
            return
        self.feed = self.new_feed()
        self.subject_id = subject_id
        self.resume_limiter = TokenBucket(rate=settings.WS_RESUME_RATE_PER_SECOND, burst=settings.WS_RESUME_BURST)
        self.lock = OutletLock(self.refresh_outlet)
        # Join the group before reading history, so nothing falls between the two, and hold the
        # lock from before the join: live events come straight from the layer (not through the
        # socket's queue), so one may arrive while the socket is accepted; it must wait for the
        # snapshot or replay to say where the feed starts, or it is gap-filled from seq 1 and
        # the replay then sends those events again.
        try:
            async with self.lock:
                await self.join_group(self.group())  # left by the base, however it ends
                await self.accept()
                if after is None:
                    await self.send_snapshot()
                else:
                    await self.replay(after)
        except ObjectDoesNotExist:  # deleted since `find` (whose answer is shared for a second)
            await self.reject(close_codes.CLOSE_NOT_FOUND, "not_found", self.not_found)
            return
        if not self._cleaning_up:  # it may have failed meanwhile (a group message): then never join
            FEEDS.join(self)  # resynced every JOB_SOCKET_RESYNC_SECONDS until it ends; left in leave_groups
            self._watched = True

    async def leave_groups(self) -> None:
        if self._watched:
            self._watched = False
            FEEDS.leave(self)
        await super().leave_groups()

    async def read_last(self) -> Any:
        """The stream's last event: one read per feed and round in this process."""
        return await RESYNC_READS.get(("last", self.group()), lambda: event_store.last_event(self.stream()))

    async def read_row_shared(self) -> Any:
        return await RESYNC_READS.get(("row", self.group()), self.read_row)

    def start_resync(self, last: Any) -> None:
        self.start_task(self._resync(last))

    async def _resync(self, last: Any) -> None:
        """What the feed's round found this socket needs (basic/realtime/feed_watch.py), checked
        again under the lock: catch up to the stream, or settle a feed that ended unseen."""
        try:
            async with self.lock:
                if self.feed.behind(last):
                    await self.catch_up()  # this socket missed something: read it for itself
                if self.feed.quiet(time.monotonic(), settings.JOB_SOCKET_RESYNC_SECONDS):
                    await self.settle_if_finished()
        except Exception as error:  # Redis or the database is down: the next round tries again
            RESYNC_FAILED.warning(error)

    async def layer_reconnected(self, message: dict[str, Any]) -> None:
        """Events published while the layer was reconnecting are in the stream: send them."""
        if self.subject_id and not self.feed.ended:
            async with self.lock:
                await self.catch_up()

    async def send_snapshot(self) -> None:
        """The feed's snapshot, as of a read that began after this socket joined the group (so it
        stands for every event published before the join): shared with the sockets of this feed
        asking at the same time (shared_reads.NextRead)."""
        last_seq, ended, text = await SNAPSHOTS.get(self.group(), self._read_snapshot)
        self.feed.last_seq, self.feed.ended = last_seq, ended
        await self.send_text(text)

    async def _read_snapshot(self) -> tuple[int, bool, str]:
        feed = self.new_feed()
        feed.start_snapshot(await event_store.last_event(self.stream()))
        frame = await self.snapshot_of(feed)
        return feed.last_seq, feed.ended, json.dumps(frame)

    async def replay(self, after: int) -> None:
        missed = await event_store.read_events_after(self.stream(), after)
        last = await event_store.last_event(self.stream()) if job_feed.replay_needs_last(after, missed) else None
        if job_feed.history_lost(after, missed, last):
            # An event appended between the two reads (nothing missed, then a `last` past `after`)
            # looks like lost history: read again, now after `last`, before giving up. The chaos
            # soak found sockets resuming beside a running job sent a snapshot for this.
            missed = await event_store.read_events_after(self.stream(), after)
            if job_feed.history_lost(after, missed, last):
                await self.send_snapshot()  # history was trimmed or expired: the best we can do
                return
        self.feed.start_replay(after, missed, last)
        for event in missed:
            await self.send_event(event)
        await self.settle_if_finished()

    async def catch_up(self, upto: int | None = None) -> None:
        for event in await event_store.read_events_after(self.stream(), self.feed.last_seq, upto=upto):
            await self.send_event(event)

    async def settle_if_finished(self) -> None:
        if self.feed.ended:  # no database query for a socket that already told the end
            return
        row = await self.read_row_shared()
        grace = timezone.timedelta(seconds=settings.JOB_TERMINAL_EVENT_GRACE_SECONDS)
        if self.feed.ended_unseen(row, timezone.now(), grace):
            await self.send_json(await self.snapshot_of(self.feed))

    async def send_event(self, event: dict[str, Any], text: str | None = None) -> None:
        if self.feed.take(event):
            await self.send_text(text if text is not None else json.dumps(event))

    # A live event in order, while nothing holds the lock, goes out through the socket's outlet
    # (base.py): `JobFeed.take_next` keeps the same once-and-in-order rule as `send_event`.
    outlet_text = staticmethod(event_outlet_text)

    def outlet_feed(self) -> JobFeed | None:
        return getattr(self, "feed", None)

    def outlet_allowed(self) -> bool:
        """Not before `start()` has made the feed and its lock (a socket that signs in with a
        frame is accepted before), nor while the lock is held."""
        return self.lock is not None and not self.lock.locked()

    async def job_event(self, message: dict[str, Any]) -> None:
        event = message["event"]
        if not self.lock.locked() and not self.feed.gap_before(event):
            # The common case when the outlet could not take it: in order, nothing under way.
            # What taking the free lock would do (it waits for nothing), without its three calls.
            await self.send_event(event, event_text(message))
            return
        async with self.lock:
            if self.feed.gap_before(event):
                await self.catch_up(upto=event["seq"] - 1)
            await self.send_event(event, event_text(message))

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
