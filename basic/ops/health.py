"""Liveness and readiness checks for /healthz and /readyz (views in basic/ops/views.py).

Readiness checks the database, Redis (channel layer, event history, cache) and that at least one
Celery worker answers a ping through the broker. The checks run at once, each in its own thread,
and whatever has not answered by the deadline counts as down, so /readyz answers within about
READYZ_TIMEOUT (at most 1.8 s) even when a dependency hangs. Bodies name the check and say what
is wrong in a fixed sentence: no host names, addresses or exception text (those go to the log).
The one address a check tells, the Redis master the sentinels name (REDIS_SENTINELS), is shown
only to trusted callers (`readiness(trusted=True)`: loopback or the metrics token, basic/ops/views.py).

django-health-check was considered: it runs its checks in a thread pool but waits for every one
of them without a deadline, so a hanging Redis hangs the probe, and its messages carry exception
text; these few functions are smaller than configuring it around that.
"""
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import redis
from celery.app.control import Control
from django.conf import settings
from django.db import connections
from kombu import Connection
from kombu.pidbox import Mailbox
from redis.backoff import NoBackoff
from redis.retry import Retry

from basic.core import redis_target

logger = logging.getLogger(__name__)


class CheckFailed(Exception):
    """A check's answer: `str(exc)` is the public reason."""


def check_database(timeout: float) -> None:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except Exception as exc:
        logger.warning("readiness: database check failed: %r", exc)
        raise CheckFailed("The database is unreachable.") from exc
    finally:
        connections.close_all()  # this thread's connections only


def check_redis(timeout: float) -> dict[str, str] | None:
    """PING Redis; with sentinels, the master they name now, which must say it is the master
    (a demoted one still answers PING). Returns {"master": "host:port"} with sentinels."""
    sentinels = settings.REDIS_SENTINELS
    options = {"socket_connect_timeout": timeout, "socket_timeout": timeout, "retry": Retry(NoBackoff(), 0)}
    master = None
    try:
        if sentinels is None:
            client = redis_target.sync_client(settings.REDIS_URL, None, **options)
        else:
            master = redis_target.master_address(sentinels, timeout)
            host, _, port = master.rpartition(":")
            client = redis_target.client_at(settings.REDIS_URL, host.strip("[]"), int(port), **options)
    except redis.RedisError as exc:
        logger.warning("readiness: no Redis master found: %r", exc)
        raise CheckFailed("The sentinels name no Redis master.") from exc
    try:
        if master is None:
            client.ping()
            return None
        if client.role()[0] not in (b"master", "master"):
            logger.warning("readiness: %s, named by the sentinels, is not a master", master)
            raise CheckFailed("The Redis master is changing over.")
        return {"master": master}
    except CheckFailed:
        raise
    except redis.TimeoutError as exc:
        logger.warning("readiness: Redis did not answer: %r", exc)
        raise CheckFailed("Redis did not answer in time.") from exc
    except Exception as exc:
        logger.warning("readiness: Redis check failed: %r", exc)
        raise CheckFailed("Redis is unreachable.") from exc
    finally:
        client.close()


class _NoRetryConnection(Connection):
    """Gives up instead of retrying: kombu retries a publish forever by default, which would
    leave the check's thread spinning for as long as the broker is down."""

    def ensure(self, obj: Any, fun: Any, errback: Any = None, max_retries: Any = None, **kwargs: Any) -> Any:
        return super().ensure(obj, fun, errback, max_retries=0, **kwargs)


class _OwnConnectionMailbox(Mailbox):
    """Publishes on the connection it is bound to (ours), not from the app's producer pool."""

    @property
    def producer_pool(self) -> None:
        return None


class _PingControl(Control):
    """A remote-control client of its own for each check, so replies that arrive after the first
    pong (limit=1) never pile up in the app's shared mailbox."""

    Mailbox = _OwnConnectionMailbox


