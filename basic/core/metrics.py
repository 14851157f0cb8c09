"""Prometheus metrics, and the tiny functions the job lifecycle and the sockets record them with.

Sockets are counted by basic/realtime/socket_metrics.py (an ASGI middleware); /metrics is rendered
by basic/ops/metrics.py, which also reads the queue depth at scrape time.

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
import logging
import os
import socket
from collections.abc import Callable
from functools import wraps
from typing import Any

from prometheus_client import Counter, Gauge, Histogram, values
from prometheus_client import multiprocess as _multiprocess

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
JOBS_RETRIED = Counter("jobs_retried", "Runs that failed on a transient error and were queued again, by kind.",
                       ["kind"])
JOBS_TIMED_OUT = Counter("jobs_timed_out", "Jobs stopped at their kind's time limit (also counted as failed).",
                         ["kind"])
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
_ROUTES = (("/ws/jobs/", "jobs"), ("/ws/batches/", "batches"), ("/ws/events/", "events"), ("/ws/chat/", "chat"),
           ("/chat/", "seed_chat"))


def route_of(path: str) -> str:
    """The route name a socket path is counted under (`other` for a path no route knows)."""
    for prefix, name in _ROUTES:
        if path.startswith(prefix):
            return name
    return "other"


def _label(value: object, limit: int = 40) -> str:
    text = str(value) if value is not None else ""
    return text[:limit] or "unknown"


def _route(route: str) -> str:
    return route_of(route) if str(route).startswith("/") else _label(route, 32)


def never_raises(function: Callable[..., None]) -> Callable[..., None]:
    """Decorates a recording function: any exception is logged at debug level and swallowed."""
    @wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            function(*args, **kwargs)
        except Exception:
            logger.debug("recording metric %s failed", function.__name__, exc_info=True)
    return wrapper


# --- recording functions: cheap, never raise -------------------------------------------------

@never_raises
def job_started(kind: str) -> None:
    JOBS_STARTED.labels(kind=_label(kind)).inc()


@never_raises
def job_retried(kind: str) -> None:
    JOBS_RETRIED.labels(kind=_label(kind)).inc()


@never_raises
def job_timed_out(kind: str) -> None:
    JOBS_TIMED_OUT.labels(kind=_label(kind)).inc()


@never_raises
def job_finished(kind: str, outcome: str, seconds: float | None) -> None:
    """`outcome`: done, failed or cancelled; `seconds` from start to end, None if it never started."""
    kind = _label(kind)
    JOBS_FINISHED.labels(kind=kind, outcome=outcome if outcome in OUTCOMES else "other").inc()
    if seconds is not None and seconds >= 0:
        JOBS_RUNTIME.labels(kind=kind).observe(seconds)


@never_raises
def event_pushed(event_type: str) -> None:
    EVENTS_PUSHED.labels(type=_label(event_type)).inc()


@never_raises
def push_failed(event_type: str) -> None:
    EVENT_PUSH_FAILURES.labels(type=_label(event_type)).inc()


@never_raises
def socket_opened(route: str) -> None:
    """Called by SocketMetricsMiddleware on every accepted socket: don't call it again."""
    route = _route(route)
    WS_ACCEPTED.labels(route=route).inc()
    WS_OPEN.labels(route=route).inc()


@never_raises
def socket_closed(route: str, code: int | None) -> None:
    """Called by SocketMetricsMiddleware once per accepted socket: don't call it again."""
    route = _route(route)
    WS_OPEN.labels(route=route).dec()
    WS_DISCONNECTS.labels(route=route, code="none" if code is None else str(int(code))).inc()


@never_raises
def fanned_out(route: str, count: int = 1) -> None:
    WS_FANOUT.labels(route=_route(route)).inc(max(0, count))


@never_raises
def socket_closed_over_limit(reason: str) -> None:
    WS_LIMIT_CLOSES.labels(reason=_label(reason)).inc()


@never_raises
def redis_reconnected(component: str) -> None:
    REDIS_RECONNECTS.labels(component=_label(component)).inc()
