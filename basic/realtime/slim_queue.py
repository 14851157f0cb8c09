"""The queue every socket has two of, at a fraction of asyncio.Queue's memory.

Each socket had two asyncio.Queue objects: Daphne's input queue (what the client sends) and the
channel layer's queue for the consumer's own channel (direct messages; group messages skip it).
An asyncio.Queue is three deques and an Event with a deque of its own, about 3 KiB even when
empty, so 6 of an idle socket's ~37 KiB of Python objects were two empty queues
(docs/benchmarks.md, memory). This one holds a deque only while items wait and a future only
while a reader waits.
"""
import asyncio
from collections import deque
from typing import Any


class SlimQueue:
    """An unbounded FIFO with the part of asyncio.Queue's interface that Daphne and the channel
    layer use: `put_nowait` and `await get()`. Several readers may wait; each item goes to one."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        self._waiters: asyncio.Future | list[asyncio.Future] | None = None  # one, or several in order

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._wake_one()

    async def get(self) -> Any:
        while not self._items:
            waiter = asyncio.get_running_loop().create_future()
            self._add_waiter(waiter)
            try:
                await waiter
            except BaseException:
                self._remove_waiter(waiter)
                if waiter.done() and not waiter.cancelled() and self._items:
                    self._wake_one()  # woken, then cancelled before it ran: the item is someone else's
                raise
        item = self._items.popleft()
        if not self._items:
            self._items = None
        return item

    def qsize(self) -> int:
        return len(self._items) if self._items else 0

    def empty(self) -> bool:
        return not self._items

    def _add_waiter(self, waiter: asyncio.Future) -> None:
        if self._waiters is None:
            self._waiters = waiter
        elif isinstance(self._waiters, list):
            self._waiters.append(waiter)
        else:
            self._waiters = [self._waiters, waiter]

    def _remove_waiter(self, waiter: asyncio.Future) -> None:
        if self._waiters is waiter:
            self._waiters = None
        elif isinstance(self._waiters, list) and waiter in self._waiters:
            self._waiters.remove(waiter)
            if not self._waiters:
                self._waiters = None

    def _wake_one(self) -> None:
        while self._waiters is not None:
            if isinstance(self._waiters, list):
                waiter = self._waiters.pop(0)
                if not self._waiters:
                    self._waiters = None
            else:
                waiter, self._waiters = self._waiters, None
            if not waiter.done():
                waiter.set_result(None)
                return
