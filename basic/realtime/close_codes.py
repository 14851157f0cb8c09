"""The one place for WebSocket close codes (4000-4999 are ours, by RFC 6455).

Every close that is not a plain 1000 is preceded by an error frame with a JSON `code` and `detail`
(basic/realtime/consumers/base.py), so a client can tell what to do.
"""

# 1013 "Try Again Later" (RFC 6455 registry): Redis is unreachable, the client should reconnect.
CLOSE_TRY_AGAIN_LATER = 1013
# 1011 "Internal Error": a bug in a consumer; it was logged, and the socket cleaned up (groups, slot).
CLOSE_INTERNAL_ERROR = 1011
CLOSE_BAD_REQUEST = 4400
CLOSE_UNAUTHORIZED = 4401
CLOSE_NOT_FOUND = 4404
CLOSE_TOO_MANY_REQUESTS = 4429
# The client stopped reading: more unsent data queued for it than WS_MAX_UNSENT_BYTES
# (basic/realtime/server.py closes with it; this module imports nothing, so the server may use it).
CLOSE_SLOW_CONSUMER = 4008
