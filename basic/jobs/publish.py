"""Push job events from sync code (Celery tasks on the gevent pool, views, commands).

The naive seed helper, `async_to_sync(channel_layer.group_send)(...)`, breaks on the gevent pool
(docs/design.md trap 1): while one greenlet is inside `async_to_sync`, every other greenlet sees a
running event loop, so their ORM calls raise SynchronousOnlyOperation; it also costs a new loop
and Redis connection per call. `RedisEventPusher` runs no event loop at all: with plain
(gevent-cooperative) redis-py it appends the event to the job's Redis Stream and publishes it on
the group's pub/sub channel in the channel layer's wire format, so the consumers receive it
exactly as if `group_send` had sent it: in one Lua script when the layer reads Redis's msgpack,
else stored first and then sent with `layer.serialize()`.

`AsyncToSyncEventPusher` is that naive helper, kept only as the measured baseline
(bench/bench_push.py) and for the regression test that shows it fails on gevent.
"""
import logging
import time
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import UUID

import redis
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from channels_redis.pubsub import RedisPubSubChannelLayer
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured

from basic.core import keys, metrics, redis_clients
from basic.jobs import event_store
from basic.jobs.event_schemas import check_event
from basic.jobs.events import LAYER_JOB_EVENT, TERMINAL_EVENTS, job_group, user_group

logger = logging.getLogger(__name__)

TERMINAL_PUSH_ATTEMPTS = 5


class EventPusher(Protocol):
    def publish(self, groups: list[str], event: dict[str, Any]) -> None: ...


class RedisEventPusher:
    """Publishes with sync redis-py onto the pub/sub channel layer's group channels.

    When the layer reads plain msgpack (no encryption: checked once against Redis's own encoder),
    the event is stored and published by one Lua script, in one round trip; otherwise it is
    published with `layer.serialize()` after it is stored.
    """

    PROBE_EVENT = {"type": "probe", "job": "x", "seq": 1, "progress": 50, "message": "é ✓ \U0001F600", "ok": True}

    def __init__(self) -> None:
        self.layer = get_channel_layer()
        if not isinstance(self.layer, RedisPubSubChannelLayer):
            raise ImproperlyConfigured("Job events are published for channels_redis.pubsub.RedisPubSubChannelLayer; "
                                       f"CHANNEL_LAYERS uses {type(self.layer).__name__}.")
        self._one_trip: bool | None = None

    def channels(self, groups: list[str]) -> list[str]:
        return [keys.group_channel(group) for group in groups]

    @property
    def one_trip(self) -> bool:
        if self._one_trip is None:
            try:
                packed = event_store.redis_packed(LAYER_JOB_EVENT, self.PROBE_EVENT)
                self._one_trip = self.layer.deserialize(packed) == {"type": LAYER_JOB_EVENT, "event": self.PROBE_EVENT}
            except redis.RedisError:
                return False  # decide once Redis answers
            except Exception:  # the layer can't read it (e.g. encrypted): keep two trips
                self._one_trip = False
        return self._one_trip

    def publish(self, groups: list[str], event: dict[str, Any]) -> None:
        payload = self.layer.serialize({"type": LAYER_JOB_EVENT, "event": event})
        pipe = redis_clients.sync_redis().pipeline(transaction=False)
        for channel in self.channels(groups):
            pipe.publish(channel, payload)
        pipe.execute()


class AsyncToSyncEventPusher:
    """The seed's helper: one `async_to_sync(group_send)` per group. Unsafe on gevent."""

    def __init__(self) -> None:
        self.layer = get_channel_layer()

    def publish(self, groups: list[str], event: dict[str, Any]) -> None:
        for group in groups:
            async_to_sync(self.layer.group_send)(group, {"type": LAYER_JOB_EVENT, "event": event})


PUSHERS: dict[str, type] = {"redis": RedisEventPusher, "async_to_sync": AsyncToSyncEventPusher}
_pusher: EventPusher | None = None


