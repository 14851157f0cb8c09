"""One resync round per feed (basic/realtime/feed_watch.py): one read of the stream's last event
(and of the row, only if some socket is quiet), then a resync started only for the sockets that need
one. Fakes stand in for the sockets: this is the round's own logic."""
import asyncio
import datetime as dt
import time

import pytest
from django.utils import timezone

from basic.realtime.feed_watch import FeedWatch
from basic.realtime.job_feed import JobFeed


class Row:
    def __init__(self, finished_ago: float | None) -> None:
        self.is_terminal = finished_ago is not None
        self.finished = timezone.now() - dt.timedelta(seconds=finished_ago) if finished_ago is not None else None


class Socket:
    def __init__(self, group: str, last_seq: int, *, quiet_for: float = 0.0, ended: bool = False,
                 reads: dict | None = None, row: Row | None = None, fail: bool = False) -> None:
        self.feed = JobFeed()
        self.feed.last_seq, self.feed.ended = last_seq, ended
        self.feed.last_event_at = time.monotonic() - quiet_for
        self._group, self.reads, self.row, self.fail = group, reads if reads is not None else {}, row, fail
        self.resynced: list = []

    def group(self) -> str:
        return self._group

    async def read_last(self):
        self.reads["last"] = self.reads.get("last", 0) + 1
        if self.fail:
            raise ConnectionError("Redis is down")
        return {"seq": 5, "type": "job.progress"}

    async def read_row_shared(self):
        self.reads["row"] = self.reads.get("row", 0) + 1
        return self.row

    def start_resync(self, last) -> None:
        self.resynced.append(last)


async def test_only_the_sockets_behind_or_ended_unseen_are_resynced_after_one_read(settings):
    settings.JOB_TERMINAL_EVENT_GRACE_SECONDS = 3
    reads = {}
    row = Row(finished_ago=60)  # ended a minute ago; its terminal event never came
    behind = Socket("g", 3, reads=reads, row=row)
    current = Socket("g", 5, reads=reads, row=row)
    quiet = Socket("g", 5, quiet_for=30, reads=reads, row=row)
    ended = Socket("g", 1, ended=True, reads=reads, row=row)
    await FeedWatch.round({behind, current, quiet, ended}, interval=0.02)
    await asyncio.sleep(0.05)  # the resyncs start within half a round
    assert behind.resynced == [{"seq": 5, "type": "job.progress"}] and quiet.resynced
    assert not current.resynced and not ended.resynced
    assert reads == {"last": 1, "row": 1}  # once per feed and round, not per socket


async def test_a_busy_feed_costs_no_row_read(settings):
    reads = {}
    sockets = {Socket("g", 5, reads=reads) for _ in range(100)}
    await FeedWatch.round(sockets, interval=5)
    assert reads == {"last": 1}
    assert not any(s.resynced for s in sockets)


async def test_a_failed_read_starts_nothing_and_tries_again_next_round(settings):
    sockets = {Socket("g", 3, fail=True)}
    await FeedWatch.round(sockets, interval=0.02)
    await asyncio.sleep(0.05)
    assert not next(iter(sockets)).resynced


async def test_one_timer_per_feed_gone_with_its_last_socket(settings):
    settings.JOB_SOCKET_RESYNC_SECONDS = 60
    watch = FeedWatch()
    a, b, other = Socket("g", 0), Socket("g", 0), Socket("h", 0)
    for socket in (a, b, other):
        watch.join(socket)
    assert len(watch.timers) == 2 and watch.watching() == 3
    timer = next(t for k, t in watch.timers.items() if k[1] == "g")
    watch.leave(a)
    assert not timer.cancelled()
    watch.leave(b)
    await asyncio.sleep(0)
    assert timer.cancelled() and watch.watching() == 1
    watch.leave(other)
    assert not watch.timers and not watch.members


@pytest.mark.parametrize("interval", [0.05])
async def test_the_timer_runs_rounds_until_the_feed_has_no_socket(settings, interval):
    settings.JOB_SOCKET_RESYNC_SECONDS = interval
    watch = FeedWatch()
    socket = Socket("g", 3)
    watch.join(socket)
    await asyncio.sleep(interval * 4)
    assert socket.resynced  # it was behind: some round started its resync
    watch.leave(socket)
    assert not watch.timers


async def test_a_feed_whose_sockets_all_saw_the_end_costs_no_read(settings):
    reads = {}
    await FeedWatch.round({Socket("g", 5, ended=True, reads=reads) for _ in range(3)}, interval=5)
    assert reads == {}
