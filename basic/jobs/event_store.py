"""Job and batch event history: one bounded Redis Stream per job (and per batch), with its own
sequence number.

The channel layer is for live fan-out only and may drop messages (docs/design.md trap 2); the stream
is what snapshots, replay after reconnect and gap repair read. Stream entry ids are `0-<seq>`, so
"everything after seq N" is a plain XRANGE.
"""
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

from django.conf import settings

from basic.core.keys import (
    batch_aggregate_key,
    batch_members_key,
    batch_seq_key,
    batch_stream_key,
    seq_key,
    stream_key,
)
from basic.core.redis_clients import async_redis, run_script, sync_redis


@dataclass(frozen=True)
class EventStream:
    """One numbered history: a job's, or a batch's (its aggregate events). Every reader and writer
    below takes one, or a job id for the job's."""

    seq_key: str
    stream_key: str


@dataclass(frozen=True)
class BatchRestore:
    """What the database knows of a batch's aggregate, for a Redis that lost it: the seq and percent
    of its last event, and its members' "status:percent" (job id -> value) that are not queued at 0."""

    seq: int
    progress: int
    members: dict[str, str] = field(default_factory=dict)


def job_stream(job_id: UUID | str) -> EventStream:
    return EventStream(seq_key(job_id), stream_key(job_id))


def batch_stream(batch_id: UUID | str) -> EventStream:
    return EventStream(batch_seq_key(batch_id), batch_stream_key(batch_id))


def _stream(subject: "UUID | str | EventStream") -> EventStream:
    return subject if isinstance(subject, EventStream) else job_stream(subject)


# Lua shared by the scripts below. `next_seq` assigns the next seq, so the stream is always in seq
# order even when two processes (a worker and a cancelling view) write to the same history; `floor`
# is the last seq the database knows of: a Redis that came back empty restarts above it, never at 1
# (docs/design.md trap 7). `publish` sends the event to each channel in ARGV[first..] as the pub/sub
# channel layer's message {"type": message_type, "event": …}, msgpack-encoded by Redis: store and
# fan-out in one trip.
_FUNCTIONS = """
local function next_seq(seq_key, stream_key, floor)
  local seq
  if redis.call('EXISTS', seq_key) == 1 then
    seq = redis.call('INCR', seq_key)
  else
    local last = redis.call('XREVRANGE', stream_key, '+', '-', 'COUNT', 1)
    seq = 1
    if #last > 0 then
      seq = tonumber(string.match(last[1][1], '-(%d+)$')) + 1
    end
  end
  if seq <= floor then
    seq = floor + 1
  end
  redis.call('SET', seq_key, seq)
  return seq
end
local function store(seq_key, stream_key, seq, data, maxlen, ttl)
  redis.call('XADD', stream_key, 'MAXLEN', '~', maxlen, '0-' .. seq, 'e', data)
  redis.call('EXPIRE', seq_key, ttl)
  redis.call('EXPIRE', stream_key, ttl)
end
local function publish(message_type, data, first)
  local payload = cmsgpack.pack({type = message_type, event = cjson.decode(data)})
  for i = first, #ARGV do
    redis.call('PUBLISH', ARGV[i], payload)
  end
end
"""
# Appends an event given as JSON cut where `"seq": N` goes (ARGV[1], ARGV[2]).
_APPEND = _FUNCTIONS + """
local seq = next_seq(KEYS[1], KEYS[2], tonumber(ARGV[5]))
local data = ARGV[1] .. seq .. ARGV[2]
store(KEYS[1], KEYS[2], seq, data, ARGV[3], ARGV[4])
"""
_APPEND_SCRIPT = _APPEND + "return seq"
# The same, then published to each channel in ARGV[7..] as message type ARGV[6].
_APPEND_AND_PUBLISH_SCRIPT = _APPEND + "publish(ARGV[6], data, 7)\nreturn seq"

