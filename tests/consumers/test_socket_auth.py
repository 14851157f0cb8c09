"""Who may open which socket: tokens (query or first frame), ownership, staff, the user feed."""
import asyncio
import json

import pytest
from channels.db import database_sync_to_async

from basic.jobs.publish import push_job_event
from basic.models import Job
from basic.realtime.consumers import AuthenticatedConsumer

from .conftest import close_all, receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


@database_sync_to_async
def job_of(user) -> Job:
    return Job.objects.create(kind="students_by_age", owner=user)


def push_for(job: Job, kind: str = "job.progress"):
    return asyncio.to_thread(push_job_event, kind, job_id=job.id, owner_id=job.owner_id, status="running",
                             progress=5)


async def test_owner_by_query_token_gets_the_snapshot(connect, alice):
    job = await job_of(alice)
    communicator, _ = await connect(f"/ws/jobs/{job.id}/", token=alice.token)
    assert (await communicator.receive_json_from(5))["type"] == "job.snapshot"
    await close_all(communicator)


async def test_owner_by_first_frame_token_gets_the_snapshot(connect, alice):
    job = await job_of(alice)
    communicator, connected = await connect(f"/ws/jobs/{job.id}/")
    assert connected
    await communicator.send_json_to({"type": "auth", "token": alice.token})
    assert (await communicator.receive_json_from(5))["type"] == "job.snapshot"
    await close_all(communicator)


async def test_another_users_job_is_4404_exactly_like_a_missing_one(connect, alice, bob):
    job = await job_of(alice)
    communicator, _ = await connect(f"/ws/jobs/{job.id}/", token=bob.token)
    frames, code = await receive_until_closed(communicator)
    assert code == 4404
    assert json.loads(frames[0]["text"]) == {"type": "error", "code": "not_found", "detail": "No such job."}


async def test_staff_may_watch_anyones_job(connect, alice, charlie):
    job = await job_of(alice)
    communicator, _ = await connect(f"/ws/jobs/{job.id}/", token=charlie.token)
    assert (await communicator.receive_json_from(5))["type"] == "job.snapshot"
    await close_all(communicator)


@pytest.mark.parametrize("first_frame", [{"type": "ping"}, {"type": "auth"}, {"type": "auth", "token": "nope"},
                                         {"type": "auth", "token": 123}])
async def test_anonymous_without_valid_first_frame_closes_4401(connect, alice, first_frame):
    job = await job_of(alice)
    communicator, _ = await connect(f"/ws/jobs/{job.id}/")
    await communicator.send_json_to(first_frame)
    frames, code = await receive_until_closed(communicator)
    assert code == 4401
    assert json.loads(frames[0]["text"])["code"] == "unauthorized"


async def test_bad_query_token_closes_4401(connect, alice):
    job = await job_of(alice)
    communicator, _ = await connect(f"/ws/jobs/{job.id}/", token="forged")
    _frames, code = await receive_until_closed(communicator)
    assert code == 4401


async def test_silent_anonymous_socket_is_closed_after_the_auth_timeout(connect, alice, monkeypatch):
    monkeypatch.setattr(AuthenticatedConsumer, "AUTH_TIMEOUT", 0.2)
    communicator, _ = await connect("/ws/events/")
    _frames, code = await receive_until_closed(communicator, timeout=3)
    assert code == 4401


async def test_user_feed_carries_only_the_users_own_job_events(connect, alice, bob):
    alice_job, bob_job = await job_of(alice), await job_of(bob)
    feed, _ = await connect("/ws/events/", token=alice.token)
    await push_for(bob_job)
    await push_for(alice_job)
    await push_for(bob_job, "job.done")
    await push_for(alice_job, "job.done")
    received = [await feed.receive_json_from(5), await feed.receive_json_from(5)]
    assert [(e["job"], e["type"]) for e in received] == [(str(alice_job.id), "job.progress"),
                                                          (str(alice_job.id), "job.done")]
    assert await feed.receive_nothing(0.3)
    await close_all(feed)


