"""The /metrics exposition: every metric in Prometheus text, summed over processes in multiprocess
mode, plus the Celery queue depth read from the broker at scrape time.

The metric objects and the multiprocess setup live in basic/core/metrics.py (MULTIPROC_DIR there
says which mode this process is in); basic/ops/views.py serves `render()`.
"""
import glob
import logging
import os
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.backoff import NoBackoff
from redis.retry import Retry

from basic.core import metrics, redis_target

logger = logging.getLogger(__name__)


class QueueDepthCollector(Collector):
    """`jobs_queue_depth`: messages waiting in the Celery queue (LLEN in the broker, priority
    sub-queues included); `jobs_queue_unacked`: delivered to a worker, not yet acknowledged
    (running or prefetched); `jobs_broker_up`: 1 if the broker answered this scrape."""

    TIMEOUT = 0.5
    _client: Any = None
    _client_url = ""

    def _redis(self) -> Any:
        url = settings.CELERY_BROKER_URL
        if self._client is None or self._client_url != url:
            QueueDepthCollector._client = redis_target.broker_client(
                url, settings.REDIS_SENTINELS, socket_connect_timeout=self.TIMEOUT, socket_timeout=self.TIMEOUT,
                retry=Retry(NoBackoff(), 0))
            QueueDepthCollector._client_url = url
        return self._client

    def describe(self) -> list[GaugeMetricFamily]:
        """Names only: without this, registering would query the broker."""
        return [GaugeMetricFamily(name, "") for name in ("jobs_broker_up", "jobs_queue_depth", "jobs_queue_unacked")]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        queue = settings.CELERY_TASK_DEFAULT_QUEUE
        up = GaugeMetricFamily("jobs_broker_up", "1 if the broker (Redis) answered this scrape, else 0.")
        try:
            pipe = self._redis().pipeline(transaction=False)
            # kombu's Redis transport keeps priorities 3, 6 and 9 in sub-lists named queue\x06\x16<n>.
            for key in (queue, *(f"{queue}\x06\x16{step}" for step in (3, 6, 9))):
                pipe.llen(key)
            pipe.hlen("unacked")
            *lengths, unacked = pipe.execute()
        except Exception as exc:
            logger.warning("queue depth not collected: %s", type(exc).__name__)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        depth = GaugeMetricFamily("jobs_queue_depth", "Jobs waiting in the Celery queue.", labels=["queue"])
        depth.add_metric([queue], sum(lengths))
        yield depth
        yield GaugeMetricFamily("jobs_queue_unacked", "Jobs delivered to workers and not yet acknowledged.",
                                value=unacked)


# Registered once per process, when this module is first imported (multiprocess mode adds it to a
# fresh registry at every scrape instead, in render()).
_QUEUE_DEPTH = QueueDepthCollector()
if not metrics.MULTIPROC_DIR:
    REGISTRY.register(_QUEUE_DEPTH)


def _prune_dead_processes() -> None:
    """Drop live gauges (open sockets) of this host's processes that died without closing them.
    Other hosts' files can't be judged from here; the stack empties the directory at start."""
    for path in glob.glob(os.path.join(metrics.MULTIPROC_DIR, "gauge_live*_*.db")):
        identifier = os.path.basename(path)[:-3].split("_", 2)[2]
        host, _, pid = identifier.rpartition("-")
        if host != metrics._HOST or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _multiprocess.mark_process_dead(identifier, metrics.MULTIPROC_DIR)
        except OSError:
            pass  # alive, someone else's


def render() -> bytes:
    """The Prometheus text exposition of every metric (summed over processes in multiprocess mode)."""
    if not metrics.MULTIPROC_DIR:
        return generate_latest(REGISTRY)
    _prune_dead_processes()
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=metrics.MULTIPROC_DIR)
    registry.register(_QUEUE_DEPTH)
    return generate_latest(registry)
