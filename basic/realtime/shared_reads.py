"""Reads that every socket watching the same job in one server process would otherwise repeat.

A job socket re-checks the job's history and row every few seconds while it waits for the end
(docs/design.md, "Guarantees"). With a thousand sockets on one job that was a thousand Redis
reads and, for a quiet job, a thousand database queries per round: about half a core for sockets
that do nothing. Here concurrent and recent identical reads share one result for `ttl` seconds.
"""
import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class SharedReads:
    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[int, Hashable], tuple[float, asyncio.Future]] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        loop = asyncio.get_running_loop()
        now = loop.time()
        slot = (id(loop), key)
        entry = self._entries.get(slot)
        if entry is None or entry[0] <= now or (entry[1].done() and entry[1].exception() is not None):
            if len(self._entries) > 10_000:  # drop expired entries now and then
                self._entries = {k: v for k, v in self._entries.items() if v[0] > now}
            entry = (now + self.ttl, asyncio.ensure_future(read()))
            self._entries[slot] = entry
        return await asyncio.shield(entry[1])