@database_sync_to_async
def session_cookie_of(user) -> bytes:
    from django.conf import settings
    from django.test import Client

    browser = Client()
    browser.force_login(user)
    return f"{settings.SESSION_COOKIE_NAME}={browser.cookies[settings.SESSION_COOKIE_NAME].value}".encode()


async def test_a_browser_session_cookie_signs_the_socket_in(connect, alice, bob):
    """Browsers bring their session cookie, not a token (basic.realtime.auth.socket_auth_stack)."""
    from .conftest import ORIGIN

    job = await job_of(alice)
    cookie = (b"cookie", await session_cookie_of(alice))
    communicator, _ = await connect(f"/ws/jobs/{job.id}/", headers=[ORIGIN, cookie])
    assert (await communicator.receive_json_from(5))["type"] == "job.snapshot"
    await close_all(communicator)
    stranger, _ = await connect(f"/ws/jobs/{job.id}/", headers=[ORIGIN, (b"cookie", await session_cookie_of(bob))])
    assert (await receive_until_closed(stranger))[1] == 4404


# How a socket whose user lookup failed is refused: (status, close code, reason code, traceback logged).
LOOKUP_REFUSALS = {"outage": (503, 1013, "unavailable", False), "bad statement": (500, 1011, "internal_error", True)}


@pytest.mark.parametrize("failure", list(LOOKUP_REFUSALS))
@pytest.mark.parametrize("credentials", ["token", "session cookie"])
@pytest.mark.parametrize("denial_extension", [True, False])
async def test_a_socket_whose_user_cannot_be_looked_up_in_an_outage_is_refused_with_a_reason(
        alice, monkeypatch, caplog, failure, credentials, denial_extension):
    """The chaos soak's PostgreSQL restart: the token lookup's OperationalError escaped the auth
    middleware to Daphne ("Exception inside application", an HTTP 500 with no reason). Now a 503
    with the JSON reason and Retry-After before the upgrade (or, on a server without ASGI's denial
    responses, the reason and close 1013). SQLite raises a missed migration's "no such column" as
    OperationalError too, but that is a bug: a 500 (or 1011) with its traceback logged, not "come
    back in 5 s", which would only repeat it."""
    from channels.testing import WebsocketCommunicator
    from django.db import OperationalError

    from app.asgi import application
    from basic.realtime import auth
    from tests.database_errors import a_bad_statement

    from .conftest import ORIGIN

    status, close_code, reason, traceback = LOOKUP_REFUSALS[failure]
    job = await job_of(alice)

    def lookup_fails(*args):
        if failure == "bad statement":
            raise a_bad_statement()
        raise OperationalError("terminating connection due to administrator command")

    headers = [ORIGIN]
    path = f"/ws/jobs/{job.id}/"
    if credentials == "token":
        path += f"?token={alice.token}"
        monkeypatch.setattr(auth, "_read_token_user", database_sync_to_async(lookup_fails))
    else:
        headers.append((b"cookie", await session_cookie_of(alice)))
        monkeypatch.setattr(auth, "_read_session_user", database_sync_to_async(lookup_fails))
    communicator = WebsocketCommunicator(application, path, headers=headers)
    if denial_extension:
        communicator.scope["extensions"] = {"websocket.http.response": {}}
    await communicator.send_input({"type": "websocket.connect"})
    first = await communicator.receive_output(5)
    if denial_extension:
        assert first["type"] == "websocket.http.response.start" and first["status"] == status
        assert dict(first["headers"]).get(b"retry-after") == (None if traceback else b"5")  # a bug: no "come back"
        body = await communicator.receive_output(5)
        assert json.loads(body["body"])["code"] == reason
    else:
        assert first["type"] == "websocket.accept"
        assert json.loads((await communicator.receive_output(5))["text"])["code"] == reason
        assert (await communicator.receive_output(5)) == {"type": "websocket.close", "code": close_code}
    await communicator.wait(5)  # the application returned: nothing crashed
    logged = [record for record in caplog.records if "socket refused" in record.getMessage()]
    assert [record.exc_info is not None for record in logged] == [traceback]
    assert ("could not be looked up" in caplog.text) != traceback and "Exception inside" not in caplog.text
