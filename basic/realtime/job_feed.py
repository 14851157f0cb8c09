"""The job socket's rules, without the socket: where a resume starts, which events to send (each
once, in seq order), when a gap needs a catch-up read, and when a job has ended unseen.

`JobEventsConsumer` (basic/realtime/consumers/jobs.py) does the reads and the sends; its `JobFeed`
answers its questions. The rules rest on the job's stream (basic/jobs/event_store.py) numbering
events 1, 2, 3… without holes: a hole seen by a socket is a message the live layer lost.
"""
import time
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from basic.jobs import events, services
from basic.jobs.event_schemas import JobSnapshot, check_event
from basic.models import Batch, Job

MAX_SEQ = 10**15  # far past any real job, well inside a Redis stream id


def parse_after(value: object) -> int | None:
    """A resume point: a whole number 0..MAX_SEQ (or its decimal string); None if it is not one."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 16:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value if 0 <= value <= MAX_SEQ else None


def job_snapshot(job: Job, seq: int) -> JobSnapshot:
    """The job's row as the frame a job socket is sent first (or instead of a replay that history
    can no longer serve); `seq` is the last event it stands for."""
    snapshot: JobSnapshot = {
        "type": events.JOB_SNAPSHOT,
        "job": str(job.id),
        "seq": seq,
        "kind": job.kind,
        "owner": job.owner.get_username() if job.owner_id else None,
        "status": job.status,
        "progress": job.progress,
        "message": job.message,
        "error": job.error,
        "params": job.params,
        "result": job.result,
        "created": job.created.isoformat(),
        "started": job.started.isoformat() if job.started else None,
        "finished": job.finished.isoformat() if job.finished else None,
        "ts": timezone.now().isoformat(timespec="milliseconds"),
    }
    if job.status == Job.Status.DONE:
        snapshot["result_url"] = services.download_url(job)
    check_event(snapshot)  # its schema (basic/jobs/event_schemas.py); once per socket, not per event
    return snapshot


def replay_needs_last(after: int, missed: list[dict[str, Any]]) -> bool:
    """Whether judging a replay from `after` needs the stream's last event: when the history may
    have been cut (it does not start right after `after`) or there is nothing to replay."""
    return not missed or (after > 0 and missed[0]["seq"] != after + 1)


def history_lost(after: int, missed: list[dict[str, Any]], last: dict[str, Any] | None) -> bool:
    """The events right after `after` were trimmed or expired while later ones exist (or the
    whole stream is gone): a replay would skip some, so a snapshot is sent instead. `last` is the
    stream's last event, read whenever `replay_needs_last` said so."""
    if after == 0 or (missed and missed[0]["seq"] == after + 1):
        return False
    return last is None or last["seq"] > after


class JobFeed:
    """What one socket has been sent of one job (or batch: `BatchFeed`): the last seq, when, and
    whether the end. `terminal` names the event types that end the feed."""

    __slots__ = ("last_seq", "last_event_at", "ended", "terminal")

    def __init__(self, terminal: frozenset[str] = events.TERMINAL_EVENTS) -> None:
        self.terminal = terminal
        self.last_seq = 0  # the highest seq sent, or stood for by a snapshot
        self.last_event_at = 0.0  # time.monotonic() of the last event sent
        self.ended = False  # the client has been told the job ended: nothing more will come

    def start_snapshot(self, last: dict[str, Any] | None) -> None:
        """A snapshot stands for every event the stream holds, up to `last`."""
        self.last_seq = last["seq"] if last else 0

    def snapshot(self, job: Job) -> JobSnapshot:
        """The snapshot frame of `job` at the last seq; a terminal one ends the feed."""
        self.ended = job.is_terminal
        return job_snapshot(job, self.last_seq)

    def rewind(self, after: int) -> None:
        """A resume frame: what came after `after` counts as not sent."""
        self.last_seq = min(self.last_seq, after)

    def start_replay(self, after: int, missed: list[dict[str, Any]], last: dict[str, Any] | None) -> None:
        """Replay the `missed` events after `after` (the history is whole: not `history_lost`).
        With nothing missed, the feed has ended if the stream's `last` event, at or before
        `after`, is a terminal one."""
        self.last_seq = after
        if not missed:
            self.ended = bool(last and last["seq"] <= after and last["type"] in self.terminal)

    def gap_before(self, event: dict[str, Any]) -> bool:
        """`event` skips seqs this socket was not sent: read those (up to its seq - 1) first."""
        return event["seq"] > self.last_seq + 1

    def take(self, event: dict[str, Any]) -> bool:
        """Whether to send `event`: only past the last seq sent, so each goes once and in order."""
        if event["seq"] <= self.last_seq:
            return False
        self._sent(event, time.monotonic())
        return True

    def take_next(self, event: dict[str, Any], now: float) -> bool | None:
        """`take` for a live event on the socket's outlet (basic/realtime/wire.py), at monotonic
        `now`: True to send it (the next seq), False to drop it (sent already), None when seqs
        are missing before it (`gap_before`: the socket's handler reads them first)."""
        seq = event["seq"]
        if seq <= self.last_seq:
            return False
        if seq != self.last_seq + 1:
            return None
        self._sent(event, now)
        return True

    def _sent(self, event: dict[str, Any], now: float) -> None:
        self.last_seq = event["seq"]
        self.last_event_at = now
        self.ended = event["type"] in self.terminal

    def behind(self, last: dict[str, Any] | None) -> bool:
        """The stream holds an event (its `last`) this socket never got: catch up."""
        return last is not None and last["seq"] > self.last_seq

    def quiet(self, now: float, interval: float) -> bool:
        """No event for `interval` seconds (monotonic `now`): only then may the job have ended
        unseen, so only then is its row read."""
        return now - self.last_event_at > interval

    def ended_unseen(self, job: "Job | Batch", now: datetime, grace: timedelta) -> bool:
        """The job ended more than `grace` ago and the socket was never sent its terminal event
        (Redis was down for all of the pusher's retries): a terminal snapshot stands in for it."""
        return (not self.ended and job.is_terminal and job.finished is not None
                and now - job.finished > grace)