def check_workers(timeout: float) -> None:
    from app.celery import app

    deadline = time.monotonic() + timeout
    # polling_interval: kombu waits for replies with BRPOP in steps of this (1 s by default,
    # which would overrun the deadline by up to a second).
    options = {**app.conf.broker_transport_options, "max_retries": 0, "socket_connect_timeout": timeout,
               "socket_timeout": timeout, "polling_interval": 0.1}
    connection = _NoRetryConnection(app.conf.broker_url, connect_timeout=timeout, transport_options=options)
    try:
        try:
            connection.ensure_connection(max_retries=0, timeout=timeout)
        except Exception as exc:
            logger.warning("readiness: broker unreachable: %r", exc)
            raise CheckFailed("The job queue (broker) is unreachable.") from exc
        started = time.monotonic()
        try:
            # limit=1: done at the first pong instead of waiting out the timeout for more. A
            # little time is kept back, so "nobody answered" is told rather than the deadline.
            wait = max(0.1, deadline - started - 0.25)
            replies = _PingControl(app).ping(timeout=wait, limit=1, connection=connection)
        except Exception as exc:
            logger.warning("readiness: worker ping failed: %r", exc)
            raise CheckFailed("The job queue (broker) is unreachable.") from exc
        if not replies:
            logger.warning("readiness: no worker answered a ping within %.1fs", time.monotonic() - started)
            raise CheckFailed("No worker answered a ping.")
    finally:
        connection.release()


# A check raises CheckFailed, or returns None or details to add to its result (PRIVATE_DETAILS
# only for trusted callers).
Check = Callable[[float], dict[str, Any] | None]
PRIVATE_DETAILS = ("master",)

CHECKS: dict[str, Check] = {
    "database": check_database,
    "redis": check_redis,
    "workers": check_workers,
}


def run_checks(checks: dict[str, Check], timeout: float) -> dict[str, dict[str, Any]]:
    """Run every check at once in a daemon thread; a check still running at the deadline is down.
    Returns {name: {"ok": bool, "ms": float} (+ "error": reason when not ok)}."""
    results: dict[str, dict[str, Any]] = {}
    lock = threading.Lock()

    def run(name: str, check: Check) -> None:
        started = time.perf_counter()
        try:
            result: dict[str, Any] = {"ok": True, **(check(timeout) or {})}
        except CheckFailed as exc:
            result = {"ok": False, "error": str(exc)}
        except Exception:  # a bug in a check must still give an answer
            logger.exception("readiness: check %s crashed", name)
            result = {"ok": False, "error": f"The {name} check failed; the server log has the details."}
        result["ms"] = round((time.perf_counter() - started) * 1000, 1)
        with lock:
            results[name] = result

    deadline = time.monotonic() + timeout + 0.1
    threads = [threading.Thread(target=run, args=(name, check), name=f"readyz-{name}", daemon=True)
               for name, check in checks.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        answered = dict(results)
    for name in checks:
        if name not in answered:
            logger.warning("readiness: check %s did not answer within %.1fs", name, timeout)
            answered[name] = {"ok": False, "error": f"No answer within {timeout:g} s.",
                              "ms": round(timeout * 1000, 1)}
    return {name: answered[name] for name in checks}


def liveness() -> dict[str, str]:
    """The process is up and serving: no dependency is checked (that is readiness)."""
    return {"status": "ok"}


def readiness(trusted: bool = False) -> tuple[bool, dict[str, Any]]:
    """(ready, body): body is {"status": "ok" | "unavailable", "checks": {...}}; addresses (the Redis
    master's) only for a `trusted` caller."""
    checks = run_checks(CHECKS, settings.READYZ_TIMEOUT)
    if not trusted:
        checks = {name: {key: value for key, value in result.items() if key not in PRIVATE_DETAILS}
                  for name, result in checks.items()}
    ready = all(check["ok"] for check in checks.values())
    return ready, {"status": "ok" if ready else "unavailable", "checks": checks}
