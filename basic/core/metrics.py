"""Prometheus metrics, and the tiny functions the job lifecycle and the sockets record them with.

Every recording function is cheap and never raises: a metrics problem must not fail a job or
close a socket. Names follow Flower's exporter for jobs (with a `jobs_` prefix) and Centrifugo's
for sockets (`ws_`). Label values are clipped and socket routes are route names, never paths
with ids in them, so series stay few.

Several processes (Daphne replicas, Celery workers) each count their own; with the environment
variable PROMETHEUS_MULTIPROC_DIR set to one directory shared by all of them (basic/ops/stack.py does
this for `make run` and the tests), /metrics on any web process serves the sum over all of them.
Process files are named `<host>-<pid>` rather than `<pid>`, so containers that share the
directory through a volume (each with its own pid 1) don't write into each other's files.
"""
import asyncio
import glob
import logging
import os
import socket
from collections.abc import Awaitable, Callable, Iterator
from functools import wraps
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, generate_latest, values
from prometheus_client import multiprocess as _multiprocess
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

logger = logging.getLogger(__name__)

MULTIPROC_DIR = os.environ.get("PROMETHEUS_MULTIPROC_DIR", "")
_HOST = (socket.gethostname() or "host").replace("_", "-")


def _process_identifier() -> str:
    return f"{_HOST}-{os.getpid()}"


if MULTIPROC_DIR:
    os.makedirs(MULTIPROC_DIR, exist_ok=True)
    # Live gauges (open sockets) left by an earlier process with this identifier are stale.
    _multiprocess.mark_process_dead(_process_identifier(), MULTIPROC_DIR)
    values.ValueClass = values.MultiProcessValue(process_identifier=_process_identifier)

OUTCOMES = ("done", "failed", "cancelled")
RUNTIME_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 3 * 3600, 6 * 3600)

JOBS_STARTED = Counter("jobs_started", "Jobs that began running, by kind.", ["kind"])
JOBS_FINISHED = Counter("jobs_finished", "Jobs that ended, by kind and outcome (done, failed, cancelled).",
                        ["kind", "outcome"])
JOBS_RUNTIME = Histogram("jobs_runtime_seconds", "Time from a job's start to its end, by kind.", ["kind"],
                         buckets=RUNTIME_BUCKETS)
EVENTS_PUSHED = Counter("jobs_events_pushed", "Job events stored and published, by event type.", ["type"])
EVENT_PUSH_FAILURES = Counter("jobs_event_push_failures", "Job events that could not be pushed, by type.",
                              ["type"])
WS_OPEN = Gauge("ws_connections_open", "WebSockets open now, by route.", ["route"], multiprocess_mode="livesum")
WS_ACCEPTED = Counter("ws_connections", "WebSockets accepted, by route.", ["route"])
WS_REFUSED = Counter("ws_handshakes_refused", "WebSocket handshakes refused before accepting (e.g. origin).",
                     ["route"])
WS_SENT = Counter("ws_messages_sent", "Frames sent to sockets, by route.", ["route"])
WS_RECEIVED = Counter("ws_messages_received", "Frames received from sockets, by route.", ["route"])
WS_DISCONNECTS = Counter("ws_disconnects", "WebSockets closed, by route and close code.", ["route", "code"])
WS_FANOUT = Counter("ws_fanout_messages", "Channel-layer messages delivered to a socket, by route.", ["route"])
WS_LIMIT_CLOSES = Counter("ws_limit_closes", "Sockets closed for going over a limit, by reason.", ["reason"])
REDIS_RECONNECTS = Counter("redis_reconnects", "Reconnections to Redis after losing it, by component.",
                           ["component"])

# Socket paths (routing.py) to route names: the label never carries a job id or room name.
_ROUTES = (("/ws/jobs/", "jobs"), ("/ws/events/", "events"), ("/ws/chat/", "chat"), ("/chat/", "seed_chat"))


