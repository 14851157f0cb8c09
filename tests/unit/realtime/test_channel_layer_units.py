"""The channel layer's bookkeeping (basic/realtime/channel_layer.py): replayable group messages, and
deliveries to consumers that take their messages directly."""
import asyncio
import gc

from basic.realtime.channel_layer import ResilientPubSubChannelLayer
from basic.realtime.chat_history import REMEMBERED_IDS, REPLAY_SLACK_MS, DeliveredIds


def test_each_id_is_delivered_once_and_the_replay_starts_before_the_newest():
    delivered = DeliveredIds("stream", since_ms=0)
    assert delivered.add("5000-0") and delivered.add("5000-1") and delivered.add("4990-0")  # out of order is fine
    assert not delivered.add("5000-1")
    assert delivered.replay_start() == f"{5000 - REPLAY_SLACK_MS}-0"


def test_a_group_with_no_message_yet_replays_from_when_it_joined():
    assert DeliveredIds("stream", since_ms=10_000).replay_start() == f"{10_000 - REPLAY_SLACK_MS}-0"
    assert DeliveredIds("stream", since_ms=100).replay_start() == "0-0"


def test_forgotten_ids_count_as_delivered_so_memory_stays_bounded():
    delivered = DeliveredIds("stream", since_ms=0)
    for n in range(REMEMBERED_IDS + 10):
        assert delivered.add(f"{1000 + n}-0")
    assert len(delivered.ids) == len(delivered.recent) == REMEMBERED_IDS
    assert not delivered.add("1000-0")  # forgotten, and older than what is remembered
    assert not delivered.add("1009-0")
    assert delivered.add("999999-0")


async def test_a_direct_delivery_is_held_until_it_has_run():
    """The loop holds tasks weakly: a delivery nobody references could be collected unrun."""
    layer = ResilientPubSubChannelLayer(hosts=["redis://127.0.0.1:1"])._get_layer()  # no Redis needed
    started, release, got = asyncio.Event(), asyncio.Event(), []

    async def handler(message):
        started.set()
        await release.wait()
        got.append(message)

    layer.take_group_messages_directly("mine", handler)
    layer.hand_to_channel("mine", {"type": "layer.reconnected"})
    assert len(layer.deliveries) == 1
    gc.collect()
    await asyncio.wait_for(started.wait(), 5)
    release.set()
    await asyncio.wait_for(asyncio.gather(*layer.deliveries), 5)
    assert got == [{"type": "layer.reconnected"}]
    assert not layer.deliveries  # let go once done
