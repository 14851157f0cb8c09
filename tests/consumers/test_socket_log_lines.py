"""One log line when a socket opens and one when it closes: route, user, close code, duration
(JSON with LOG_FORMAT=json; the formatter carries every `extra` field)."""
import logging

import pytest

from .conftest import receive_until_closed

pytestmark = pytest.mark.django_db(transaction=True)


def lines(caplog, message):
    return [record for record in caplog.records if record.name == "basic.consumers" and record.msg == message]


async def test_open_and_close_are_logged_with_route_user_code_and_duration(connect, alice, caplog):
    caplog.set_level(logging.INFO, logger="basic.consumers")
    communicator, connected = await connect("/ws/events/", token=alice.token)
    assert connected
    [opened] = lines(caplog, "socket open")
    assert (opened.route, opened.user) == ("/ws/events/", "alice")
    await communicator.disconnect(code=4000)
    [closed] = lines(caplog, "socket closed")
    assert (closed.route, closed.user, closed.close_code) == ("/ws/events/", "alice", 4000)
    assert closed.duration_s >= 0


async def test_a_refused_socket_logs_the_code_it_was_closed_with(connect, caplog):
    caplog.set_level(logging.INFO, logger="basic.consumers")
    communicator, _ = await connect("/ws/jobs/not-a-job/", token="bad-token")
    _frames, code = await receive_until_closed(communicator)
    assert code == 4401
    await communicator.disconnect()  # the client answers the close; the consumer ends
    [closed] = lines(caplog, "socket closed")
    assert (closed.close_code, closed.user) == (4401, None)
