"""Database reads for sockets: on a few threads of their own instead of the one thread every sync
view runs on, on connections kept open, and shared between sockets asking the same thing at once.

- Channels' `database_sync_to_async` is thread-sensitive: every socket's database read in a process
  waits for that single thread, behind whatever REST view holds it (docs/design.md trap 11), and a
  storm of sockets opening then queues REST calls behind it too.
- With CONN_MAX_AGE=0 each read also opened and closed a SQLite connection (half of the CPU of
  2,000 job sockets opening at once, py-spy). A SQLite connection holds nothing on a server, so
  these threads keep theirs; on PostgreSQL connections come from the web process's pool and go
  back to it after each read, as Channels does.
- Sockets opened together mostly ask the same question (the same token, the same job): a read
  already in flight for the same key is awaited instead of repeated. Nothing is kept after it ends,
  so a revoked token or a deleted job is seen by the next socket.
"""
import asyncio
from collections.abc import Awaitable, Callable, Hashable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from asgiref.sync import SyncToAsync

THREADS = 4  # more only add GIL contention with the event loop on a busy web process
_executor = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="socket-db")


def _before_and_after_read(failed: bool = False) -> None:
    from django.db import close_old_connections, connection

    if connection.vendor != "sqlite":
        close_old_connections()
    elif failed or (connection.connection is not None and not connection.is_usable()):
        connection.close()


class DatabaseRead(SyncToAsync):
    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__(func, thread_sensitive=False, executor=_executor)

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        _before_and_after_read()
        try:
            result = super().thread_handler(loop, *args, **kwargs)
        except Exception:
            _before_and_after_read(failed=True)
            raise
        _before_and_after_read()
        return result


def database_read(func: Callable[..., Any]) -> DatabaseRead:
    """`func` (a read that uses the database) as an awaitable that runs off the sync-view thread."""
    return DatabaseRead(func)


class InFlight:
    """Concurrent calls with the same key share one read; the next call after it ends reads again."""

    def __init__(self) -> None:
        self._running: dict[tuple[int, Hashable], asyncio.Future] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        slot = (id(asyncio.get_running_loop()), key)
        future = self._running.get(slot)
        if future is None:
            future = self._running[slot] = asyncio.ensure_future(read())
            future.add_done_callback(lambda _done: self._running.pop(slot, None))
        return await asyncio.shield(future)
