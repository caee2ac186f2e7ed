"""GET /openapi.json: the OpenAPI 3.1 document of every route (a test keeps it true to the router)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import __version__
from ..accounts import (AVATAR_URL_MAX, NICKNAME_MAX, PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES, PRIVACY_CHOICES,
                        USERNAME_MAX, USERNAME_MIN)
from ..contacts import ALIAS_MAX
from ..mailbox import (CLIENT_MSG_ID_MAX, CONTENT_MAX, EFFECTS, FONTS, LIMIT_DEFAULT, LIMIT_MAX, MSG_TYPES,
                       USER_MSG_TYPES)
from .responses import json_response


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(name)}}}


def ok(description: str, schema: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema:
        answer["content"] = {"application/json": {"schema": ref(schema)}}
    return answer


def errors(*statuses: int) -> dict[str, Any]:
    if 413 in statuses:  # a body that can be too large can also arrive too slowly
        statuses = tuple(sorted({*statuses, 408}))
    return {str(status): {"$ref": f"#/components/responses/E{status}"} for status in statuses}


ERROR_MEANINGS = {
    400: "Malformed JSON, or a body that is not a JSON object (code malformed_json).",
    401: "Missing, invalid, expired, revoked or wrong-type token; or wrong credentials.",
    403: "Forbidden (e.g. registration_closed, account_deactivated, wrong_password).",
    404: "Not found.",
    408: "The body did not arrive within 30 s of the headers (request_timeout); the connection is closed.",
    409: "Conflict (e.g. username_taken, contact_exists, block_exists; bipupu_id_exhausted when every 8-digit id "
         "is taken, which is permanent: do not retry).",
    413: "JSON body over 64 KiB.",
    422: "Validation failed; `field` names the field (codes: missing_field, unknown_field, invalid_field, "
         "immutable_field, password_too_short, password_too_long, username_all_digits, idempotency_key_reused).",
    429: "Rate limited (rate_limited, too_many_attempts, stranger_quota_exceeded); `Retry-After` says how many "
         "seconds to wait.",
    503: "Database unavailable; retry after `Retry-After` seconds.",
}

BIPUPU_ID = {"type": "string", "pattern": "^[0-9]{8}$", "examples": ["00000002"]}
TIMESTAMP = {"type": "string", "format": "date-time", "examples": ["2026-02-10T16:00:00Z"]}
# JSON Schema counts characters, the server UTF-8 bytes: as tight as characters can say it (a
# character is 1 to 4 bytes), the byte rule in words.
PASSWORD = {"type": "string", "minLength": -(-PASSWORD_MIN_BYTES // 4), "maxLength": PASSWORD_MAX_BYTES,
            "description": f"{PASSWORD_MIN_BYTES}–{PASSWORD_MAX_BYTES} bytes of UTF-8 (longer is refused, never "
                           f"truncated: 422 password_too_short / password_too_long)."}
USERNAME = {
    "type": "string", "minLength": USERNAME_MIN, "maxLength": USERNAME_MAX,
    "description": "Letters of any script, digits, '_', '.', '-'; not all digits. Unique after NFKC + casefold.",
    "examples": ["星语者_7"],
}
NICKNAME = {"type": "string", "minLength": 1, "maxLength": NICKNAME_MAX}
AVATAR_URL = {"type": ["string", "null"], "maxLength": AVATAR_URL_MAX, "pattern": "^(https?://[^/?#\\s]+|/)[^\\s]*$",
              "description": "An http(s) URL with a host, or a server-relative path starting with /; no spaces "
                             "or control characters."}
PROFILE = {"type": "object", "description": "Free keys (birthday, bazi, mbti, zodiac…); at most 2 KB as JSON "
                                            "and 16 levels deep."}
PRIVACY = {"type": "string", "enum": list(PRIVACY_CHOICES)}

SCHEMAS: dict[str, Any] = {
    "Error": {
        "type": "object", "required": ["error"], "additionalProperties": False,
        "properties": {"error": {
            "type": "object", "required": ["code", "message"], "additionalProperties": False,
            "properties": {
                "code": {"type": "string", "pattern": "^[a-z0-9_]+$"},
                "message": {"type": "string"},
                "field": {"type": "string"},
            },
        }},
    },
    "RegisterRequest": {
        "type": "object", "required": ["username", "password"], "additionalProperties": False,
        "properties": {"username": USERNAME, "password": PASSWORD, "nickname": NICKNAME},
    },
    "LoginRequest": {
        "type": "object", "required": ["username", "password"], "additionalProperties": False,
        "properties": {"username": {"type": "string"}, "password": {"type": "string"}},
    },
    "RefreshRequest": {
        "type": "object", "required": ["refresh_token"], "additionalProperties": False,
        "properties": {"refresh_token": {"type": "string"}},
    },
    "LogoutRequest": {
        "type": "object", "additionalProperties": False,
        "properties": {
            "refresh_token": {"type": "string", "description": "Log out this token's session (else the access token's)."},
            "all": {"type": "boolean", "default": False, "description": "Log out every session of the user."},
        },
    },
    "TokenPair": {
        "type": "object", "additionalProperties": False,
        "required": ["access_token", "refresh_token", "token_type", "expires_in"],
        "properties": {
            "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
            "token_type": {"const": "bearer"}, "expires_in": {"type": "integer", "minimum": 1},
        },
    },
    "Account": {
        "type": "object", "additionalProperties": False,
        "required": ["bipupu_id", "username", "nickname", "access_token", "refresh_token", "token_type", "expires_in"],
        "properties": {
            "bipupu_id": BIPUPU_ID, "username": {"type": "string"}, "nickname": {"type": "string"},
            "access_token": {"type": "string"}, "refresh_token": {"type": "string"},
            "token_type": {"const": "bearer"}, "expires_in": {"type": "integer", "minimum": 1},
        },
    },
    "Me": {
        "type": "object", "additionalProperties": False,
        "required": ["bipupu_id", "username", "nickname", "avatar_url", "cosmic_profile", "privacy", "is_admin",
                     "created_at"],
        "properties": {
            "bipupu_id": BIPUPU_ID, "username": {"type": "string"}, "nickname": {"type": "string"},
            "avatar_url": {"type": ["string", "null"]}, "cosmic_profile": {"type": "object"},
            "privacy": PRIVACY, "is_admin": {"type": "boolean"}, "created_at": TIMESTAMP,
        },
    },
    "MeUpdate": {
        "type": "object", "additionalProperties": False,
        "description": "Partial update. bipupu_id, username, id, is_admin, is_active and created_at are refused "
                       "with 422 immutable_field.",
        "properties": {"nickname": NICKNAME, "avatar_url": AVATAR_URL, "cosmic_profile": PROFILE, "privacy": PRIVACY},
    },
    "PasswordChange": {
        "type": "object", "required": ["old_password", "new_password"], "additionalProperties": False,
        "properties": {"old_password": {"type": "string"}, "new_password": PASSWORD},
    },
    "UserCard": {
        "type": "object", "additionalProperties": False, "required": ["bipupu_id", "nickname", "avatar_url"],
        "properties": {"bipupu_id": BIPUPU_ID, "nickname": {"type": "string"}, "avatar_url": {"type": ["string", "null"]}},
    },
    "Health": {
        "type": "object", "required": ["status", "db", "version", "uptime_s"],
        "properties": {
            "status": {"type": "string", "enum": ["ok", "unavailable"]},
            "db": {"type": "string", "enum": ["ok", "unavailable"]},
            "version": {"type": "string"}, "uptime_s": {"type": "number", "minimum": 0},
            "error": {"type": "object", "description": "Present when status is unavailable."},
        },
    },
}

MESSAGE_ID = {"type": "string", "format": "uuid", "description": "UUIDv7; string order is acceptance order."}
ADDRESS = {"type": "string", "pattern": "^([0-9]{8}|[a-z][a-z0-9_]*(\\.[a-z][a-z0-9_]*)+)$",
           "description": "A bipupu_id or a service id such as cosmic.fortune."}
SHORT_NAME = {"type": "string", "pattern": "^[a-z0-9][a-z0-9_.-]{0,31}$"}
ALIAS = {"type": ["string", "null"], "maxLength": ALIAS_MAX, "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
         "description": "No control characters."}

SCHEMAS.update({
    "Pattern": {
        "type": "object", "additionalProperties": False,
        "description": "How the pupu device shows the card; at most 512 bytes as JSON.",
        "properties": {
            "led_color": {"type": "string", "pattern": "^#[0-9A-Fa-f]{6}$"},
            "effect": {"type": "string", "enum": list(EFFECTS)},
            "font": {"type": "string", "enum": list(FONTS)},
            "screensaver": SHORT_NAME,
            "duration_s": {"type": "integer", "minimum": 1, "maximum": 60},
            "vibrate": {"type": "boolean"},
            "sound": SHORT_NAME,
        },
    },
    "SendMessage": {
        "type": "object", "required": ["receiver_id", "content"], "additionalProperties": False,
        "properties": {
            "receiver_id": {**ADDRESS, "description": "A bipupu_id or a service id; not your own (422 self_message)."},
            "content": {"type": "string", "minLength": 1,
                        "pattern": f"^\\s*\\S([\\s\\S]{{0,{CONTENT_MAX - 2}}}\\S)?\\s*$",
                        "description": f"1–{CONTENT_MAX} characters after trimming spaces at both ends (so at most "
                                       f"{CONTENT_MAX} that are not spaces, and not only spaces; else 422)."},
            "msg_type": {"type": "string", "enum": list(USER_MSG_TYPES), "default": "USER_POSTCARD",
                         "description": "COSMIC_BROADCAST is refused with 403 msg_type_not_allowed."},
            "pattern": ref("Pattern"),
            "client_msg_id": {"type": "string", "minLength": 1, "maxLength": CLIENT_MSG_ID_MAX,
                              "description": "Idempotency key per sender: resending the same card (receiver, "
                                             "content after trimming, msg_type, pattern) returns the original "
                                             "(200), even after the sender deleted it from the outbox; the same "
                                             "key with another card is 422 idempotency_key_reused."},
        },
    },
    "Message": {
        "type": "object", "additionalProperties": False,
        "required": ["id", "sender_id", "receiver_id", "content", "msg_type", "pattern", "created_at"],
        "properties": {
            "id": MESSAGE_ID, "sender_id": ADDRESS, "receiver_id": ADDRESS, "content": {"type": "string"},
            "msg_type": {"type": "string", "enum": list(MSG_TYPES)}, "pattern": ref("Pattern"),
            "created_at": TIMESTAMP,
        },
    },
    "MessagePage": {
        "type": "object", "additionalProperties": False, "required": ["messages", "has_more"],
        "properties": {"messages": {"type": "array", "items": ref("Message")}, "has_more": {"type": "boolean"}},
    },
    "ContactRequest": {
        "type": "object", "required": ["contact_id"], "additionalProperties": False,
        "properties": {"contact_id": BIPUPU_ID, "alias": ALIAS},
    },
    "AliasUpdate": {
        "type": "object", "required": ["alias"], "additionalProperties": False, "properties": {"alias": ALIAS},
    },
    "Contact": {
        "type": "object", "additionalProperties": False,
        "required": ["contact_id", "alias", "nickname", "avatar_url", "created_at"],
        "properties": {"contact_id": BIPUPU_ID, "alias": {"type": ["string", "null"]}, "nickname": {"type": "string"},
                       "avatar_url": {"type": ["string", "null"]}, "created_at": TIMESTAMP},
    },
    "BlockRequest": {
        "type": "object", "required": ["blocked_id"], "additionalProperties": False,
        "properties": {"blocked_id": BIPUPU_ID},
    },
    "Block": {
        "type": "object", "additionalProperties": False,
        "required": ["blocked_id", "nickname", "avatar_url", "created_at"],
        "properties": {"blocked_id": BIPUPU_ID, "nickname": {"type": "string"},
                       "avatar_url": {"type": ["string", "null"]}, "created_at": TIMESTAMP},
    },
})

SCHEMAS["Service"] = {
    "type": "object", "additionalProperties": False, "required": ["id", "name", "description", "subscribed"],
    "properties": {"id": ADDRESS, "name": {"type": "string"}, "description": {"type": "string"},
                   "subscribed": {"type": "boolean",
                                  "description": "Always true for notice services, which reach everyone."}},
}

SECURED = [{"bearer": []}]


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def query_param(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


def array_of(description: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"type": "array", "items": ref(schema)}}}}


MESSAGE_ID_PARAM = path_param("message_id", "A message id from the caller's mailbox.")
WS_PROTOCOL = """WebSocket upgrade for live pushes (reading and deleting stay in REST).
Authenticate with `Authorization: Bearer`, `?token=` or a first frame
`{"type":"auth","token":"…","since":"<last seen id>"}` within 10 s (`?since=` works with the first two).
The server answers `{"type":"auth_ok","bipupu_id","server_time"}`; with `since` it replays missed
messages oldest first (up to 500) then sends `{"type":"replay_done","count","has_more"}` (with has_more,
page the rest with GET /messages?since=), then live `{"type":"new_message","payload":Message}` frames in
id order. Send `{"type":"ping"}` every 30 s (answer `{"type":"pong"}`); 90 s of silence closes the socket.
Bad JSON or unknown types get `{"type":"error","code":"bad_json"|"unknown_type"|"already_authenticated"}`.
Close codes: 4001 bad/expired token or no auth in time, 4003 deactivated or signed out, 4008 replaced
(at most 5 sockets per user), 4009 too slow (catch up with since), 1001 server shutting down,
1009 frame over 64 KiB, 1000 idle, 1013 database unavailable (reconnect later)."""

PATHS: dict[str, dict[str, Any]] = {
    "/auth/register": {"post": {
        "summary": "Create an account (when registration is open) and log it in.",
        "operationId": "register", "tags": ["auth"], "security": [], "requestBody": body("RegisterRequest"),
        "responses": {"201": ok("The new account with its first token pair.", "Account"),
                      **errors(400, 403, 409, 413, 422, 429, 503)},
    }},
    "/auth/login": {"post": {
        "summary": "Log in with username (matched after NFKC + casefold) and password.",
        "operationId": "login", "tags": ["auth"], "security": [], "requestBody": body("LoginRequest"),
        "responses": {"200": ok("A new session's token pair.", "Account"), **errors(400, 401, 403, 413, 422, 429, 503)},
    }},
    "/auth/refresh": {"post": {
        "summary": "Trade a refresh token for a new pair; the old one stops working, and presenting it again "
                   "signs the whole session out.",
        "operationId": "refresh", "tags": ["auth"], "security": [], "requestBody": body("RefreshRequest"),
        "responses": {"200": ok("A new token pair.", "TokenPair"), **errors(400, 401, 403, 413, 422, 503)},
    }},
    "/auth/logout": {"post": {
        "summary": "End this session (by access token or refresh_token), or every session with all=true.",
        "description": "Needs a refresh_token in the body, or an access token in `Authorization: Bearer`, which "
                       "is used when sent (so a client may log out with only the refresh token after its access "
                       "token expired).",
        "operationId": "logout", "tags": ["auth"], "requestBody": body("LogoutRequest", required=False),
        # No security requirement: an optional one ([{bearer}, {}]) is what client generators cannot
        # express (they send "Bearer " with no token). An Authorization header, if sent, is used.
        "security": [],
        "responses": {"204": ok("Logged out."), **errors(400, 401, 403, 413, 422, 503)},
    }},
    "/me": {
        "get": {
            "summary": "The caller's own account.", "operationId": "getMe", "tags": ["me"], "security": SECURED,
            "responses": {"200": ok("The caller.", "Me"), **errors(401, 403, 503)},
        },
        "put": {
            "summary": "Change nickname, avatar_url, cosmic_profile or privacy.", "operationId": "putMe",
            "tags": ["me"], "security": SECURED, "requestBody": body("MeUpdate"),
            "responses": {"200": ok("The whole updated account.", "Me"), **errors(400, 401, 403, 413, 422, 503)},
        },
    },
    "/me/password": {"put": {
        "summary": "Change the password; every other session is signed out.", "operationId": "putPassword",
        "tags": ["me"], "security": SECURED, "requestBody": body("PasswordChange"),
        "responses": {"204": ok("Changed."), **errors(400, 401, 403, 413, 422, 503)},
    }},
    "/users/{bipupu_id}": {"get": {
        "summary": "A user's public card; 404 when unknown or deactivated.", "operationId": "getUser",
        "tags": ["users"], "security": SECURED,
        "parameters": [{"name": "bipupu_id", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": ok("The public card.", "UserCard"), **errors(401, 403, 404, 503)},
    }},
    "/messages": {
        "post": {
            "summary": "Send a postcard (or a command to a service). A block or contacts-only privacy drops it "
                       "silently: the sender still gets 201.",
            "operationId": "sendMessage", "tags": ["messages"], "security": SECURED,
            "requestBody": body("SendMessage"),
            "responses": {"201": ok("Accepted and on disk.", "Message"),
                          "200": ok("A repeated client_msg_id: the original message.", "Message"),
                          **errors(400, 401, 403, 404, 413, 422, 429, 503)},
        },
        "get": {
            "summary": "The caller's mailbox: newest first, or oldest first after `since`.",
            "operationId": "listMessages", "tags": ["messages"], "security": SECURED,
            "parameters": [
                query_param("direction", {"type": "string", "enum": ["received", "sent", "all"],
                                          "default": "received"}, "Which side of the mailbox."),
                query_param("limit", {"type": "integer", "minimum": 1, "maximum": LIMIT_MAX,
                                      "default": LIMIT_DEFAULT}, "Page size."),
                query_param("before", MESSAGE_ID, "Older than this id (paging back, newest first). Not with "
                                                  "since (422, field since)."),
                query_param("since", MESSAGE_ID, "Newer than this id, oldest first (catch-up); works even if "
                                                 "that message was deleted. Not with before (422)."),
                query_param("msg_type", {"type": "string", "enum": list(MSG_TYPES)}, "Only this type."),
                query_param("peer", ADDRESS, "Only cards exchanged with this bipupu_id or service."),
            ],
            "responses": {"200": ok("One page.", "MessagePage"), **errors(401, 403, 422, 503)},
        },
    },
    "/messages/{message_id}": {
        "get": {
            "summary": "One message of the caller's mailbox.", "operationId": "getMessage", "tags": ["messages"],
            "security": SECURED, "parameters": [MESSAGE_ID_PARAM],
            "responses": {"200": ok("The message.", "Message"), **errors(401, 403, 404, 503)},
        },
        "delete": {
            "summary": "Remove a message from the caller's mailbox only (the other side keeps it).",
            "operationId": "deleteMessage", "tags": ["messages"], "security": SECURED,
            "parameters": [MESSAGE_ID_PARAM],
            "responses": {"204": ok("Removed."), **errors(401, 403, 404, 503)},
        },
    },
    "/contacts": {
        "post": {
            "summary": "Trust a user (their cards reach you even with contacts_only privacy, and no stranger "
                       "quota applies). Yourself: 422 self_reference.",
            "operationId": "addContact", "tags": ["contacts"], "security": SECURED,
            "requestBody": body("ContactRequest"),
            "responses": {"201": ok("Added.", "Contact"), **errors(400, 401, 403, 404, 409, 413, 422, 503)},
        },
        "get": {
            "summary": "The caller's trusted contacts with nickname and avatar.", "operationId": "listContacts",
            "tags": ["contacts"], "security": SECURED,
            "responses": {"200": array_of("Contacts, oldest first.", "Contact"), **errors(401, 403, 503)},
        },
    },
    "/contacts/{contact_id}": {
        "put": {
            "summary": "Change a contact's alias (null clears it).", "operationId": "renameContact",
            "tags": ["contacts"], "security": SECURED, "requestBody": body("AliasUpdate"),
            "parameters": [path_param("contact_id", "The contact's bipupu_id.")],
            "responses": {"200": ok("Renamed.", "Contact"), **errors(400, 401, 403, 404, 413, 422, 503)},
        },
        "delete": {
            "summary": "Remove a contact.", "operationId": "removeContact", "tags": ["contacts"],
            "security": SECURED, "parameters": [path_param("contact_id", "The contact's bipupu_id.")],
            "responses": {"204": ok("Removed."), **errors(401, 403, 404, 503)},
        },
    },
    "/blocks": {
        "post": {
            "summary": "Block a user: their cards are dropped silently (they are never told). Yourself: 422 "
                       "self_reference.",
            "operationId": "addBlock", "tags": ["blocks"], "security": SECURED, "requestBody": body("BlockRequest"),
            "responses": {"201": ok("Blocked.", "Block"), **errors(400, 401, 403, 404, 409, 413, 422, 503)},
        },
        "get": {
            "summary": "The users the caller blocked.", "operationId": "listBlocks", "tags": ["blocks"],
            "security": SECURED,
            "responses": {"200": array_of("Blocks, oldest first.", "Block"), **errors(401, 403, 503)},
        },
    },
    "/blocks/{blocked_id}": {"delete": {
        "summary": "Unblock a user.", "operationId": "removeBlock", "tags": ["blocks"], "security": SECURED,
        "parameters": [path_param("blocked_id", "The blocked user's bipupu_id.")],
        "responses": {"204": ok("Unblocked."), **errors(401, 403, 404, 503)},
    }},
    "/ws": {"get": {
        "summary": "Live pushes of new messages (WebSocket).", "description": WS_PROTOCOL,
        "operationId": "websocket", "tags": ["messages"], "security": [{"bearer": []}, {}],
        "parameters": [
            query_param("token", {"type": "string"}, "Access token, when no header can be set (redacted from logs)."),
            query_param("since", MESSAGE_ID, "Replay messages after this id before live ones."),
        ],
        "responses": {"101": ok("Switching to the WebSocket protocol."),
                      "400": {"$ref": "#/components/responses/E400"}},
    }},
    "/services": {"get": {
        "summary": "The service accounts (send them a card such as TD or HELP) and whether the caller subscribes.",
        "operationId": "listServices", "tags": ["services"], "security": SECURED,
        "responses": {"200": array_of("Active services.", "Service"), **errors(401, 403, 503)},
    }},
    "/health": {"get": {
        "summary": "Liveness and database state.", "operationId": "health", "tags": ["operations"],
        "security": [],
        "responses": {"200": ok("Healthy.", "Health"), "503": ok("The database is unusable.", "Health")},
    }},
    "/metrics": {"get": {
        "summary": "Prometheus metrics: live sockets, messages by type, HTTP responses by status, the last "
                   "broadcast's duration and size, BLE relay state, event-loop lag.",
        "operationId": "metrics", "tags": ["operations"], "security": [],
        "responses": {"200": {"description": "Prometheus text exposition format.",
                              "content": {"text/plain": {"schema": {"type": "string"}}}}},
    }},
    "/openapi.json": {"get": {
        "summary": "This document.", "operationId": "openapi", "tags": ["operations"], "security": [],
        "responses": {"200": {"description": "The OpenAPI 3.1 document.",
                              "content": {"application/json": {"schema": {"type": "object"}}}}},
    }},
}


def document() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bipupu server",
            "version": __version__,
            "description": "Postcards between pager-like pupu devices. All bodies are JSON; every error is "
                           '{"error": {"code", "message", "field"?}}. Times are RFC 3339 UTC with Z.',
        },
        "servers": [{"url": "/"}],
        "security": SECURED,
        "paths": PATHS,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An access token from /auth/register, /auth/login or "
                                                          "/auth/refresh."}},
            "responses": {
                f"E{status}": {
                    "description": meaning,
                    "content": {"application/json": {"schema": ref("Error")}},
                    **({"headers": {"Retry-After": {"schema": {"type": "integer"}}}} if status in (429, 503) else {}),
                }
                for status, meaning in ERROR_MEANINGS.items()
            },
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return json_response(document())
