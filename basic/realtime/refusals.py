"""Saying no to a socket before its consumer runs, with a reason a client can act on.

Where the server offers ASGI's denial-response extension (ours does: basic/realtime/server.py) the
refusal is an HTTP status with a JSON body and `Retry-After`, and no upgrade; elsewhere the socket
is accepted only to say why, then closed with 1013 (a refused handshake would hide the reason).
Used by the handshake gate (too many sockets at once) and the socket auth middleware (the database
or Redis is down while it looks up the user).
"""
import json
from typing import Any

from redis.exceptions import RedisError

from basic.core.database_outages import DATABASE_OUTAGES, is_outage
from basic.realtime.close_codes import CLOSE_TRY_AGAIN_LATER

# What a backing service's outage raises (not a bug): a connection lost, refused or shut down.
OUTAGES = (RedisError, OSError, *DATABASE_OUTAGES)
UNAVAILABLE = {"type": "error", "code": "unavailable",
               "detail": "The live service is unavailable right now; reconnect in a few seconds."}
UNAVAILABLE_RETRY_AFTER = 5  # seconds: an outage the client cannot see the end of
# A bug on a socket (a consumer's crash, or its user's lookup): sent before close 1011 or as the 500's body.
INTERNAL_ERROR = {"type": "error", "code": "internal_error",
                  "detail": "The server failed on this socket. It has been logged; reconnect."}


def is_unreachable(error: BaseException) -> bool:
    """An OUTAGES error that is a service being unreachable, worth coming back for; not a statement
    the database refused, which SQLite raises as OperationalError too (a missed migration's "no
    such column"): that is a bug, and telling clients to come back would only repeat it."""
    return not isinstance(error, DATABASE_OUTAGES) or is_outage(error)


async def refuse_before_upgrade(scope: dict[str, Any], receive: Any, send: Any, reason: dict[str, Any],
                                retry_after: int | None, status: int = 503,
                                close_code: int = CLOSE_TRY_AGAIN_LATER) -> None:
    """Refuse the socket `scope` describes with `reason` (the JSON body, or the error frame and
    `close_code`); `retry_after` seconds in a Retry-After header, or None for none (a bug's 500)."""
    message = await receive()
    if message.get("type") != "websocket.connect":
        return
    body = json.dumps(reason).encode()
    if "websocket.http.response" in scope.get("extensions", {}):
        headers = [(b"content-type", b"application/json")]
        if retry_after is not None:
            headers.append((b"retry-after", str(retry_after).encode()))
        await send({"type": "websocket.http.response.start", "status": status, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": body.decode()})
    await send({"type": "websocket.close", "code": close_code})