def get_pusher() -> EventPusher:
    global _pusher
    if _pusher is None:
        _pusher = PUSHERS[settings.JOB_EVENT_PUSHER]()
    return _pusher


def build_event(
    event_type: str,
    *,
    job_id: UUID | str,
    status: str,
    progress: int,
    message: str = "",
    check: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One job event as sent, without its `seq` (the event store adds it). With `check`, an event
    that does not match its type's schema raises EventShapeError (basic/jobs/event_schemas.py)."""
    event = {
        "type": event_type,
        "job": str(job_id),
        "status": status,
        "progress": progress,
        "message": message,
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        **extra,
    }
    if check:
        check_event(event, with_seq=False)
    return event


def push_job_event(
    event_type: str,
    *,
    job_id: UUID | str,
    owner_id: int | None,
    status: str,
    progress: int,
    message: str = "",
    floor: int = 0,
    check: bool = False,
    **extra: Any,
) -> dict[str, Any] | None:
    """Store and broadcast one job event; returns it with its `seq`, or None if Redis is down.

    `floor` is the last seq the caller knows the job had: the new seq is above it even if Redis
    lost the job's counter and history. Terminal events are retried (they must never be lost); a
    progress event that cannot be sent is dropped, since the next one supersedes it.

    `check` refuses an event whose shape is not its type's schema, before anything is sent. The
    lifecycle always checks (`transitions.push`); tests and benchmarks push partial events, so the
    default is off.
    """
    event = build_event(event_type, job_id=job_id, status=status, progress=progress, message=message,
                        check=check, **extra)
    groups = [job_group(job_id)] + ([user_group(owner_id)] if owner_id is not None else [])
    attempts = TERMINAL_PUSH_ATTEMPTS if event_type in TERMINAL_EVENTS else 1
    stored = None
    pusher = get_pusher()
    for attempt in range(1, attempts + 1):
        try:
            if stored is None and isinstance(pusher, RedisEventPusher) and pusher.one_trip:
                sent = event_store.append_and_publish(job_id, event, LAYER_JOB_EVENT, pusher.channels(groups), floor)
                metrics.event_pushed(event_type)
                return sent
            if stored is None:
                stored = event_store.append_event(job_id, event, floor)
            pusher.publish(groups, stored)
            metrics.event_pushed(event_type)
            return stored
        except redis.RedisError as exc:
            logger.warning("push %s for job %s failed (attempt %d): %s", event_type, job_id, attempt, exc)
            if attempt < attempts:
                time.sleep(min(0.2 * 2**attempt, 2))
    # A stored event reaches clients through replay and gap repair even if its publish failed.
    (metrics.event_pushed if stored is not None else metrics.push_failed)(event_type)
    return stored


class ProgressThrottle:
    """Lets a progress update through at most once per `min_interval` seconds.

    A report can produce thousands of chunk updates a second; browsers need ~10. A change of the
    whole-percent value alone does not force an update, so fast jobs do not flood either.
    """

    def __init__(self, min_interval: float | None = None, clock: Any = time.monotonic) -> None:
        self.min_interval = settings.JOB_PROGRESS_MIN_INTERVAL if min_interval is None else min_interval
        self.clock = clock
        self._last_sent: float | None = None
        self._last_progress = -1

    def should_send(self, progress: int, min_interval: float | None = None) -> bool:
        """True if `progress` should go out now; `min_interval` overrides the throttle's own (a
        worker's shared budget stretches it while many jobs run)."""
        interval = self.min_interval if min_interval is None else min_interval
        now = self.clock()
        if progress == self._last_progress:
            return False
        if self._last_sent is not None and now - self._last_sent < interval:
            return False
        self._last_sent = now
        self._last_progress = progress
        return True

    def sent(self) -> None:
        """Count the interval from the end of the send: on a busy gevent worker the send itself can
        wait longer than the interval, and counting from its start would let every step through."""
        self._last_sent = self.clock()

