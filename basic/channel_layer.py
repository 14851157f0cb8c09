"""The channel layer: channels-redis's pub/sub layer, made to survive a Redis restart and to fan
out a group message at the cost of one decode per process instead of one per socket.

- Publishing and subscribing retry once on a fresh connection: after Redis restarts, the first
  command otherwise goes out on a dead pooled connection and fails (docs/design.md trap 6).
- A message for a group is decoded once in the receive loop and the same dict is handed to every
  local member; consumers then encode it once between them (`basic.consumers.encoded_once`), where
  the stock layer queues the raw bytes and every socket decodes and encodes them again (trap 8).
- When the subscriber connection comes back after an outage, every local consumer is sent a
  `layer.reconnected` message, so sockets can resync what was published meanwhile (channels-redis
  loses it, #256, and never calls its own reconnect hooks, #406).
"""
import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import metrics

logger = logging.getLogger(__name__)

RETRYABLE = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
LAYER_RECONNECTED = "layer.reconnected"


class ResilientShardConnection(RedisSingleShardConnection):
    """One Redis server's publisher and subscriber connections."""

    def __init__(self, host: dict[str, Any], channel_layer: RedisPubSubLoopLayer) -> None:
        super().__init__(host, channel_layer)
        self._lost = False

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
        try:
            await super().subscribe(channel)
        except RETRYABLE as exc:
            logger.info("subscribe failed (%s); retrying once on a fresh connection", exc)
            if self._pubsub is not None and self._pubsub.connection is not None:
                # redis-py reconnects on the next command and subscribes to everything again.
                await self._pubsub.connection.disconnect()
            await super().subscribe(channel)

    async def _do_receiving(self) -> None:
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    if self._lost:
                        self._lost = False
                        logger.warning("the channel layer's subscriber connection is back")
                        metrics.redis_reconnected("channel_layer")
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
        layer = self.channel_layer
        if name in layer.channels:
            layer.channels[name].put_nowait(message["data"])
            return
        members = layer.groups.get(name)
        if not members:
            return
        decoded = layer.channel_layer.deserialize(message["data"])  # once, for every member
        metrics.fanned_out(name.rpartition("__group__")[2].split(".", 1)[0], len(members))
        direct = []
        for channel_name in members:
            handler = layer.direct_handlers.get(channel_name)
            if handler is not None:
                direct.append(handler)
                continue
            queue = layer.channels.get(channel_name)
            if queue is not None:
                queue.put_nowait(decoded)
        if direct:
            asyncio.get_running_loop().create_task(deliver(direct, decoded))


async def deliver(handlers: list[Callable[[dict[str, Any]], Awaitable[None]]], message: dict[str, Any]) -> None:
    """Hand one group message to every local consumer that takes messages directly, in one task.

    Through the queue, each socket pays for a queue hop, a new receive task and an asyncio.wait()
    per message (Channels' await_many_dispatch): most of what a delivery cost once the thread hop
    was gone (docs/design.md trap 8). A handler that waits (a job socket filling a gap from Redis)
    only delays the sockets after it in this message; each consumer keeps its own order.
    """
    for handler in handlers:
        try:
            await handler(message)
        except Exception:
            logger.exception("a consumer failed on a group message")


class ResilientLoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._shards = [ResilientShardConnection(shard.host, self) for shard in self._shards]
        # channel name -> the consumer's dispatch, for group messages delivered without the queue
        self.direct_handlers: dict[str, Callable[[dict[str, Any]], Awaitable[None]]] = {}

    def take_group_messages_directly(self, channel: str,
                                     handler: Callable[[dict[str, Any]], Awaitable[None]] | None) -> None:
        """Register (or with None, drop) a local consumer's handler for its group messages."""
        if handler is None:
            self.direct_handlers.pop(channel, None)
        else:
            self.direct_handlers[channel] = handler

    async def receive(self, channel: str) -> dict[str, Any]:
        if channel not in self.channels:
            await self._subscribe_to_channel(channel)
        queue = self.channels[channel]
        try:
            message = await queue.get()
        except (TimeoutError, asyncio.CancelledError, GeneratorExit):
            self.direct_handlers.pop(channel, None)
            if channel in self.channels:
                del self.channels[channel]
                try:
                    await self._get_shard(channel).unsubscribe(channel)
                except BaseException:
                    logger.exception("Unexpected exception while cleaning-up channel:")
            raise
        # Group messages arrive decoded (shared by every member); direct ones as bytes.
        return message if isinstance(message, dict) else self.channel_layer.deserialize(message)

    def announce_reconnect(self) -> None:
        for queue in self.channels.values():
            queue.put_nowait({"type": LAYER_RECONNECTED})


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