def route_of(path: str) -> str:
    for prefix, name in _ROUTES:
        if path.startswith(prefix):
            return name
    return "other"


def _label(value: object, limit: int = 40) -> str:
    text = str(value) if value is not None else ""
    return text[:limit] or "unknown"


def _route(route: str) -> str:
    return route_of(route) if str(route).startswith("/") else _label(route, 32)


def _never_raises(function: Callable[..., None]) -> Callable[..., None]:
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.debug("recording metric %s failed", function.__name__, exc_info=True)
    return wrapper


# --- recording functions: cheap, never raise -------------------------------------------------

@_never_raises
def job_started(kind: str) -> None:
    JOBS_STARTED.labels(kind=_label(kind)).inc()


@_never_raises
def job_finished(kind: str, outcome: str, seconds: float | None) -> None:
    """`outcome`: done, failed or cancelled; `seconds` from start to end, None if it never started."""
    kind = _label(kind)
    JOBS_FINISHED.labels(kind=kind, outcome=outcome if outcome in OUTCOMES else "other").inc()
    if seconds is not None and seconds >= 0:
        JOBS_RUNTIME.labels(kind=kind).observe(seconds)


@_never_raises
def event_pushed(event_type: str) -> None:
    EVENTS_PUSHED.labels(type=_label(event_type)).inc()


@_never_raises
def push_failed(event_type: str) -> None:
    EVENT_PUSH_FAILURES.labels(type=_label(event_type)).inc()


@_never_raises
def socket_opened(route: str) -> None:
    """Called by SocketMetricsMiddleware on every accepted socket: don't call it again."""
    route = _route(route)
    WS_ACCEPTED.labels(route=route).inc()
    WS_OPEN.labels(route=route).inc()


@_never_raises
def socket_closed(route: str, code: int | None) -> None:
    """Called by SocketMetricsMiddleware once per accepted socket: don't call it again."""
    route = _route(route)
    WS_OPEN.labels(route=route).dec()
    WS_DISCONNECTS.labels(route=route, code="none" if code is None else str(int(code))).inc()


@_never_raises
def fanned_out(route: str, count: int = 1) -> None:
    WS_FANOUT.labels(route=_route(route)).inc(max(0, count))


@_never_raises
def socket_closed_over_limit(reason: str) -> None:
    WS_LIMIT_CLOSES.labels(reason=_label(reason)).inc()


@_never_raises
def redis_reconnected(component: str) -> None:
    REDIS_RECONNECTS.labels(component=_label(component)).inc()


@_never_raises
def _frame_sent(route: str) -> None:
    WS_SENT.labels(route=route).inc()


@_never_raises
def _frame_received(route: str) -> None:
    WS_RECEIVED.labels(route=route).inc()


@_never_raises
def _handshake_refused(route: str) -> None:
    WS_REFUSED.labels(route=route).inc()


# --- sockets: counted by an ASGI middleware around every WebSocket (app/asgi.py) ---------------

class FrameTally:
    """Frames sent, added to their counters once per event-loop step rather than once per frame:
    a group message to 3,000 sockets is one `inc(3000)`, not 3,000 locked increments (they were a
    tenth of Daphne's time fanning out, docs/benchmarks.md). The flush is queued before the first
    frame of a step goes out, so it runs before anything that frame wakes: a reader of /metrics
    never sees a frame that is not counted yet."""

    def __init__(self) -> None:
        self.pending: dict[Any, int] = {}

    def add(self, counter: Any) -> None:
        if not self.pending:
            try:
                asyncio.get_running_loop().call_soon(self.flush)
            except RuntimeError:  # no event loop in this thread: count it now
                counter.inc()
                return
        self.pending[counter] = self.pending.get(counter, 0) + 1

    def flush(self) -> None:
        pending, self.pending = self.pending, {}
        for counter, count in pending.items():
            try:
                counter.inc(count)
            except Exception:
                logger.warning("metrics: could not count %s sent frames", count, exc_info=True)


