"""Database reads for sockets, run on a thread pool instead of the one thread every sync view runs on.

Channels' `database_sync_to_async` is thread-sensitive: every socket's database read in a process
waits for that single thread, behind whatever REST view holds it (docs/design.md trap 11). A storm
of sockets opening then queues behind REST calls, and REST calls behind the storm. Reads made here
run concurrently on asgiref's pool; stale connections are closed before and after, as Channels does.
"""
from collections.abc import Callable
from typing import Any

from asgiref.sync import SyncToAsync


class DatabaseRead(SyncToAsync):
    def __init__(self, func: Callable[..., Any]) -> None:
        super().__init__(func, thread_sensitive=False)

    def thread_handler(self, loop: Any, *args: Any, **kwargs: Any) -> Any:
        from django.db import close_old_connections

        close_old_connections()
        try:
            return super().thread_handler(loop, *args, **kwargs)
        finally:
            close_old_connections()


def database_read(func: Callable[..., Any]) -> DatabaseRead:
    """`func` (a read that uses the database) as an awaitable that runs off the sync-view thread."""
    return DatabaseRead(func)
