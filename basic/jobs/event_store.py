"""Job event history: one bounded Redis Stream per job, with a per-job sequence number.

The channel layer is for live fan-out only and may drop messages (docs/design.md trap 2); the stream
is what snapshots, replay after reconnect and gap repair read. Stream entry ids are `0-<seq>`, so
"everything after seq N" is a plain XRANGE.
"""
import json
from typing import Any
from uuid import UUID

from django.conf import settings
from redis.commands.core import Script

from basic.core.keys import seq_key, stream_key
from basic.core.redis_clients import async_redis, sync_redis

# Assigns the next seq and appends the event atomically, so the stream is always in seq order
# even when two processes (a worker and a cancelling view) write to the same job. ARGV[5] is the
# last seq the database knows of: a Redis that came back empty restarts above it, never at 1
# (docs/design.md trap 7).
_APPEND = """
local seq
local floor = tonumber(ARGV[5])
if redis.call('EXISTS', KEYS[1]) == 1 then
  seq = redis.call('INCR', KEYS[1])
else
  local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
  seq = 1
  if #last > 0 then
    seq = tonumber(string.match(last[1][1], '-(%d+)$')) + 1
  end
end
if seq <= floor then
  seq = floor + 1
end
redis.call('SET', KEYS[1], seq)
local data = ARGV[1] .. seq .. ARGV[2]
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[3], '0-' .. seq, 'e', data)
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[4])
"""
_APPEND_SCRIPT = _APPEND + "return seq"
# The same, then the event published to each channel in ARGV[7..] as the pub/sub channel layer's
# message {"type": ARGV[6], "event": …}, msgpack-encoded by Redis: store and fan-out in one trip.
_APPEND_AND_PUBLISH_SCRIPT = _APPEND + """
local payload = cmsgpack.pack({type = ARGV[6], event = cjson.decode(data)})
for i = 7, #ARGV do
  redis.call('PUBLISH', ARGV[i], payload)
end
return seq
"""
# What the channel layer must be able to read for the one-trip path to be used.
_PROBE_SCRIPT = "return cmsgpack.pack({type = ARGV[1], event = cjson.decode(ARGV[2])})"

def _split_for_seq(event: dict[str, Any]) -> tuple[str, str]:
    """The event's JSON, cut where the Lua script splices in `"seq": N`."""
    body = json.dumps(event, separators=(",", ":"), default=str)
    return body[:-1] + ',"seq":', "}"


_scripts: dict[str, Script] = {}


def _run_script(source: str, keys: list[str], args: list[Any]) -> Any:
    """EVALSHA a script, loading it on first use (and again after a Redis restart forgot it)."""
    script = _scripts.get(source)
    if script is None:
        script = _scripts[source] = sync_redis().register_script(source)
    return script(keys=keys, args=args)


def _append(source: str, job_id: UUID | str, event: dict[str, Any], floor: int, *extra: str) -> dict[str, Any]:
    head, tail = _split_for_seq(event)
    seq = _run_script(
        source,
        [seq_key(job_id), stream_key(job_id)],
        [head, tail, settings.JOB_EVENTS_MAXLEN, settings.JOB_EVENTS_TTL_SECONDS, floor, *extra],
    )
    return {**event, "seq": int(seq)}


def append_event(job_id: UUID | str, event: dict[str, Any], floor: int = 0) -> dict[str, Any]:
    """Store the event in the job's stream and return it with its new `seq` (above `floor`)."""
    return _append(_APPEND_SCRIPT, job_id, event, floor)


def append_and_publish(
    job_id: UUID | str, event: dict[str, Any], message_type: str, channels: list[str], floor: int = 0
) -> dict[str, Any]:
    """`append_event`, plus publishing it on `channels` inside the same atomic script."""
    return _append(_APPEND_AND_PUBLISH_SCRIPT, job_id, event, floor, message_type, *channels)


def redis_packed(message_type: str, event: dict[str, Any]) -> bytes:
    """The bytes `append_and_publish` would publish for this event (to check a reader with)."""
    return _run_script(_PROBE_SCRIPT, [], [message_type, json.dumps(event, separators=(",", ":"))])


def _decode(entries: list[tuple[bytes, dict[bytes, bytes]]]) -> list[dict[str, Any]]:
    return [json.loads(fields[b"e"]) for _id, fields in entries]


async def read_events_after(job_id: UUID | str, after: int, upto: int | None = None) -> list[dict[str, Any]]:
    """Every stored event with `after < seq <= upto`, in order."""
    end = f"0-{upto}" if upto is not None else "+"
    entries = await async_redis().xrange(stream_key(job_id), f"0-{after + 1}", end)
    return _decode(entries)


async def last_event(job_id: UUID | str) -> dict[str, Any] | None:
    entries = await async_redis().xrevrange(stream_key(job_id), "+", "-", count=1)
    decoded = _decode(entries)
    return decoded[0] if decoded else None


def read_events_sync(job_id: UUID | str, after: int = 0) -> list[dict[str, Any]]:
    return _decode(sync_redis().xrange(stream_key(job_id), f"0-{after + 1}", "+"))
