"""One resync timer per watched feed (a job's or a batch's) in a server process, not one per socket.

While a feed has not ended, its sockets re-check the stream every JOB_SOCKET_RESYNC_SECONDS, so a
live event the layer lost, even the last one, still reaches them (docs/design.md, "Guarantees").
Each socket had its own timer task: 10,000 sockets on one job woke 2,000 times a second to find
nothing to do, and each kept a task and its frame in memory. Here one timer per feed reads the
stream's last event (and, if some socket is quiet, the row) once a round, looks at each socket's
feed state in a plain loop, and starts a resync only for the sockets that need one, each at its own
moment within the round, so a round that finds them all behind (Redis lost a message) does not
send every one of them to Redis at once.
"""
import asyncio
import logging
import random
import time
from typing import Any, Protocol

from django.conf import settings
from django.utils import timezone

from basic.core.repeated_log import RepeatedWarning

# The socket log lines keep the name they have always had, so operators' filters survive the move.
logger = logging.getLogger("basic.consumers")
# Every feed of the process fails its round at once while Redis or the database is down.
RESYNC_FAILED = RepeatedWarning(logger, "job socket resyncs failed (Redis or the database is down)")


class Watched(Protocol):
    """What a socket of a feed offers (basic/realtime/consumers/event_feed.py)."""

    feed: Any

    def group(self) -> str: ...

    async def read_last(self) -> Any: ...

    async def read_row_shared(self) -> Any: ...

    def start_resync(self, last: Any) -> None:
        """Catch up to `last` and settle an ended feed, under the socket's lock, in a task of its own."""


class FeedWatch:
    def __init__(self) -> None:
        self.members: dict[tuple[int, str], set[Watched]] = {}
        self.timers: dict[tuple[int, str], asyncio.Task] = {}

    def join(self, member: Watched) -> None:
        key = (id(asyncio.get_running_loop()), member.group())
        members = self.members.setdefault(key, set())
        members.add(member)
        if key not in self.timers:
            self.timers[key] = asyncio.get_running_loop().create_task(self._watch(key, members))

    def leave(self, member: Watched) -> None:
        key = (id(asyncio.get_running_loop()), member.group())
        members = self.members.get(key)
        if members is None:
            return
        members.discard(member)
        if not members:
            del self.members[key]
            timer = self.timers.pop(key, None)
            if timer is not None:
                timer.cancel()

    def watching(self) -> int:
        """Sockets being watched in all (for tests and metrics)."""
        return sum(len(members) for members in self.members.values())

    async def _watch(self, key: tuple[int, str], members: set[Watched]) -> None:
        interval = settings.JOB_SOCKET_RESYNC_SECONDS
        await asyncio.sleep(random.uniform(0, interval))  # feeds opened together don't all wake at once
        while members:
            await asyncio.sleep(interval)
            await self.round(members, interval)

    @staticmethod
    async def round(members: set[Watched], interval: float) -> None:
        """One check of every socket of a feed: start a resync for those behind the stream, and
        for those quiet long enough that the feed may have ended unseen (its row says so)."""
        active = [member for member in members if not member.feed.ended]
        if not active:  # every socket has seen the end: nothing to read
            return
        some = active[0]
        now, row, due = time.monotonic(), None, []
        grace = timezone.timedelta(seconds=settings.JOB_TERMINAL_EVENT_GRACE_SECONDS)
        try:
            last = await some.read_last()
            for member in active:
                feed = member.feed
                if feed.behind(last):
                    due.append(member)
                elif feed.quiet(now, interval):
                    if row is None:
                        row = await some.read_row_shared()
                    if feed.ended_unseen(row, timezone.now(), grace):
                        due.append(member)
        except Exception as error:  # Redis or the database is down: try again next round
            RESYNC_FAILED.warning(error)
            return
        loop = asyncio.get_running_loop()
        spread = interval / 2 if len(due) > 1 else 0
        for member in due:
            loop.call_later(random.uniform(0, spread), member.start_resync, last)


FEEDS = FeedWatch()
