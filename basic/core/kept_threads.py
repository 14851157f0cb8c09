"""Sync Django code run on threads a web process keeps, each keeping its SQLite connection.

Django's ASGI handler runs a request's sync code on a thread made for that request, and Channels'
`database_sync_to_async` on the one thread-sensitive thread. A new thread opens a new database
connection, and on SQLite that costs about 0.65 ms of CPU per request (every new connection parses
the schema again): as much as DRF's token lookup. So REST requests (app/asgi.py) and sockets'
database reads (basic/realtime/db_reads.py) run on pools of threads that live as long as the
process, and on SQLite each thread keeps its connection. A SQLite connection holds nothing on a
server; one that failed or became unusable is closed and the next call opens another. On PostgreSQL
connections come from the web process's pool and go back to it after each call, as Django does at
the end of a request (CONN_MAX_AGE=0).
"""
import asyncio
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync, ThreadSensitiveContext


def tidy_connection(failed: bool = False) -> None:
    """Before and after each call on a kept thread: PostgreSQL's connection goes back to the pool;
    SQLite's is kept unless the call failed or it is no longer usable. With DEBUG on, the queries it
    logged are forgotten, as Django's request_started does (that runs on another thread here)."""
    from django.db import close_old_connections, connection, reset_queries

    reset_queries()
    if connection.vendor != "sqlite":
        close_old_connections()
    elif failed or (connection.connection is not None and not connection.is_usable()):
        connection.close()


class OnKeptThread(SyncToAsync):
    """`func` as an awaitable that runs on one of `executor`'s threads, tidying its connection."""

    def __init__(self, func: Callable[..., Any], executor: ThreadPoolExecutor) -> None:
        super().__init__(func, thread_sensitive=False, executor=executor)

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        tidy_connection()
        try:
            result = super().thread_handler(loop, *args, **kwargs)
        except BaseException:
            tidy_connection(failed=True)
            raise
        tidy_connection()
        return result


def kept_threads(count: int, name: str) -> ThreadPoolExecutor:
    """A pool of at most `count` threads, made as they are first needed and kept."""
    return ThreadPoolExecutor(max_workers=count, thread_name_prefix=name)


def _closing_its_connections(func: Callable[..., Any]) -> Callable[..., Any]:
    """`func`, then its thread's database connections closed: what Django's request_finished did on
    a request's own thread. That signal now runs on another thread (app/asgi.py), and a thread that
    ends with its PostgreSQL connection checked out never gives it back to the pool: 20 such
    requests emptied it, and the next waited 10 s for a 503 (the CI's PostgreSQL pass)."""
    def call(*args: Any, **kwargs: Any) -> Any:
        from django.db import connections

        try:
            return func(*args, **kwargs)
        finally:
            connections.close_all()
    return call


class KeptThreadsFirst:
    """A sync callable (Django's middleware chain) as an awaitable that runs on one of `count` kept
    threads. When all are busy, a call waits for one as long as they keep finishing calls, and runs
    on a thread made for it, as Django would, once none has finished one for STALL_SECONDS: a slow
    database holding all of them must not hold up a health probe for long, and a burst of quick
    requests queues for a kept thread instead of paying a new thread and database connection each
    (4% of the web process's CPU per job start at 50 REST clients, when such calls ran at once on
    a thread of their own: py-spy, issue 19)."""

    STALL_SECONDS = 0.2

    def __init__(self, func: Callable[..., Any], count: int, name: str) -> None:
        from asgiref.sync import sync_to_async

        self._kept = OnKeptThread(func, kept_threads(count, name)) if count else None
        self._fresh = sync_to_async(_closing_its_connections(func), thread_sensitive=True)
        self.free = count  # these four only touched on the event loop
        self._waiters: deque[asyncio.Future] = deque()
        self._finished_at = float("-inf")  # the loop's time when a kept call last finished
        self.fresh_calls = 0

    async def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if self._kept is not None and self.free > 0:
            self.free -= 1
        elif self._kept is None or not await self._kept_thread_freed():  # else handed one by a finished call
            self.fresh_calls += 1
            async with ThreadSensitiveContext():  # a thread for this call alone, as Django gives a request
                return await self._fresh(*args, **kwargs)
        try:
            return await self._kept(*args, **kwargs)
        finally:
            self._finished_at = asyncio.get_running_loop().time()
            self._hand_on()

    def _hand_on(self) -> None:
        """A kept thread is free: to the longest waiting call, else back to the free count."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.free += 1

    async def _kept_thread_freed(self) -> bool:
        """Wait for a kept thread handed on by a call that finished: True once one is, False once
        none has finished for STALL_SECONDS since the later of the last finish and this wait's start."""
        loop = asyncio.get_running_loop()
        waiter = loop.create_future()
        self._waiters.append(waiter)
        began = loop.time()
        try:
            while True:
                remaining = max(self._finished_at, began) + self.STALL_SECONDS - loop.time()
                if remaining <= 0:
                    break
                try:
                    await asyncio.wait_for(asyncio.shield(waiter), remaining)
                    return True
                except TimeoutError:
                    continue  # a call finished meanwhile (handing its thread to an earlier waiter)?
        except asyncio.CancelledError:
            if waiter.done():  # handed a thread just as this request was cancelled: pass it on
                self._hand_on()
            waiter.cancel()
            raise
        if waiter.done():
            return True
        waiter.cancel()  # skipped by _hand_on from now on
        return False
