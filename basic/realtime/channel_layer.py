"""The channel layer: channels-redis's pub/sub layer, made to survive a Redis restart and to fan
out a group message at the cost of one decode per process instead of one per socket.

- Publishing and subscribing retry once on a fresh connection: after Redis restarts, the first
  command otherwise goes out on a dead pooled connection and fails (docs/design.md trap 6).
- A message for a group is decoded once in the receive loop and the same dict is handed to every
  local member; consumers then encode it once between them (`basic.realtime.frames.encoded_once`), where
  the stock layer queues the raw bytes and every socket decodes and encodes them again (trap 8).
- When the subscriber connection comes back after an outage, every local consumer is sent a
  `layer.reconnected` message, so sockets can resync what was published meanwhile (channels-redis
  loses it, #256, and never calls its own reconnect hooks, #406).
- Groups whose messages are also kept in a stream (chat rooms: basic/realtime/chat_history.py) get what
  this process missed while reconnecting from that stream, each message once.
- Joining a group the process is not yet subscribed to returns once Redis has confirmed the
  SUBSCRIBE, not when it was sent (redis-py's `subscribe` only writes it). A socket reads its
  history after joining; if that read ran first (a Redis paused, then resumed, serves its clients'
  commands in any order), a message stored and published between the two was lost to it.
- A consumer's own channel costs Redis nothing: every channel this process hands out shares one
  pattern subscription (`PSUBSCRIBE <prefix>specific.<process>!*`, made once), where the stock layer
  sent a SUBSCRIBE per socket under one lock, one at a time: ~4 ms of serial work per socket that
  made 2,000 sockets opening at once all miss Daphne's connect timeout (docs/benchmarks.md, storms).
"""
import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from basic.core import metrics
from basic.realtime import chat_history as group_history
from basic.realtime.chat_history import DeliveredIds
from basic.realtime.slim_queue import SlimQueue
from basic.realtime.socket_metrics import count_sent
from basic.realtime.wire import Outlet, send_group_message

logger = logging.getLogger(__name__)

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
LAYER_RECONNECTED = "layer.reconnected"
REPLAY_MAX = 1000  # messages read per group per reconnect
# How long a join waits for Redis to confirm a new subscription before it fails as an outage
# (the consumer then closes with 1013, try again later).
SUBSCRIBE_CONFIRM_SECONDS = 5.0


def glob_escaped(text: str) -> str:
    """`text` matched literally in a Redis glob pattern."""
    return "".join(f"\\{char}" if char in "*?[]\\^-" else char for char in text)


