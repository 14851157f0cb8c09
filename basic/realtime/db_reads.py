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
from typing import Any

from basic.core.kept_threads import OnKeptThread, kept_threads

THREADS = 4  # more only add GIL contention with the event loop on a busy web process
_executor = kept_threads(THREADS, "socket-db")


def database_read(func: Callable[..., Any]) -> OnKeptThread:
    """`func` (a read that uses the database) as an awaitable that runs off the sync-view thread."""
    return OnKeptThread(func, _executor)


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
