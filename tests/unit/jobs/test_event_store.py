import threading
import uuid

import pytest

from basic.core.keys import seq_key
from basic.jobs import event_store


def test_seq_starts_at_one_and_increases_by_one(redis_client):
    job = uuid.uuid4()
    seqs = [event_store.append_event(job, {"type": "job.progress", "n": i})["seq"] for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    stored = event_store.read_events_sync(job)
    assert [e["seq"] for e in stored] == [1, 2, 3, 4, 5]
    assert [e["n"] for e in stored] == list(range(5))
    assert [e["seq"] for e in event_store.read_events_sync(job, after=3)] == [4, 5]


def test_concurrent_writers_get_distinct_gapless_seqs_in_stream_order(redis_client):
    job = uuid.uuid4()

    def write():
        for _ in range(50):
            event_store.append_event(job, {"type": "job.progress"})

    threads = [threading.Thread(target=write) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert [e["seq"] for e in event_store.read_events_sync(job)] == list(range(1, 401))


def test_lost_seq_counter_continues_from_the_stream(redis_client):
    job = uuid.uuid4()
    for _ in range(3):
        event_store.append_event(job, {"type": "job.progress"})
    redis_client.delete(seq_key(job))
    assert event_store.append_event(job, {"type": "job.done"})["seq"] == 4


def test_history_is_bounded_and_expires(redis_client, settings):
    settings.JOB_EVENTS_MAXLEN = 10
    settings.JOB_EVENTS_TTL_SECONDS = 60
    job = uuid.uuid4()
    for _ in range(500):
        event_store.append_event(job, {"type": "job.progress"})
    from basic.core.keys import stream_key

    assert redis_client.xlen(stream_key(job)) < 200  # MAXLEN ~ trims in whole nodes
    assert 0 < redis_client.ttl(stream_key(job)) <= 60


@pytest.mark.parametrize("text", ['he said "hi"', "naïve ✓", "}{", "\\"])
def test_event_text_survives_the_seq_splice(redis_client, text):
    job = uuid.uuid4()
    event_store.append_event(job, {"type": "job.progress", "message": text})
    assert event_store.read_events_sync(job)[0]["message"] == text
