"""The job socket's rules (basic/realtime/job_feed.py) without a socket, Redis or a database:
resume points, each event once and in order, gap and catch-up, when history is lost, when a job
has ended unseen, and the snapshot frame."""
from datetime import timedelta

import pytest
from django.utils import timezone

from basic.jobs.event_schemas import EventShapeError, check_event
from basic.models import Job
from basic.realtime import job_feed
from basic.realtime.job_feed import MAX_SEQ, JobFeed


def event(seq: int, type_: str = "job.progress") -> dict:
    return {"type": type_, "job": "j", "seq": seq, "kind": "k", "status": "running", "progress": seq,
            "message": "", "ts": "t"}


@pytest.mark.parametrize("value, expected", [
    (0, 0), (7, 7), ("7", 7), ("0", 0), (MAX_SEQ, MAX_SEQ), (str(MAX_SEQ), MAX_SEQ),
    (-1, None), (MAX_SEQ + 1, None), ("-1", None), (" 7", None), ("7.0", None), (7.0, None),
    (True, None), (False, None), (None, None), ("", None), ("١٢", None),  # Arabic-Indic digits
    ("1" * 17, None), ([7], None), ({"after": 7}, None),
])
def test_a_resume_point_is_a_whole_number_from_0_to_max_seq(value, expected):
    assert job_feed.parse_after(value) == expected


def test_each_event_is_taken_once_and_in_seq_order():
    feed = JobFeed()
    taken = [seq for seq in (1, 2, 2, 1, 3, 5, 4, 5, 6) if feed.take(event(seq))]
    assert taken == [1, 2, 3, 5, 6]
    assert feed.last_seq == 6


def test_taking_an_event_notes_when_and_whether_it_ended_the_job():
    feed = JobFeed()
    assert feed.take(event(1, "job.started")) and not feed.ended
    assert feed.last_event_at > 0
    assert feed.take(event(2, "job.failed")) and feed.ended
    assert not feed.take(event(2, "job.progress")) and feed.ended  # a duplicate changes nothing


@pytest.mark.parametrize("end", ["job.done", "job.failed", "job.cancelled"])
def test_every_terminal_event_ends_the_feed(end):
    feed = JobFeed()
    feed.take(event(1, end))
    assert feed.ended


def test_a_gap_is_a_seq_past_the_next_one():
    feed = JobFeed()
    feed.take(event(3))
    assert not feed.gap_before(event(4))
    assert not feed.gap_before(event(3)) and not feed.gap_before(event(2))  # duplicates: dropped, not read
    assert feed.gap_before(event(5))  # 4 was lost by the live layer: read it from the stream first


def test_a_resume_frame_rewinds_but_never_forwards():
    feed = JobFeed()
    feed.take(event(9))
    feed.rewind(4)
    assert feed.last_seq == 4
    feed.rewind(7)
    assert feed.last_seq == 4


def test_the_last_event_is_needed_only_when_the_replay_may_be_cut_or_is_empty():
    assert not job_feed.replay_needs_last(5, [event(6), event(7)])  # starts right after: whole
    assert not job_feed.replay_needs_last(0, [event(1)])
    assert job_feed.replay_needs_last(5, [event(8)])  # 6 and 7 were trimmed?
    assert job_feed.replay_needs_last(5, [])
    assert job_feed.replay_needs_last(0, [])
    assert job_feed.replay_needs_last(0, [event(4)]) is False  # from the start, any first seq is fine


@pytest.mark.parametrize("after, missed, last, lost", [
    (5, [6, 7], None, False),  # whole: last not even read
    (0, [], None, False),  # a job with no events yet: nothing to lose
    (0, [3, 4], None, False),  # from the start: whatever the stream still holds
    (5, [8, 9], 9, True),  # 6 and 7 trimmed away: a snapshot instead
    (5, [], 9, True),  # the stream holds later events the read did not return
    (5, [], None, True),  # the whole stream expired
    (5, [], 5, False),  # caught up: nothing was missed
    (5, [], 3, False),  # a client ahead of a stream that restarted lower: nothing to send
])
def test_history_is_lost_when_events_right_after_the_resume_point_are_gone(after, missed, last, lost):
    missed_events = [event(seq) for seq in missed]
    last_event = event(last) if last is not None else None
    assert job_feed.history_lost(after, missed_events, last_event) is lost


