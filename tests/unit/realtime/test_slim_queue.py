"""SlimQueue: the two queues each socket has (Daphne's input, the layer's channel), kept small."""
import asyncio

import pytest

from basic.realtime.slim_queue import SlimQueue

pytestmark = pytest.mark.asyncio


async def test_items_come_out_in_order_whether_put_before_or_while_a_reader_waits():
    queue = SlimQueue()
    queue.put_nowait(1)
    queue.put_nowait(2)
    assert [await queue.get(), await queue.get()] == [1, 2]
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait(3)
    assert await reader == 3
    assert queue.empty() and queue.qsize() == 0


async def test_several_readers_each_get_one_item():
    queue = SlimQueue()
    readers = [asyncio.ensure_future(queue.get()) for _ in range(3)]
    await asyncio.sleep(0)
    for item in "abc":
        queue.put_nowait(item)
    assert sorted(await asyncio.gather(*readers)) == ["a", "b", "c"]


async def test_a_reader_cancelled_after_being_woken_passes_the_item_on():
    """Woken by a put, then cancelled before it ran: the item must reach the next reader, not
    wait in the queue with a reader asleep beside it."""
    queue = SlimQueue()
    first = asyncio.ensure_future(queue.get())
    second = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    queue.put_nowait("only")
    first.cancel()
    assert await asyncio.wait_for(second, 1) == "only"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_a_cancelled_reader_loses_nothing():
    queue = SlimQueue()
    reader = asyncio.ensure_future(queue.get())
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    queue.put_nowait("kept")
    assert await asyncio.wait_for(queue.get(), 1) == "kept"
