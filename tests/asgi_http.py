"""One HTTP request straight through an ASGI application (no server), for tests of the handler."""
from asgiref.testing import ApplicationCommunicator


async def get(application, path: str, token: str) -> int:
    """GET `path` with `token`; the response's status once the application has returned."""
    communicator = ApplicationCommunicator(application, {
        "type": "http", "http_version": "1.1", "method": "GET", "path": path, "raw_path": path.encode(),
        "query_string": b"", "scheme": "http", "root_path": "", "client": ("127.0.0.1", 40000),
        "server": ("testserver", 80),
        "headers": [(b"host", b"testserver"), (b"authorization", f"Token {token}".encode())]})
    await communicator.send_input({"type": "http.request", "body": b""})
    start = await communicator.receive_output(10)
    await communicator.receive_output(10)
    await communicator.wait(10)
    return start["status"]