def test_a_replay_starts_after_the_resume_point():
    feed = JobFeed()
    feed.take(event(2))
    feed.start_replay(7, [event(8), event(9)], None)
    assert feed.last_seq == 7
    assert [seq for seq in (8, 9) if feed.take(event(seq))] == [8, 9]


@pytest.mark.parametrize("last, ended", [
    (event(5, "job.done"), True),  # the client already had the end
    (event(4, "job.cancelled"), True),
    (event(5, "job.progress"), False),  # still running
    (None, False),
])
def test_an_empty_replay_has_ended_if_the_last_event_up_to_the_resume_point_was_terminal(last, ended):
    feed = JobFeed()
    feed.start_replay(5, [], last)
    assert feed.ended is ended


def test_a_replay_with_events_leaves_the_end_to_the_events_themselves():
    feed = JobFeed()
    feed.ended = True
    feed.start_replay(5, [event(6)], event(6, "job.done"))
    assert feed.ended  # untouched: taking event 6 decides
    feed.take(event(6))
    assert not feed.ended


def test_the_resync_catches_up_only_when_the_stream_is_ahead():
    feed = JobFeed()
    feed.take(event(4))
    assert not feed.behind(None)
    assert not feed.behind(event(4)) and not feed.behind(event(3))
    assert feed.behind(event(5))


def test_only_a_quiet_feed_looks_for_an_unseen_end():
    feed = JobFeed()
    feed.take(event(1))
    assert not feed.quiet(feed.last_event_at + 4.9, 5)
    assert feed.quiet(feed.last_event_at + 5.1, 5)


def job(status: str, finished_ago: float | None) -> Job:
    now = timezone.now()
    return Job(kind="test_steps", status=status, progress=100, created=now - timedelta(minutes=5),
               finished=now - timedelta(seconds=finished_ago) if finished_ago is not None else None)


@pytest.mark.parametrize("status, finished_ago, already_ended, unseen", [
    ("done", 60, False, True),
    ("failed", 60, False, True),
    ("cancelled", 60, False, True),
    ("done", 5, False, False),  # within the grace: its terminal event may still be on its way
    ("done", 60, True, False),  # the client was told already
    ("running", None, False, False),
    ("done", None, False, False),  # no finish time: not judged
])
def test_a_job_ended_unseen_once_it_finished_past_the_grace(status, finished_ago, already_ended, unseen):
    feed = JobFeed()
    feed.ended = already_ended
    assert feed.ended_unseen(job(status, finished_ago), timezone.now(), timedelta(seconds=30)) is unseen


def test_a_snapshot_stands_for_the_streams_last_event_and_a_terminal_one_ends_the_feed():
    feed = JobFeed()
    feed.start_snapshot(event(12))
    frame = feed.snapshot(job("running", None))
    assert frame["seq"] == 12 and frame["type"] == "job.snapshot" and not feed.ended
    assert "result_url" not in frame
    assert not feed.take(event(12)) and feed.take(event(13))
    feed.start_snapshot(None)
    done = feed.snapshot(job("done", 1))
    assert done["seq"] == 0 and feed.ended
    assert done["result_url"].endswith(f"/{done['job']}/download/")
    check_event(done)


def test_a_snapshot_that_does_not_match_its_schema_is_never_sent():
    """job_snapshot checks what it built (basic/jobs/event_schemas.py): a field that drifts raises."""
    running = job("running", None)
    running.params = ["not", "a", "dict"]
    with pytest.raises(EventShapeError):
        JobFeed().snapshot(running)
