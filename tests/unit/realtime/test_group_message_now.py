"""A fan-out's group message is sent at once, with no coroutine, when the socket's common case
allows (`take_group_message` -> `group_message_now`); anything else goes the awaited way, and each
socket's rules (order, no repeats, resuming, held until the accept) are the same either way."""
import asyncio
import json

from basic.jobs.events import LAYER_JOB_EVENT
from basic.realtime.channel_layer import deliver
from basic.realtime.chat import LAYER_CHAT_MESSAGE, room_frame
from basic.realtime.consumers.chat import ChatConsumer, SeedChatConsumer
from basic.realtime.consumers.feed import UserEventsConsumer
from basic.realtime.consumers.jobs import JobEventsConsumer


class DirectSend:
    """The server's two paths: `text_now` (direct) and the awaited send, which must not be taken."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    async def __call__(self, message):
        raise AssertionError(f"the awaited path was taken: {message}")

    def text_now(self, text: str) -> None:
        self.texts.append(text)


def open_socket(consumer):
    consumer._outer_send = DirectSend()
    consumer._taking_group_messages = True
    return consumer._outer_send.texts


def chat(text: str, ident: str = "1-0") -> dict:
    return {"type": LAYER_CHAT_MESSAGE, "message": text, "user": "alice", "id": ident, "_sender": "x"}


def job_event(seq: int) -> dict:
    return {"type": LAYER_JOB_EVENT, "event": {"type": "job.progress", "seq": seq, "progress": seq}}


def test_a_live_chat_message_is_sent_with_nothing_to_await():
    consumer = ChatConsumer()
    sent = open_socket(consumer)
    assert consumer.take_group_message(chat("hi")) is None
    assert [json.loads(text) for text in sent] == [room_frame(chat("hi"))]  # no server ("_") keys
    seed = SeedChatConsumer()
    seed_sent = open_socket(seed)
    assert seed.take_group_message(chat("hi")) is None
    assert seed_sent == ['{"message": "hi"}']  # the seed room's own shape


def test_a_resuming_chat_socket_goes_the_awaited_way():
    consumer = ChatConsumer()
    sent = open_socket(consumer)
    consumer._held = []  # being sent what it missed: live messages wait
    pending = consumer.take_group_message(chat("later"))
    assert pending is not None
    asyncio.run(pending)
    assert sent == [] and consumer._held == [chat("later")]
    consumer._held, consumer._replayed = None, frozenset({"1-0"})
    pending = consumer.take_group_message(chat("again", "1-0"))
    asyncio.run(pending)
    assert sent == []  # already replayed: not sent twice


def test_before_the_accept_or_after_the_close_nothing_is_sent_at_once():
    consumer = ChatConsumer()
    sent = open_socket(consumer)
    consumer._taking_group_messages = False
    pending = consumer.take_group_message(chat("early"))
    asyncio.run(pending)
    assert sent == [] and list(consumer._early) == [chat("early")]  # held for the accept
    consumer._taking_group_messages, consumer.closed = True, True
    asyncio.run(consumer.take_group_message(chat("late")))
    assert sent == []


def test_a_job_socket_sends_in_order_at_once_and_awaits_only_for_a_gap():
    async def scenario():
        consumer = JobEventsConsumer()
        sent = open_socket(consumer)
        consumer.feed, consumer.lock = consumer.new_feed(), asyncio.Lock()
        assert consumer.take_group_message(job_event(1)) is None
        assert consumer.take_group_message(job_event(1)) is None  # a repeat: nothing sent
        assert [json.loads(text)["seq"] for text in sent] == [1]
        async with consumer.lock:  # a catch-up under way: wait for it
            waits = consumer.take_group_message(job_event(2))
            assert waits is not None
            waits.close()
        gap = consumer.take_group_message(job_event(4))  # 2 and 3 missing: read them first
        assert gap is not None
        gap.close()
    asyncio.run(scenario())


def test_the_user_feed_sends_each_event_at_once():
    consumer = UserEventsConsumer()
    sent = open_socket(consumer)
    assert consumer.take_group_message(job_event(7)) is None
    assert [json.loads(text)["seq"] for text in sent] == [7]


def test_a_fast_path_that_fails_ends_the_socket_as_a_failed_handler_does():
    consumer = UserEventsConsumer()
    open_socket(consumer)
    failed = []

    async def fail():
        failed.append(True)

    consumer._fail = fail
    pending = consumer.take_group_message({"type": LAYER_JOB_EVENT})  # no event: KeyError
    asyncio.run(pending)
    assert failed == [True]


def test_deliver_awaits_only_what_is_left_to_await():
    got = []

    def at_once(message):
        got.append(("now", message["n"]))

    async def later(message):
        await asyncio.sleep(0)
        got.append(("awaited", message["n"]))

    asyncio.run(deliver([at_once, later, at_once], {"n": 1}))
    assert got == [("now", 1), ("awaited", 1), ("now", 1)]
