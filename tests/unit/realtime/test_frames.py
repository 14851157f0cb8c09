"""The frame check (basic/realtime/frames.py) that chat messages are held to: it passes what
matches a TypedDict and refuses a missing, extra or mistyped key. (Job events and snapshots have
their own schemas and tests: basic/jobs/event_schemas.py, tests/unit/test_event_schemas.py.)"""
from typing import Any, Literal, NotRequired, TypedDict

import pytest

from basic.realtime import chat
from basic.realtime.frames import FrameMismatch, check_frame


class Sample(TypedDict):
    type: Literal["a", "b"]
    count: int
    name: str | None
    data: Any
    extra: NotRequired[str]


GOOD = {"type": "a", "count": 1, "name": None, "data": [1]}


@pytest.mark.parametrize("frame", [GOOD, {**GOOD, "type": "b", "name": "n", "extra": "x"},
                                   {**GOOD, "_encoded": {}, "_stream": "s"}])  # "_" keys are the server's
def test_matching_frames_pass(frame):
    check_frame(frame, Sample)


@pytest.mark.parametrize("frame", [
    {key: value for key, value in GOOD.items() if key != "count"},  # a required key missing
    {**GOOD, "surprise": 1},  # a key the schema does not have
    {**GOOD, "count": "1"},  # wrong type
    {**GOOD, "name": 3},  # neither str nor None
    {**GOOD, "type": "c"},  # not one of the literals
    {**GOOD, "extra": 5},
])
def test_mismatching_frames_raise(frame):
    with pytest.raises(FrameMismatch):
        check_frame(frame, Sample)


def test_the_chat_schemas_hold_what_a_room_and_the_seed_room_send():
    message = {"type": "chat.message", "room": "r", "message": "m", "sender": "s", "ts": "t"}
    check_frame(message, chat.ChatMessage)
    check_frame({**message, "id": "1-0", "_stream": "k"}, chat.ChatFrame)
    check_frame({"type": "chat.message", "message": "m"}, chat.SeedChatMessage)
    for broken in ({**message, "sender": None}, {**message, "type": "chat.other"}, {**message, "id": "1-0"}):
        with pytest.raises(FrameMismatch):
            check_frame(broken, chat.ChatMessage)
    with pytest.raises(FrameMismatch):
        check_frame(message, chat.ChatFrame)  # no id: not stored yet