class ResilientShardConnection(RedisSingleShardConnection):
    """One Redis server's publisher and subscriber connections."""

    def __init__(self, host: dict[str, Any], channel_layer: RedisPubSubLoopLayer) -> None:
        super().__init__(host, channel_layer)
        self._lost = False
        self._patterns: set[str] = set()
        # channel -> resolved when Redis confirms its SUBSCRIBE (every joiner meanwhile waits on it)
        self._unconfirmed: dict[str, asyncio.Future[None]] = {}

    async def psubscribe(self, pattern: str) -> None:
        """Subscribe to `pattern` once (redis-py subscribes it again after a reconnect)."""
        if pattern in self._patterns:
            return
        async with self._lock:
            if pattern in self._patterns:
                return
            self._ensure_redis()
            self._ensure_receiver()
            try:
                await self._pubsub.psubscribe(pattern)
            except RETRYABLE as exc:
                logger.info("psubscribe failed (%s); retrying once on a fresh connection", exc)
                if self._pubsub.connection is not None:
                    await self._pubsub.connection.disconnect()
                await self._pubsub.psubscribe(pattern)
            self._patterns.add(pattern)

    async def flush(self) -> None:
        await super().flush()
        self._patterns = set()

    async def _fresh_connection(self) -> None:
        """Drop the idle (publishing) connections; the subscriber's is in use and left alone."""
        if self._redis is not None:
            await self._redis.connection_pool.disconnect(inuse_connections=False)

    async def publish(self, channel: str, message: bytes) -> None:
        try:
            await super().publish(channel, message)
        except RETRYABLE as exc:
            logger.info("publish failed (%s); retrying once on a fresh connection", exc)
            await self._fresh_connection()
            await super().publish(channel, message)

    async def subscribe(self, channel: str) -> None:
        """Subscribe to `channel` and return once Redis has confirmed it (see the module's
        docstring); a channel subscribed already costs nothing."""
        if channel not in self._subscribed_to and channel not in self._unconfirmed:
            self._unconfirmed[channel] = asyncio.get_running_loop().create_future()
        try:
            await super().subscribe(channel)
        except RETRYABLE as exc:
            logger.info("subscribe failed (%s); retrying once on a fresh connection", exc)
            if self._pubsub is not None and self._pubsub.connection is not None:
                # redis-py reconnects on the next command and subscribes to everything again.
                await self._pubsub.connection.disconnect()
            await super().subscribe(channel)
        confirmed = self._unconfirmed.get(channel)
        if confirmed is not None:
            try:
                await asyncio.wait_for(asyncio.shield(confirmed), SUBSCRIBE_CONFIRM_SECONDS)
            except TimeoutError:
                raise RedisTimeoutError(f"Redis did not confirm the subscription to {channel} "
                                        f"within {SUBSCRIBE_CONFIRM_SECONDS:g} s") from None

    def _confirm(self, channel: str) -> None:
        confirmed = self._unconfirmed.pop(channel, None)
        if confirmed is not None and not confirmed.done():
            confirmed.set_result(None)

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=False, timeout=0.1)
                    if self._lost:
                        self._lost = False
                        logger.warning("the channel layer's subscriber connection is back")
                        metrics.redis_reconnected("channel_layer")
                        await self.channel_layer.replay_missed()
                        self.channel_layer.announce_reconnect()
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except BaseException as exc:
                if not self._lost:
                    logger.warning("the channel layer's subscriber connection was lost: %s", exc)
                self._lost = True
                await self._drop_subscriber_connection()
                await asyncio.sleep(0.2)

    async def _drop_subscriber_connection(self) -> None:
        """Start the next read on a new connection (redis-py subscribes it to every channel again)
        rather than on one that may still look open after the server went away."""
        connection = self._pubsub.connection if self._pubsub is not None else None
        if connection is not None:
            try:
                await connection.disconnect()
            except Exception:  # it is being replaced anyway
                logger.debug("closing the old subscriber connection failed", exc_info=True)

    def _receive_message(self, message: dict[str, Any] | None) -> None:
        if message is None:
            return
        name = message["channel"]
        if isinstance(name, bytes):
            name = name.decode()
        kind = message["type"]
        if kind != "message" and kind != "pmessage":
            if kind == "subscribe":
                self._confirm(name)
            return  # the other confirmations (psubscribe, unsubscribe, ...) and pongs
        layer = self.channel_layer
        if name in layer.channels:
            layer.hand_to_channel(name, message["data"])
            return
        if layer.groups.get(name):
            layer.deliver_group_message(name, layer.channel_layer.deserialize(message["data"]))  # decoded once


async def deliver(outlets: list[Outlet], handlers: list[Callable[[dict[str, Any]], Awaitable[None]]],
                  message: dict[str, Any]) -> None:
    """Hand one group message to every local consumer that takes messages directly, in one task:
    first through the sockets' outlets, in one loop with nothing awaited (basic/realtime/wire.py),
    then to the consumers' handlers, the outlets' own for what they could not send as is.

    Through the queue, each socket pays for a queue hop, a new receive task and an asyncio.wait()
    per message (Channels' await_many_dispatch): most of what a delivery cost once the thread hop
    was gone (docs/design.md trap 8). A handler that waits (a job socket filling a gap from Redis)
    only delays the sockets after it in this message; each consumer keeps its own order. The
    outlets go in the same task as the handlers, so a socket whose outlet opened while an earlier
    message still waited for its handler cannot be sent the later one first: tasks start in order.
    """
    if outlets:
        handlers = [*(outlet.handler for outlet in send_group_message(outlets, message, count_sent)), *handlers]
    for handler in handlers:
        try:
            await handler(message)
        except Exception:
            logger.exception("a consumer failed on a group message")


class ResilientLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [ResilientShardConnection(shard.host, self) for shard in self._shards]
        # Every channel this process hands out starts with this; one pattern covers them all.
        self.own_prefix = f"{self.prefix}specific.{uuid.uuid4().hex}!"
        # channel name -> the consumer's dispatch, for group messages delivered without the queue
        self.direct_handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}
        # channel name -> the consumer's outlet: its group messages go to its socket in one loop
        self.outlets: dict[str, Outlet] = {}
        # group channel name -> the ids delivered of a group whose messages are kept in a stream
        self.replay_marks: dict[str, DeliveredIds] = {}
        self.deliveries: set[asyncio.Task] = set()  # direct deliveries under way

    def deliver_group_message(self, name: str, decoded: dict[str, Any]) -> bool:
        """Hand a group message (decoded once) to this process's members of the group: directly
        to consumers that take it so (`deliver`), through the queue to the others. A message kept
        in a stream is handed over once, whether it came live or from a replay."""
        members = self.groups.get(name)
        if not members:
            return False
        stream = decoded.get(group_history.STREAM)
        if stream is not None:
            marks = self.replay_marks.get(name)
            if marks is None:
                marks = self.replay_marks[name] = DeliveredIds(stream, 0)
            if not marks.add(decoded[group_history.ID]):
                return False
        metrics.fanned_out(name.rpartition("__group__")[2].split(".", 1)[0], len(members))
        direct = []
        through_outlets = []
        outlets = self.outlets
        for channel_name in members:
            outlet = outlets.get(channel_name)
            if outlet is not None:
                through_outlets.append(outlet)
                continue
            handler = self.direct_handlers.get(channel_name)
            if handler is not None:
                direct.append(handler)
                continue
            queue = self.channels.get(channel_name)
            if queue is not None:
                queue.put_nowait(decoded)
        if direct or through_outlets:
            self._start_delivery(direct, decoded, through_outlets)
        return True

    def _start_delivery(self, handlers: list[Callable[[dict[str, Any]], Awaitable[None]]],
                        decoded: dict[str, Any], outlets: list[Outlet] | None = None) -> None:
        """Deliver in a task of its own, held until done: the loop keeps only a weak reference to
        a task, so one nobody holds could be collected before it runs."""
        task = asyncio.get_running_loop().create_task(deliver(outlets or [], handlers, decoded))
        self.deliveries.add(task)
        task.add_done_callback(self.deliveries.discard)

    def replay_group(self, group: str, stream: str) -> None:
        """`group`'s messages are also kept in `stream` (basic/realtime/chat_history.py): after the
        subscriber reconnects, what this process missed is read from there. Called by a consumer
        joining the group, so a group that has had no message here yet is covered too."""
        name = self._get_group_channel_name(group)
        if name not in self.replay_marks:
            self.replay_marks[name] = DeliveredIds(stream, int(time.time() * 1000))

    async def group_discard(self, group: str, channel: str) -> None:
        await super().group_discard(group, channel)
        name = self._get_group_channel_name(group)
        if name not in self.groups:
            self.replay_marks.pop(name, None)

    async def replay_missed(self) -> None:
        """Deliver what was stored for this process's replayable groups since the last message
        each delivered (less chat_history.REPLAY_SLACK_MS), skipping what was delivered already."""
        for name, marks in list(self.replay_marks.items()):
            if not self.groups.get(name):
                self.replay_marks.pop(name, None)
                continue
            try:
                missed = await group_history.read_from(marks.stream, marks.replay_start(), REPLAY_MAX)
            except Exception:
                logger.warning("could not read what %s missed while reconnecting", name, exc_info=True)
                continue
            sent = sum(self.deliver_group_message(name, message) for message in missed)
            if sent:
                logger.warning("sent %s message(s) of %s published while the subscriber reconnected", sent, name)

    def take_group_messages_directly(self, channel: str,
                                     handler: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
        """Register (or with None, drop) a local consumer's handler for its group messages."""
        if handler is None:
            self.direct_handlers.pop(channel, None)
            self.close_outlet(channel)
        else:
            self.direct_handlers[channel] = handler

    def open_outlet(self, channel: str, outlet: Outlet) -> None:
        """A local consumer's group messages go through `outlet` from now on (its handler takes
        what the outlet cannot send as is): basic/realtime/wire.py."""
        self.outlets[channel] = outlet

    def close_outlet(self, channel: str) -> None:
        outlet = self.outlets.pop(channel, None)
        if outlet is not None:
            outlet.ready = False

    async def new_channel(self, prefix: str = "specific.") -> str:
        """A channel for one consumer, covered by this process's pattern subscription (sharded
        layers publish a channel on the shard its name hashes to, so the pattern is on every one)."""
        if prefix != "specific.":
            return await super().new_channel(prefix)
        channel = f"{self.own_prefix}{uuid.uuid4().hex}"
        self.channels[channel] = SlimQueue()  # one per socket: asyncio.Queue was ~3 KiB of it
        pattern = f"{glob_escaped(self.own_prefix)}*"
        for shard in self._shards:
            await shard.psubscribe(pattern)
        return channel

    async def receive(self, channel: str) -> dict[str, Any]:
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        queue = self.channels[channel]
        try:
            message = await queue.get()
        except (TimeoutError, asyncio.CancelledError, GeneratorExit):
            self.direct_handlers.pop(channel, None)
            self.close_outlet(channel)
            if channel in self.channels:
                del self.channels[channel]
                if channel.startswith(self.own_prefix):
                    raise  # the pattern stays for the process's other channels
                try:
                    await self._get_shard(channel).unsubscribe(channel)
                except BaseException:
                    logger.exception("Unexpected exception while cleaning-up channel:")
            raise
        # Group messages arrive decoded (shared by every member); direct ones as bytes.
        return message if isinstance(message, dict) else self.channel_layer.deserialize(message)

    def announce_reconnect(self) -> None:
        for channel in list(self.channels):
            self.hand_to_channel(channel, {"type": LAYER_RECONNECTED})

    def hand_to_channel(self, channel: str, message: Any) -> None:
        """A message for one consumer's own channel: straight to it when it takes its messages
        directly (ours do, and then read no channel queue: basic/realtime/consumers/base.py),
        else into the channel's queue for `receive()`."""
        handler = self.direct_handlers.get(channel)
        if handler is None:
            self.channels[channel].put_nowait(message)
            return
        decoded = message if isinstance(message, dict) else self.channel_layer.deserialize(message)
        self._start_delivery([handler], decoded)

    def forget_channel(self, channel: str) -> None:
        """A consumer that read no channel queue has ended: drop its channel (what `receive()`'s
        cancellation does for the others)."""
        self.channels.pop(channel, None)
        self.direct_handlers.pop(channel, None)
        self.close_outlet(channel)


class ResilientPubSubChannelLayer(RedisPubSubChannelLayer):
    """Configured like the pub/sub layer (CHANNEL_LAYERS in app/settings.py)."""

    def _get_layer(self) -> ResilientLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = ResilientLoopLayer(*self._args, **self._kwargs, channel_layer=self)
            self._layers[loop] = layer
            _wrap_close(self, loop)
        return layer
