"""The WebSocket protocol's constants (SPEC §5): close codes, frame types and error-frame codes, in one place."""

from __future__ import annotations

import orjson

# Close codes.
IDLE = 1000  # no frame for ws_idle_timeout_s
GOING_AWAY = 1001  # the server is shutting down
TOO_BIG = 1009  # a frame over max_body_bytes (aiohttp closes)
TRY_AGAIN_LATER = 1013  # the database is unavailable: reconnect later
BAD_TOKEN = 4001  # bad or expired token, or no auth in time: refresh and retry
SIGNED_OUT = 4003  # signed out or deactivated: do not retry
REPLACED = 4008  # replaced by a newer socket of the same user
TOO_SLOW = 4009  # the send queue overflowed: reconnect with since

# Frame types, client → server.
AUTH = "auth"
PING = "ping"
# Frame types, server → client.
AUTH_OK = "auth_ok"
NEW_MESSAGE = "new_message"
REPLAY_DONE = "replay_done"
PONG = "pong"
ERROR = "error"

# The codes of {"type": "error"} frames (the socket stays open).
FRAME_CODES: dict[str, str] = {
    "bad_json": "The frame is not a JSON object.",
    "unknown_type": "The frame's type is not one the server knows.",
    "already_authenticated": "An auth frame on a socket that is already authenticated.",
}


def frame(kind: str, **fields: object) -> str:
    """A server frame as JSON text."""
    return orjson.dumps({"type": kind, **fields}).decode()


def message_frame(message: dict) -> str:
    return frame(NEW_MESSAGE, payload=message)
