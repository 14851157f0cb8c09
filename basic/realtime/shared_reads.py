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


class NextRead:
    """Concurrent calls with the same key share a read that begins after each of them asked.

    For reads whose result must be at least as new as something the caller did first: a socket
    joins its job's group, then reads the stream's last event and the row for its snapshot; an
    older read would miss an event published before the join. So one read runs at a time per key,
    and the callers that ask while it runs share the next one, which begins when it ends. A storm
    of sockets opening on one job then makes a few reads, not one each (issue 18: the row read was
    a fifth of the CPU of 2,000 job sockets opening at once).
    """

    def __init__(self) -> None:
        # key -> (the read running, the one the callers since it began wait for)
        self._slots: dict[tuple[int, Hashable], tuple[asyncio.Future | None, asyncio.Future | None]] = {}

    async def get(self, key: Hashable, read: Callable[[], Awaitable[Any]]) -> Any:
        slot = (id(asyncio.get_running_loop()), key)
        running, waiting = self._slots.get(slot, (None, None))
        if waiting is None:
            waiting = asyncio.ensure_future(self._after(slot, running, read))
            self._slots[slot] = (running, waiting)
        return await asyncio.shield(waiting)

    async def _after(self, slot: tuple[int, Hashable], previous: asyncio.Future | None,
                     read: Callable[[], Awaitable[Any]]) -> Any:
        if previous is not None:
            await asyncio.wait([previous])
        me = asyncio.current_task()
        self._slots[slot] = (me, None)  # begun: whoever asks from now on waits for the next read
        try:
            return await read()
        finally:
            if self._slots.get(slot) == (me, None):
                del self._slots[slot]
