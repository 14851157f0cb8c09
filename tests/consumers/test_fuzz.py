"""Thousands of random frames at each consumer; afterwards it must still serve a normal client.

No frame may crash a consumer (close 1011) or hit the catch-all `internal_error` reply. The frames
that broke the JSON decoding itself (HOSTILE_TEXTS) also go to every route, anonymous included.
"""
import asyncio
import json
import random

import pytest
from channels.db import database_sync_to_async

from basic.jobs.publish import push_job_event
from basic.models import Job

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)

FRAMES = 2500
TYPES = ["resume", "ping", "auth", "chat.message", "job.event", "websocket.close", "", None, 1, [], {}]


def random_value(rng: random.Random, depth: int = 0):
    pick = rng.randrange(9 if depth < 3 else 6)
    if pick == 0:
        return None
    if pick == 1:
        return rng.choice([True, False])
    if pick == 2:
        return rng.choice([0, -1, 1, 2**63, -(2**70), rng.randint(-10**6, 10**6)])
    if pick == 3:
        return rng.choice([0.5, -1e308, 1e308, 3.0])
    if pick in (4, 5):
        alphabet = "ab{}[]\":\\\u0000é✓\U0001F600 \n"
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 1, 5, 100, 5000])))
    if pick in (6, 7):
        return {rng.choice(["type", "after", "message", "token", "x", ""]): random_value(rng, depth + 1)
                for _ in range(rng.randrange(4))}
    return [random_value(rng, depth + 1) for _ in range(rng.randrange(4))]


# Frames that broke the JSON decoding itself (issue 22): each crashed every route with close 1011.
HOSTILE_TEXTS = [
    "[" * 3000,  # RecursionError in the C parser
    "{\"a\":" * 800,
    "[" * 900 + "]" * 900,  # parses, nests too deep for anything that walks it afterwards
    '{"type": "ping", "message": "\\ud800"}',  # a lone surrogate, escaped
    '{"type": "resume", "after": 1, "token": "\\udfff\\ud800"}',
    '{"\\udc00": "key"}',
    '{"message": "\ud800"}',  # a lone surrogate in the text itself (a str no real socket delivers)
    "\udfff",
    '{"type": "resume", "after": NaN}',
    '{"type": "resume", "after": 1e999}',
    '{"type": "resume", "after": ' + "9" * 4000 + "}",
    '{"message": "\\u0000"}',
]


def random_frame(rng: random.Random) -> dict:
    kind = rng.randrange(7)
    if kind == 6:
        return {"text_data": rng.choice(HOSTILE_TEXTS)}
    if kind == 0:
        return {"bytes_data": rng.randbytes(rng.choice([1, 10, 5000]))}
    if kind == 1:
        return {"text_data": "".join(chr(rng.randrange(32, 0x2FFF)) for _ in range(rng.randrange(1, 200)))}
    if kind == 2:
        return {"text_data": json.dumps(random_value(rng))}
    frame = {"type": rng.choice(TYPES)}
    for key in rng.sample(["after", "message", "token", "room"], rng.randrange(3)):
        frame[key] = random_value(rng)
    if kind == 3 and frame["type"] == "resume":
        frame["after"] = rng.choice([0, 1, 5, -1, "3", "x", 10**30])
    return {"text_data": json.dumps(frame)}


async def fuzz(communicator, rng: random.Random) -> list[dict]:
    for _ in range(FRAMES):
        await communicator.send_to(**random_frame(rng))
    replies = []
    while not await communicator.receive_nothing(0.3):
        message = await communicator.receive_output(1)
        assert message["type"] != "websocket.close" or message.get("code", 1000) >= 4000, message
        if message["type"] == "websocket.close":
            break
        replies.append(json.loads(message["text"]))
    assert not [r for r in replies if r.get("code") == "internal_error"]
    return replies


@pytest.fixture
def rng():
    seed = random.randrange(10**9)
    print(f"fuzz seed {seed}")
    return random.Random(seed)


async def test_fuzzed_job_socket_then_a_normal_client_is_served(connect, alice, rng):
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    fuzzed, _ = await connect(f"/ws/jobs/{job.id}/", token=alice.token)
    await fuzz(fuzzed, rng)
    normal, _ = await connect(f"/ws/jobs/{job.id}/", token=alice.token)
    assert (await normal.receive_json_from(5))["type"] == "job.snapshot"
    await asyncio.to_thread(push_job_event, "job.done", job_id=job.id, owner_id=alice.id, status="done",
                            progress=100)
    assert (await normal.receive_json_from(5))["type"] == "job.done"
    await close_all(fuzzed, normal)


