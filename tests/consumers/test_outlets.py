"""Which group messages go out on a socket's outlet (basic/realtime/wire.py) and which through
its consumer's handler. The rest of this directory runs every test both ways (conftest.py
`connect`); these check the outlets are really used, and set aside where they must be."""
import asyncio

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator

from basic.jobs import event_store
from basic.jobs.publish import push_job_event
from basic.models import Job

from .conftest import ORIGIN, close_all
from .loopback_outlet import WithOutlets

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def app():
    from app.asgi import application

    return WithOutlets(application)


async def open_socket(app, path: str, token: str):
    communicator = WebsocketCommunicator(app, f"{path}{'&' if '?' in path else '?'}token={token}", headers=[ORIGIN])
    connected, _ = await communicator.connect(timeout=5)
    assert connected
    return communicator


async def test_live_chat_messages_go_out_on_the_outlets(app, alice, bob):
    listeners = [await open_socket(app, "/ws/chat/outlets/", alice.token) for _ in range(3)]
    speaker = await open_socket(app, "/ws/chat/outlets/", bob.token)
    for n in range(5):
        await speaker.send_json_to({"message": f"m{n}"})
    for communicator in (*listeners, speaker):
        assert [(await communicator.receive_json_from(5))["message"] for _ in range(5)] == [f"m{n}" for n in range(5)]
    assert app.frames_through_outlets == 4 * 5
    await close_all(*listeners, speaker)


async def test_a_resuming_chat_socket_takes_live_messages_through_its_handler(app, alice, bob):
    """It skips the ids it was sent from the history, which only its handler knows."""
    speaker = await open_socket(app, "/ws/chat/resuming/", bob.token)
    await speaker.send_json_to({"message": "seen"})
    last = (await speaker.receive_json_from(5))["id"]
    await speaker.send_json_to({"message": "missed"})
    await speaker.receive_json_from(5)
    through_outlets = app.frames_through_outlets
    resumed = await open_socket(app, f"/ws/chat/resuming/?after={last}", alice.token)
    assert (await resumed.receive_json_from(5))["message"] == "missed"
    await speaker.send_json_to({"message": "live"})
    assert (await resumed.receive_json_from(5))["message"] == "live"
    await speaker.receive_json_from(5)
    assert app.frames_through_outlets == through_outlets + 1  # the speaker's copy only
    await close_all(speaker, resumed)


async def test_a_resumed_chat_socket_opens_its_outlet_once_no_replayed_copy_can_come(app, alice, bob, monkeypatch):
    """After a restart every chat socket resumes: they must not keep the slower path for good."""
    from basic.realtime import chat_history

    speaker = await open_socket(app, "/ws/chat/resumed/", bob.token)
    await speaker.send_json_to({"message": "seen"})
    last = (await speaker.receive_json_from(5))["id"]
    await speaker.send_json_to({"message": "missed"})
    await speaker.receive_json_from(5)
    resumed = await open_socket(app, f"/ws/chat/resumed/?after={last}", alice.token)
    assert (await resumed.receive_json_from(5))["message"] == "missed"
    monkeypatch.setattr(chat_history, "REPLAY_SLACK_MS", 0)  # as if the slack had passed
    through_outlets = app.frames_through_outlets
    await speaker.send_json_to({"message": "stored after the replay"})  # through the handler: then forgotten
    for communicator in (resumed, speaker):
        assert (await communicator.receive_json_from(5))["message"] == "stored after the replay"
    assert app.frames_through_outlets == through_outlets + 1
    await speaker.send_json_to({"message": "on the outlet"})
    for communicator in (resumed, speaker):
        assert (await communicator.receive_json_from(5))["message"] == "on the outlet"
    assert app.frames_through_outlets == through_outlets + 3
    await close_all(speaker, resumed)


def push(job: Job, kind: str = "job.progress"):
    return asyncio.to_thread(push_job_event, kind, job_id=job.id, owner_id=job.owner_id, status="running",
                             progress=10)


async def test_job_events_in_order_go_out_on_the_outlet_and_a_gap_is_filled_by_the_handler(app, alice):
    job = await database_sync_to_async(Job.objects.create)(kind="students_by_age", owner=alice)
    watcher = await open_socket(app, f"/ws/jobs/{job.id}/", alice.token)
    assert (await watcher.receive_json_from(5))["type"] == "job.snapshot"
    before = app.frames_through_outlets
    await push(job)
    assert (await watcher.receive_json_from(5))["seq"] == 1
    assert app.frames_through_outlets == before + 1
    # Stored but never published: the next live event shows a gap, which the handler reads first.
    await asyncio.to_thread(event_store.append_event, job.id, {"type": "job.progress", "job": str(job.id)})
    await push(job, "job.done")
    assert [(await watcher.receive_json_from(5))["seq"] for _ in range(2)] == [2, 3]
    assert app.frames_through_outlets == before + 1
    assert await watcher.receive_nothing(0.3)
    await close_all(watcher)


async def test_a_socket_closed_by_the_server_gets_nothing_more_on_its_outlet(app, alice, bob, settings):
    settings.CHAT_RATE_PER_SECOND, settings.CHAT_RATE_BURST, settings.CHAT_RATE_STRIKES = 0.001, 2, 3
    listener = await open_socket(app, "/ws/chat/closing/", alice.token)
    speaker = await open_socket(app, "/ws/chat/closing/", bob.token)
    await listener.send_to(text_data="x" * 100_000)  # over the frame limit: an error frame, still open
    assert (await listener.receive_json_from(5))["code"] == "too_large"
    for _ in range(6):  # past the chat rate limit's strikes: closed with 4429
        await listener.send_json_to({"message": "flood"})
    while (await listener.receive_output(5))["type"] != "websocket.close":
        pass
    assert [(await speaker.receive_json_from(5))["message"] for _ in range(2)] == ["flood"] * 2  # the burst
    through_outlets = app.frames_through_outlets
    await speaker.send_json_to({"message": "after the close"})
    assert (await speaker.receive_json_from(5))["message"] == "after the close"
    assert app.frames_through_outlets == through_outlets + 1  # none to the closed socket
    await close_all(speaker)