_frames_sent = FrameTally()


class SocketMetricsMiddleware:
    """Counts accepted, refused and closed sockets, open sockets, and frames in and out, from the
    ASGI messages themselves, so every consumer is counted the same way."""

    def __init__(self, application: Any) -> None:
        self.application = application

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> Any:
        if scope.get("type") != "websocket":
            return await self.application(scope, receive, send)
        route = route_of(scope.get("path", ""))
        state = {"open": False, "closed": False}
        sent = WS_SENT.labels(route=route)  # once per socket: a label lookup per frame adds up in fan-out

        def closed(code: int | None) -> None:
            if state["open"] and not state["closed"]:
                state["closed"] = True
                socket_closed(route, code)

        def counting_send(message: dict) -> Awaitable[None]:
            # A plain function handing back the inner send's awaitable: one coroutine less per frame.
            kind = message.get("type")
            if kind == "websocket.send":
                _frames_sent.add(sent)
            elif kind == "websocket.accept" and not state["open"]:
                state["open"] = True
                socket_opened(route)
            elif kind == "websocket.close":
                if state["open"]:
                    closed(message.get("code", 1000))
                else:
                    _handshake_refused(route)
            return send(message)

        async def counting_receive() -> dict:
            message = await receive()
            kind = message.get("type")
            if kind == "websocket.receive":
                _frame_received(route)
            elif kind == "websocket.disconnect":
                closed(message.get("code"))
            return message

        try:
            return await self.application(scope, counting_receive, counting_send)
        finally:
            closed(None)


# --- scrape time -----------------------------------------------------------------------------

class QueueDepthCollector(Collector):
    """`jobs_queue_depth`: messages waiting in the Celery queue (LLEN in the broker, priority
    sub-queues included); `jobs_queue_unacked`: delivered to a worker, not yet acknowledged
    (running or prefetched); `jobs_broker_up`: 1 if the broker answered this scrape."""

    TIMEOUT = 0.5
    _client: Any = None
    _client_url = ""

    def _redis(self) -> Any:
        import redis
        from django.conf import settings
        from redis.backoff import NoBackoff
        from redis.retry import Retry

        url = settings.CELERY_BROKER_URL
        if self._client is None or self._client_url != url:
            QueueDepthCollector._client = redis.Redis.from_url(
                url, socket_connect_timeout=self.TIMEOUT, socket_timeout=self.TIMEOUT,
                retry=Retry(NoBackoff(), 0))
            QueueDepthCollector._client_url = url
        return self._client

    def describe(self) -> list[GaugeMetricFamily]:
        """Names only: without this, registering would query the broker."""
        return [GaugeMetricFamily(name, "") for name in ("jobs_broker_up", "jobs_queue_depth", "jobs_queue_unacked")]

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from django.conf import settings

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


_QUEUE_DEPTH = QueueDepthCollector()
if not MULTIPROC_DIR:
    REGISTRY.register(_QUEUE_DEPTH)


def _prune_dead_processes() -> None:
    """Drop live gauges (open sockets) of this host's processes that died without closing them.
    Other hosts' files can't be judged from here; the stack empties the directory at start."""
    for path in glob.glob(os.path.join(MULTIPROC_DIR, "gauge_live*_*.db")):
        identifier = os.path.basename(path)[:-3].split("_", 2)[2]
        host, _, pid = identifier.rpartition("-")
        if host != _HOST or not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _multiprocess.mark_process_dead(identifier, MULTIPROC_DIR)
        except OSError:
            pass  # alive, someone else's


def render() -> bytes:
    """The Prometheus text exposition of every metric (summed over processes in multiprocess mode)."""
    if not MULTIPROC_DIR:
        return generate_latest(REGISTRY)
    _prune_dead_processes()
    registry = CollectorRegistry()
    _multiprocess.MultiProcessCollector(registry, path=MULTIPROC_DIR)
    registry.register(_QUEUE_DEPTH)
    return generate_latest(registry)
