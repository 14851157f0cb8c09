"""Celery's Redis transports, each channel keeping one redis-py client for its pool.

kombu's Redis channel builds a new redis-py client for every command it sends outside its event
loop (`Channel.conn_or_acquire`): for every task message sent, and for every message a worker takes
(the pipeline that records it as unacknowledged). A client's constructor fills a table of ~200
response callbacks: 5% of the gevent worker's CPU per trivial job and 1% of the web process's
(py-spy, issue 19). A client is a handle on the channel's connection pool and safe to share between
threads and greenlets (each command takes a connection from the pool), so one is kept per pool, and
made again if the channel's pool is replaced.
"""
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from kombu.transport import redis


class _KeptClient:
    _kept_client: Any = None

    @contextmanager
    def conn_or_acquire(self, client: Any = None) -> Iterator[Any]:
        if client:
            yield client
            return
        kept = self._kept_client
        if kept is None or kept.connection_pool is not self.pool:
            kept = self._kept_client = self._create_client()
        yield kept


class Channel(_KeptClient, redis.Channel):
    pass


class Transport(redis.Transport):
    Channel = Channel


class SentinelChannel(_KeptClient, redis.SentinelChannel):
    pass


class SentinelTransport(redis.SentinelTransport):
    Channel = SentinelChannel
