"""Opening and closing a socket never waits for the one thread-sensitive thread, which every sync
REST view of the process also runs on (docs/design.md trap 11): under a connect storm or a web
restart thousands of sockets open and close together, and each hop there queued them behind each
other and behind REST calls. Channels' own `websocket_disconnect` makes one such hop per close
(`aclose_old_connections`), 18% of Daphne's CPU while 2,000 sockets closed (py-spy)."""
import pytest
from asgiref.sync import SyncToAsync

from .conftest import close_all

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def thread_sensitive_calls(monkeypatch):
    """The functions sent to the thread-sensitive thread while the test runs."""
    calls = []
    call = SyncToAsync.__call__

    async def recording_call(self, *args, **kwargs):
        if self._thread_sensitive:
            calls.append(getattr(self.func, "__qualname__", repr(self.func)))
        return await call(self, *args, **kwargs)

    monkeypatch.setattr(SyncToAsync, "__call__", recording_call)
    return calls


@pytest.mark.parametrize("path, signed_in", [("/chat/", False), ("/ws/chat/lobby/", True),
                                             ("/ws/events/", True)])
async def test_a_socket_opens_and_closes_without_the_thread_sensitive_thread(
        alice, connect, thread_sensitive_calls, path, signed_in):
    communicator, connected = await connect(path, token=alice.token if signed_in else None)
    assert connected
    await close_all(communicator)
    assert thread_sensitive_calls == []