# A batch's aggregate (basic/jobs/batches.py), computed where its seq is assigned, so concurrent
# members on several workers give gapless seqs in aggregate order. KEYS: seq, stream, members
# (job id -> "status:percent"), aggregate ("last" sent, "closed" once its end went out).
# ARGV: member, its status, its percent, total members, the event's constant fields as JSON,
# maxlen, ttl, floor, message type, restore, channels… A member's percent never goes back (a retry
# restarts at 0: the bar keeps its high-water mark) and an ended member stays ended, so the aggregate
# never goes back either. Returns the event's JSON, or false if nothing changed or the batch has ended.
# Without "last" (a new batch, or a Redis that came back empty: trap 7) and with restore '' (the
# caller has not read the database yet), returns 'restore'; called again with restore as JSON
# {"progress", "members": {job id: "status:percent"}} from the database, it recounts from those
# members and never sends a percent below `progress` nor a seq at or below `floor`.
_AGGREGATE_SCRIPT = _FUNCTIONS + """
if redis.call('HEXISTS', KEYS[4], 'closed') == 1 then
  return false
end
local last = redis.call('HGET', KEYS[4], 'last')
local least = 0
if last then
  least = tonumber(string.match(last, '^(%d+):'))
elseif ARGV[10] == '' then
  return 'restore'
else
  local restored = cjson.decode(ARGV[10])
  least = tonumber(restored.progress)
  for id, value in pairs(restored.members) do
    redis.call('HSETNX', KEYS[3], id, value)
  end
end
local ended = {done = true, failed = true, cancelled = true}
local member, state, pct, total = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local before = redis.call('HGET', KEYS[3], member)
if before then
  local was, had = string.match(before, '^(%a+):(%d+)$')
  if ended[was] then
    state = was
  end
  if tonumber(had) > pct then
    pct = tonumber(had)
  end
end
if ended[state] then
  pct = 100
end
if state == 'scheduled' then
  state = 'queued'
end
redis.call('HSET', KEYS[3], member, state .. ':' .. pct)
local counts = {queued = 0, running = 0, done = 0, failed = 0, cancelled = 0}
local sum, seen = 0, 0
for _, value in ipairs(redis.call('HVALS', KEYS[3])) do
  local s, p = string.match(value, '^(%a+):(%d+)$')
  counts[s] = counts[s] + 1
  sum = sum + tonumber(p)
  seen = seen + 1
end
counts.queued = counts.queued + math.max(0, total - seen)
local progress = math.max(least, math.min(100, math.floor(sum / math.max(total, 1))))
local finished = counts.done + counts.failed + counts.cancelled
local signature = table.concat({progress, counts.queued, counts.running, counts.done, counts.failed,
                                counts.cancelled}, ':')
redis.call('EXPIRE', KEYS[3], ARGV[7])
redis.call('EXPIRE', KEYS[4], ARGV[7])
if redis.call('HGET', KEYS[4], 'last') == signature then
  return false
end
redis.call('HSET', KEYS[4], 'last', signature)
local event = cjson.decode(ARGV[5])
for name, count in pairs(counts) do
  event[name] = count
end
event.total = total
event.progress = progress
if counts.running + finished > 0 then
  event.status = 'running'
end
event.message = finished .. ' of ' .. total .. ' finished'
local seq = next_seq(KEYS[1], KEYS[2], tonumber(ARGV[8]))
event.seq = seq
local data = cjson.encode(event)
store(KEYS[1], KEYS[2], seq, data, ARGV[6], ARGV[7])
publish(ARGV[9], data, 11)
return data
"""
# A batch's one end: appended (and published, ARGV[7..]) like `_APPEND_AND_PUBLISH_SCRIPT`, and the
# aggregate closed in the same step, so no aggregate event can follow it. Sent before (a retry
# after a lost reply): returns 0 and appends nothing.
_CLOSE_SCRIPT = _FUNCTIONS + """
if redis.call('HSETNX', KEYS[4], 'closed', 1) == 0 then
  return 0
end
redis.call('EXPIRE', KEYS[4], ARGV[4])
local seq = next_seq(KEYS[1], KEYS[2], tonumber(ARGV[5]))
local data = ARGV[1] .. seq .. ARGV[2]
store(KEYS[1], KEYS[2], seq, data, ARGV[3], ARGV[4])
publish(ARGV[6], data, 7)
return seq
"""
# What the channel layer must be able to read for the one-trip path to be used.
_PROBE_SCRIPT = "return cmsgpack.pack({type = ARGV[1], event = cjson.decode(ARGV[2])})"

def _split_for_seq(event: dict[str, Any]) -> tuple[str, str]:
    """The event's JSON, cut where the Lua script splices in `"seq": N`."""
    body = json.dumps(event, separators=(",", ":"), default=str)
    return body[:-1] + ',"seq":', "}"


def _append(source: str, subject: "UUID | str | EventStream", event: dict[str, Any], floor: int,
            *extra: str) -> dict[str, Any]:
    head, tail = _split_for_seq(event)
    stream = _stream(subject)
    seq = run_script(
        source,
        [stream.seq_key, stream.stream_key],
        [head, tail, settings.JOB_EVENTS_MAXLEN, settings.JOB_EVENTS_TTL_SECONDS, floor, *extra],
    )
    return {**event, "seq": int(seq)}


