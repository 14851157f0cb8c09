"""Group messages that can be sent again: each is appended to a short Redis stream before it is
published, and carries the stream's key and its entry id.

The pub/sub channel layer loses what is published while a web process's subscriber connection
is down or reconnecting (channels-redis #256). Job events have their own history and gap repair
(basic/jobs/event_store.py); chat had none. With this, the layer (basic/realtime/channel_layer.py) notes the
last entry it delivered per group and, when its subscriber is back, reads the stream from there
and delivers what it missed, each message once.
"""
import json
import re
from collections import deque
from typing import Any

from redis import RedisError
from redis.commands.core import AsyncScript

from basic.core.redis_clients import async_redis

STREAM = "_stream"  # the message's stream key; keys starting with "_" never reach a socket
ID = "id"  # the stream entry id, also sent to the socket: it orders and names the message
FIELD = "m"


async def append(stream: str, message: dict[str, Any], maxlen: int, ttl_seconds: int) -> dict[str, Any]:
    """Store `message` (a JSON-able dict) and return it with its entry id and stream key, ready
    for group_send. One round trip: XADD (trimmed to about `maxlen`) and EXPIRE."""
    pipe = async_redis().pipeline(transaction=True)
    pipe.xadd(stream, {FIELD: json.dumps(message, separators=(",", ":"))}, maxlen=maxlen, approximate=True)
    pipe.expire(stream, ttl_seconds)
    entry_id, _ = await pipe.execute()
    return {**message, ID: entry_id.decode(), STREAM: stream}


# XADD and EXPIRE as `append`, then the message (with its id and stream) packed as the pub/sub
# layer's msgpack and published to each channel in ARGV[4..]: stored and sent in one step, so a web
# process that dies after storing a message can't leave it unsent (the chaos soak found such
# messages in a room's history that no other process's members ever got).
_APPEND_AND_PUBLISH = f"""
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', '{FIELD}', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[3])
local message = cjson.decode(ARGV[1])
message['{ID}'] = id
message['{STREAM}'] = KEYS[1]
local packed = cmsgpack.pack(message)
for i = 4, #ARGV do
  redis.call('PUBLISH', ARGV[i], packed)
end
return id
"""
_APPEND_AND_PUBLISH_SCRIPT = AsyncScript(None, _APPEND_AND_PUBLISH.encode())  # by EVALSHA, on any client
_PROBE = "return cmsgpack.pack(cjson.decode(ARGV[1]))"
PROBE_MESSAGE = {"type": "probe", "message": "é ✓ \U0001F600", "room": "r", ID: "1-0", STREAM: "s"}
_one_trip: dict[int, bool] = {}


async def one_trip(layer: Any) -> bool:
    """Whether `layer` reads what Redis's own msgpack encoder writes (plain msgpack, no encryption):
    asked once per layer, of Redis; until Redis answers, no."""
    known = _one_trip.get(id(layer))
    if known is None:
        try:
            packed = await async_redis().eval(_PROBE, 0, json.dumps(PROBE_MESSAGE))
        except RedisError:
            return False
        try:
            known = layer.deserialize(packed) == PROBE_MESSAGE
        except Exception:  # e.g. an encrypted layer: two steps
            known = False
        _one_trip[id(layer)] = known
    return known


async def append_and_publish(stream: str, message: dict[str, Any], maxlen: int, ttl_seconds: int,
                             channels: list[str]) -> dict[str, Any]:
    """`append`, and the message published to `channels` in the same step (one round trip)."""
    entry_id = await _APPEND_AND_PUBLISH_SCRIPT(
        keys=[stream], args=[json.dumps(message, separators=(",", ":")), maxlen, ttl_seconds, *channels],
        client=async_redis())
    return {**message, ID: entry_id.decode(), STREAM: stream}


async def read_from(stream: str, start: str, count: int) -> list[dict[str, Any]]:
    """The stored messages with entry ids from `start` on (inclusive), oldest first, at most
    `count`, each as `append` returned it."""
    entries = await async_redis().xrange(stream, min=start, max="+", count=count)
    return [{**json.loads(fields[FIELD.encode()]), ID: entry_id.decode(), STREAM: stream}
            for entry_id, fields in entries]


_ENTRY_ID = re.compile(r"^(\d{1,15})-(\d{1,15})$")


def parse_id(value: object) -> tuple[int, int] | None:
    """A stream entry id ("1732430000000-0") as (ms, seq), comparable; None if `value` is not one."""
    found = _ENTRY_ID.match(value) if isinstance(value, str) else None
    return (int(found[1]), int(found[2])) if found else None


def next_id(entry_id: tuple[int, int]) -> str:
    """The smallest id after `entry_id`: reading from it leaves `entry_id` out."""
    return f"{entry_id[0]}-{entry_id[1] + 1}"


# A replay reads from this long before the last message delivered: a message is stored, then
# published, so two senders' messages may be published in the other order than stored.
REPLAY_SLACK_MS = 2000
REMEMBERED_IDS = 1024  # per group: what was delivered, so a replay sends nothing twice


class DeliveredIds:
    """The stream entry ids of one group's messages that this process delivered lately."""

    def __init__(self, stream: str, since_ms: int) -> None:
        self.stream = stream
        self.last_ms = since_ms
        self.recent: deque[str] = deque()
        self.ids: set[str] = set()
        self.floor = (0, 0)  # ids at or below it were forgotten: taken as delivered

    def add(self, entry_id: str) -> bool:
        """Note `entry_id` as delivered; False if it was already."""
        key = parse_id(entry_id)
        if entry_id in self.ids or key <= self.floor:
            return False
        self.recent.append(entry_id)
        self.ids.add(entry_id)
        if len(self.recent) > REMEMBERED_IDS:
            forgotten = self.recent.popleft()
            self.ids.discard(forgotten)
            self.floor = max(self.floor, parse_id(forgotten))
        self.last_ms = max(self.last_ms, key[0])
        return True

    def replay_start(self) -> str:
        return f"{max(0, self.last_ms - REPLAY_SLACK_MS)}-0"