async def test_fuzzed_anonymous_job_socket_is_closed_4401_not_crashed(connect, alice, rng):
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    for _ in range(20):
        communicator, _ = await connect(f"/ws/jobs/{job.id}/")
        await communicator.send_to(**random_frame(rng))
        while True:
            message = await communicator.receive_output(5)
            if message["type"] == "websocket.close":
                assert message["code"] == 4401
                break
            assert json.loads(message["text"])["code"] == "unauthorized"


async def test_fuzzed_event_feed_then_a_normal_client_is_served(connect, alice, rng):
    fuzzed, _ = await connect("/ws/events/", token=alice.token)
    await fuzz(fuzzed, rng)
    normal, _ = await connect("/ws/events/", token=alice.token)
    await normal.send_json_to({"type": "ping"})
    assert await normal.receive_json_from(5) == {"type": "pong"}
    await close_all(fuzzed, normal)


@pytest.mark.parametrize("path", ["/ws/chat/fuzz/", "/chat/"])
async def test_fuzzed_chat_then_a_normal_client_is_served(connect, alice, rng, settings, path):
    settings.CHAT_RATE_PER_SECOND = 10**6  # fuzz the message path, not the rate limiter
    fuzzed, _ = await connect(path, token=alice.token)
    await fuzz(fuzzed, rng)
    first, _ = await connect(path, token=alice.token)
    second, _ = await connect(path, token=alice.token)
    await first.send_json_to({"message": "still fine"})
    assert (await second.receive_json_from(5))["message"] == "still fine"
    await close_all(fuzzed, first, second)


HOSTILE_REFUSALS = {"too_deep", "invalid_text", "invalid_json", "too_large", "invalid_message", "unknown_type",
                    "invalid_after"}


@pytest.fixture
async def every_route(alice, settings):
    """(path, token) for every socket route, signed in and anonymous."""
    settings.CHAT_ALLOW_ANONYMOUS = True
    settings.CHAT_RATE_PER_SECOND = 10**6
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    signed_in = [f"/ws/jobs/{job.id}/", "/ws/events/", "/ws/chat/hostile/", "/chat/"]
    return [*((path, alice.token) for path in signed_in), ("/chat/", None), ("/ws/chat/hostile/", None)]


@pytest.mark.parametrize("text", HOSTILE_TEXTS)
async def test_every_route_answers_a_hostile_frame_with_an_error_frame_and_stays_open(connect, every_route, text):
    for path, token in every_route:
        communicator, _ = await connect(path, token=token)
        await communicator.send_to(text_data=text)
        replies = []
        while not await communicator.receive_nothing(0.2):
            message = await communicator.receive_output(1)
            assert message["type"] == "websocket.send", (path, token, message)  # no close, 1011 or other
            replies.append(json.loads(message["text"]))
        errors = [reply for reply in replies if reply.get("type") == "error"]
        assert all(error["code"] in HOSTILE_REFUSALS for error in errors), (path, errors)
        await communicator.send_json_to({"type": "ping", "message": "still here"})  # and it still serves
        reply = await communicator.receive_json_from(5)
        assert reply in ({"type": "pong"}, {"message": "still here"}) or reply.get("message") == "still here", reply
        await close_all(communicator)


@pytest.mark.parametrize("path", ["/ws/events/", "/ws/jobs/{job}/"])
@pytest.mark.parametrize("text", HOSTILE_TEXTS)
async def test_a_hostile_first_frame_on_a_socket_awaiting_sign_in_is_a_4401(connect, alice, path, text):
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    communicator, _ = await connect(path.format(job=job.id))
    await communicator.send_to(text_data=text)
    frames, code = await receive_until_closed(communicator, 5)
    assert code == 4401, (text[:40], code)
    assert json.loads(frames[-1]["text"])["code"] == "unauthorized"


async def test_a_hostile_frame_to_an_unknown_path_changes_nothing(connect):
    communicator, _ = await connect("/ws/nowhere/")
    frames, code = await receive_until_closed(communicator, 5)
    assert code == 4404
    await communicator.send_to(text_data="[" * 3000)  # after the close: ignored, no crash
    assert await communicator.receive_nothing(0.2)
