"""Celery's Redis transports, each channel keeping one redis-py client for its pool.

kombu's Redis channel builds a new redis-py client for every command it sends outside its event
loop (`Channel.conn_or_acquire`): for every task message sent, and for every message a worker takes
(the pipeline that records it as unacknowledged). A client's constructor fills a table of ~200
response callbacks: 5% of the gevent worker's CPU per trivial job and 1% of the web process's
(py-spy, issue 19). A client is a handle on the channel's connection pool and safe to share between
threads and greenlets (each command takes a connection from the pool), so one is kept per pool, and
made again if the channel's pool is replaced.

A message can also carry a key to write with it (`WITH_MESSAGE`), in the same round trip and
atomically: the job queue's marker (basic/jobs/queue_markers.py), which took two more round trips
around every send before (issue 19).
"""
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis
from kombu.utils.json import dumps

# A message header naming a key to set with the message: [key, value, seconds]. It is taken out of
# the message; the key is set only if the message went in (a Lua script: an LPUSH that fails stops
# it, which MULTI would not).
WITH_MESSAGE = "x-set-with-message"
_PUSH_AND_SET = """
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('SET', KEYS[2], ARGV[2], 'EX', ARGV[3])
"""


class _KeptClient:
    _kept_client: Any = None
    _push_and_set: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        kept = self._kept_client
        if kept is None or kept.connection_pool is not self.pool:
            kept = self._kept_client = self._create_client()
        yield kept

    def _put(self, queue: str, message: dict, **kwargs: Any) -> None:
        """kombu's, plus the `WITH_MESSAGE` key set with the message. The header is dropped from a
        copy: kombu's retry publishes the same headers again."""
        headers = message.get("headers") or {}
        also = headers.get(WITH_MESSAGE)
        if also is None:
            super()._put(queue, message, **kwargs)  # type: ignore[misc]
            return
        message = {**message, "headers": {name: value for name, value in headers.items() if name != WITH_MESSAGE}}
        key, value, seconds = also
        if kwargs.get("_publish_batch") is not None or (self._expires and queue in self._expires):  # type: ignore[attr-defined]
            super()._put(queue, message, **kwargs)  # type: ignore[misc]  # not used here: in order, not atomically
            with self.conn_or_acquire() as client:
                client.set(key, value, ex=seconds)
            return
        pri = self._get_message_priority(message, reverse=False)  # type: ignore[attr-defined]
        with self.conn_or_acquire() as client:
            script = self._push_and_set
            if script is None or script.registered_client is not client:
                script = self._push_and_set = client.register_script(_PUSH_AND_SET)
            script(keys=[self._q_for_pri(queue, pri), key], args=[dumps(message), value, seconds],  # type: ignore[attr-defined]
                   client=client)


class Channel(_KeptClient, redis.Channel):
    pass


class Transport(redis.Transport):
    Channel = Channel


class SentinelChannel(_KeptClient, redis.SentinelChannel):
    pass


class SentinelTransport(redis.SentinelTransport):
    Channel = SentinelChannel
