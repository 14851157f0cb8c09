"""Which worker processes are alive: each refreshes a short-lived key, so the recovery sweep can tell
a message held by a worker that is still there (a delayed start or a retry waiting for its time)
from one held by a worker that was killed (basic/jobs/queue_markers.py). Without it, a killed
worker's countdown messages were only noticed when their reserved markers expired, up to
JOB_RESERVED_SECONDS after the job's time.

The token is new in every process (a restarted worker with the same hostname is a different holder:
the messages the old one held died with it)."""
import logging
import os
import threading
import time
import uuid

from django.conf import settings

from basic.core.keys import worker_alive_key
from basic.core.redis_clients import sync_redis

logger = logging.getLogger(__name__)

_token: tuple[int, str] | None = None


def token() -> str:
    """This process's token (a forked child gets its own)."""
    global _token
    if _token is None or _token[0] != os.getpid():
        _token = (os.getpid(), uuid.uuid4().hex)
    return _token[1]


def refresh_interval() -> float:
    return max(0.5, settings.WORKER_ALIVE_SECONDS / 3)


def announce() -> None:
    """Say this process is alive for another WORKER_ALIVE_SECONDS."""
    sync_redis().set(worker_alive_key(token()), "1", ex=max(1, settings.WORKER_ALIVE_SECONDS))


def alive(tokens: set[str]) -> set[str]:
    """The tokens among `tokens` whose worker is alive."""
    ordered = sorted(tokens)
    if not ordered:
        return set()
    pipe = sync_redis().pipeline(transaction=False)
    for each in ordered:
        pipe.exists(worker_alive_key(each))
    return {each for each, exists in zip(ordered, pipe.execute(), strict=True) if exists}


def keep_announcing() -> None:
    """The loop each worker runs beside its tasks (a thread; a greenlet under gevent)."""
    while True:
        try:
            announce()
        except Exception as exc:  # Redis is down: say so once a round; the sweep errs on resending
            logger.warning("could not announce this worker alive: %s", exc)
        time.sleep(refresh_interval())


def start() -> None:
    """Announce now (before the first message this worker reserves), then keep announcing."""
    try:
        announce()
    except Exception as exc:
        logger.warning("could not announce this worker alive: %s", exc)
    threading.Thread(target=keep_announcing, name="worker-alive", daemon=True).start()