def append_event(job_id: "UUID | str | EventStream", event: dict[str, Any], floor: int = 0) -> dict[str, Any]:
    """Store the event in the job's stream and return it with its new `seq` (above `floor`)."""
    return _append(_APPEND_SCRIPT, job_id, event, floor)


def append_and_publish(
    job_id: "UUID | str | EventStream", event: dict[str, Any], message_type: str, channels: list[str], floor: int = 0
) -> dict[str, Any]:
    """`append_event`, plus publishing it on `channels` inside the same atomic script."""
    return _append(_APPEND_AND_PUBLISH_SCRIPT, job_id, event, floor, message_type, *channels)


RESTORE = b"restore"  # the aggregate script's answer when its state is missing (new, expired or lost)


def aggregate_batch(batch_id: UUID | str, *, member: UUID | str, status: str, progress: int, total: int,
                    fields: dict[str, Any], message_type: str, channels: list[str],
                    restore: Callable[[], BatchRestore | None] | None = None) -> dict[str, Any] | None:
    """Record one member's status and percent in its batch's aggregate; if the aggregate changed,
    append its event (`fields` plus the counts, percent, status, message and seq) to the batch's
    stream and publish it on `channels`. Returns the event, or None if nothing changed or the
    batch's end was sent.

    `restore` is asked, only when Redis holds no aggregate for the batch (its first event, or a
    Redis that came back empty), for what the database knows (None: the batch has ended, send
    nothing); the aggregate restarts from it, never below its percent nor at or below its seq.
    Without `restore`, a missing aggregate starts from nothing."""
    stream = batch_stream(batch_id)
    keys = [stream.seq_key, stream.stream_key, batch_members_key(batch_id), batch_aggregate_key(batch_id)]
    args = [str(member), status, progress, total, json.dumps(fields, separators=(",", ":")),
            settings.JOB_EVENTS_MAXLEN, settings.JOB_EVENTS_TTL_SECONDS]
    state = "" if restore is not None else '{"progress":0,"members":{}}'
    floor = 0
    for _ in range(2):  # a second time only with the database's state
        data = run_script(_AGGREGATE_SCRIPT, keys, [*args, floor, message_type, state, *channels])
        if data != RESTORE:
            return json.loads(data) if data else None
        restored = restore() if restore is not None else None
        if restored is None:
            return None
        floor = restored.seq
        state = json.dumps({"progress": restored.progress, "members": restored.members}, separators=(",", ":"))
    return None


def close_batch(batch_id: UUID | str, event: dict[str, Any], *, floor: int, message_type: str,
                channels: list[str]) -> dict[str, Any] | None:
    """Append (and publish) a batch's terminal event and close its aggregate; None if it was sent
    before (a retry whose first try's reply was lost)."""
    stream = batch_stream(batch_id)
    head, tail = _split_for_seq(event)
    seq = run_script(
        _CLOSE_SCRIPT,
        [stream.seq_key, stream.stream_key, batch_members_key(batch_id), batch_aggregate_key(batch_id)],
        [head, tail, settings.JOB_EVENTS_MAXLEN, settings.JOB_EVENTS_TTL_SECONDS, floor, message_type, *channels],
    )
    return {**event, "seq": int(seq)} if seq else None


def redis_packed(message_type: str, event: dict[str, Any]) -> bytes:
    """The bytes `append_and_publish` would publish for this event (to check a reader with)."""
    return run_script(_PROBE_SCRIPT, [], [message_type, json.dumps(event, separators=(",", ":"))])


def _decode(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    return [json.loads(fields[b"e"]) for _id, fields in entries]


async def read_events_after(job_id: "UUID | str | EventStream", after: int,
                            upto: int | None = None) -> list[dict[str, Any]]:
    """Every stored event with `after < seq <= upto`, in order."""
    end = f"0-{upto}" if upto is not None else "+"
    entries = await async_redis().xrange(_stream(job_id).stream_key, f"0-{after + 1}", end)
    return _decode(entries)


async def last_event(job_id: "UUID | str | EventStream") -> dict[str, Any] | None:
    entries = await async_redis().xrevrange(_stream(job_id).stream_key, "+", "-", count=1)
    decoded = _decode(entries)
    return decoded[0] if decoded else None


def read_events_sync(job_id: "UUID | str | EventStream", after: int = 0) -> list[dict[str, Any]]:
    return _decode(sync_redis().xrange(_stream(job_id).stream_key, f"0-{after + 1}", "+"))
