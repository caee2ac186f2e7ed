"""GET /openapi.json: the OpenAPI 3.1 document of every route (a test keeps it true to the router).

The schemas are made from the shapes the server decodes with (web/shapes.py), so a limit lives in
one place; the error codes and their statuses come from errors.CODES, and this file says only
which operation can answer which code.
"""

from __future__ import annotations

import functools
from typing import Any

import msgspec
from aiohttp import web

from .. import __version__
from ..config import Config
from ..errors import CODES
from ..protocol import (BAD_TOKEN, GOING_AWAY, IDLE, REPLACED, SIGNED_OUT, TOO_BIG, TOO_SLOW,
                        TRY_AGAIN_LATER)
from ..store.messages import MAX_REPLAY
from . import shapes


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def body(name: str, required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": ref(name)}}}


def ok(description: str, schema: str | None = None) -> dict[str, Any]:
    answer: dict[str, Any] = {"description": description}
    if schema:
        answer["content"] = {"application/json": {"schema": ref(schema)}}
    return answer


# Which codes each kind of operation can answer, beyond its own.
TOKEN = ("missing_token", "invalid_token", "token_expired", "wrong_token_type", "token_revoked",
         "account_deactivated")
JSON_BODY = ("malformed_json", "payload_too_large", "request_timeout", "connection_lost", "missing_field",
             "unknown_field", "invalid_field")
STORED = ("database_unavailable",)


def errors(*codes: str) -> dict[str, Any]:
    """The error answers of an operation that can send these codes: one per status, listing its codes."""
    by_status: dict[int, list[str]] = {}
    for code in dict.fromkeys(codes):
        by_status.setdefault(CODES[code][0], []).append(code)
    answers = {}
    for status, listed in sorted(by_status.items()):
        answer: dict[str, Any] = {
            "description": "; ".join(f"`{code}`: {CODES[code][1]}" for code in listed),
            "x-error-codes": listed,
            "content": {"application/json": {"schema": ref("Error")}},
        }
        if status in (429, 503):
            answer["headers"] = {"Retry-After": {"description": "Whole seconds to wait (at least 1) before trying again.",
                                                 "schema": {"type": "integer"}}}
        answers[str(status)] = answer
    return answers


def authed(*codes: str) -> dict[str, Any]:
    return errors(*TOKEN, *codes, *STORED)


SECURED = [{"bearer": []}]


@functools.cache
def components() -> dict[str, Any]:
    """The JSON Schemas of every shape, as msgspec derives them from the classes."""
    _, schemas = msgspec.json.schema_components(
        (*shapes.REQUESTS, *shapes.QUERIES, *shapes.RESPONSES), ref_template="#/components/schemas/{name}")
    for old, new in shapes.DOCUMENT_NAMES.items():
        schemas[new] = schemas.pop(old)
    for name in [shape.__name__ for shape in shapes.QUERIES]:
        del schemas[name]  # published as parameters instead
    return schemas


def query_parameters(shape: type[msgspec.Struct]) -> list[dict[str, Any]]:
    """A query shape's fields as OpenAPI parameters."""
    (_,), schemas = msgspec.json.schema_components([shape])
    parameters = []
    for name, schema in schemas[shape.__name__]["properties"].items():
        schema = dict(schema)
        description = schema.pop("description", "")
        parameters.append({"name": name, "in": "query", "required": False, "schema": schema,
                           "description": description})
    return parameters


def path_param(name: str, description: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}, "description": description}


def array_of(description: str, schema: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"type": "array", "items": ref(schema)}}}}


MESSAGE_ID_PARAM = path_param("message_id", "A message id from the caller's mailbox.")
def _default(name: str) -> Any:
    """A setting's default, which the document states (a box may tune it; the defaults are the contract)."""
    return Config.__dataclass_fields__[name].default


WS_PROTOCOL = f"""WebSocket upgrade for live pushes (reading and deleting stay in REST).
Authenticate with `Authorization: Bearer`, `?token=` or a first frame
`{{"type":"auth","token":"…","since":"<last seen id>"}}` within {_default("ws_auth_timeout_s"):g} s (`?since=` works
with the first two). The server answers `{{"type":"auth_ok","bipupu_id","server_time"}}`; with `since` it replays
missed messages oldest first (up to {MAX_REPLAY}) then sends `{{"type":"replay_done","count","has_more"}}` (with
has_more, page the rest with GET /messages?since=), then live `{{"type":"new_message","payload":Message}}` frames in
id order. Send `{{"type":"ping"}}` every {_default("ws_idle_timeout_s") / 3:g} s (answer `{{"type":"pong"}}`);
{_default("ws_idle_timeout_s"):g} s of silence closes the socket. Bad JSON or unknown types get
`{{"type":"error","code":"bad_json"|"unknown_type"|"already_authenticated"}}`.
Close codes: {BAD_TOKEN} bad/expired token or no auth in time (refresh and retry), {SIGNED_OUT} deactivated or
signed out (do not retry), {REPLACED} replaced (at most {_default("ws_max_per_user")} sockets per user), {TOO_SLOW}
too slow (catch up with since), {GOING_AWAY} server shutting down, {TOO_BIG} frame over
{_default("max_body_bytes") // 1024} KiB, {IDLE} idle, {TRY_AGAIN_LATER} database unavailable (reconnect later)."""

PATHS: dict[str, dict[str, Any]] = {
    "/auth/register": {"post": {
        "summary": "Create an account (when registration is open) and log it in.",
        "operationId": "register", "tags": ["auth"], "security": [], "requestBody": body("RegisterRequest"),
        "responses": {"201": ok("The new account with its first token pair.", "Account"),
                      **errors(*JSON_BODY, "registration_closed", "rate_limited", "username_taken",
                               "bipupu_id_exhausted", "password_too_short", "password_too_long",
                               "username_all_digits", *STORED)},
    }},
    "/auth/login": {"post": {
        "summary": "Log in with username (matched after NFKC + casefold) and password.",
        "operationId": "login", "tags": ["auth"], "security": [], "requestBody": body("LoginRequest"),
        "responses": {"200": ok("A new session's token pair.", "Account"),
                      **errors(*JSON_BODY, "invalid_credentials", "too_many_attempts", "account_deactivated",
                               *STORED)},
    }},
    "/auth/refresh": {"post": {
        "summary": "Trade a refresh token for a new pair; the old one stops working, and presenting it again "
                   "signs the whole session out.",
        "operationId": "refresh", "tags": ["auth"], "security": [], "requestBody": body("RefreshRequest"),
        "responses": {"200": ok("A new token pair.", "TokenPair"),
                      **errors(*JSON_BODY, "invalid_token", "token_expired", "wrong_token_type", "token_revoked",
                               "refresh_token_reused", "account_deactivated", *STORED)},
    }},
    "/auth/logout": {"post": {
        "summary": "End this session (by access token or refresh_token), or every session with all=true.",
        "description": "Needs a refresh_token in the body, or an access token in `Authorization: Bearer`, which "
                       "is used when sent (so a client may log out with only the refresh token after its access "
                       "token expired). A refresh token already traded, or of a login already signed out, is "
                       "refused (401) and changes nothing.",
        "operationId": "logout", "tags": ["auth"], "requestBody": body("LogoutRequest", required=False),
        # No security requirement: an optional one ([{bearer}, {}]) is what client generators cannot
        # express (they send "Bearer " with no token). An Authorization header, if sent, is used.
        "security": [],
        "responses": {"204": ok("Logged out."), **errors(*JSON_BODY, *TOKEN, "refresh_token_reused", *STORED)},
    }},
    "/me": {
        "get": {
            "summary": "The caller's own account.", "operationId": "getMe", "tags": ["me"], "security": SECURED,
            "responses": {"200": ok("The caller.", "Me"), **authed("user_not_found")},
        },
        "put": {
            "summary": "Change nickname, avatar_url, cosmic_profile or privacy.",
            "description": "A partial update: the keys sent change, the others stay. bipupu_id, username, id, "
                           "is_admin, is_active and created_at are refused with 422 immutable_field.",
            "operationId": "putMe", "tags": ["me"], "security": SECURED, "requestBody": body("MeUpdate"),
            "responses": {"200": ok("The whole updated account.", "Me"),
                          **authed(*JSON_BODY, "immutable_field", "user_not_found")},
        },
    },
    "/me/password": {"put": {
        "summary": "Change the password; every other session is signed out.", "operationId": "putPassword",
        "tags": ["me"], "security": SECURED, "requestBody": body("PasswordChange"),
        "responses": {"204": ok("Changed."),
                      **authed(*JSON_BODY, "wrong_password", "password_too_short", "password_too_long")},
    }},
    "/users/{bipupu_id}": {"get": {
        "summary": "A user's public card; 404 when unknown or deactivated.", "operationId": "getUser",
        "tags": ["users"], "security": SECURED, "parameters": [path_param("bipupu_id", "The user's bipupu_id.")],
        "responses": {"200": ok("The public card.", "UserCard"), **authed("user_not_found")},
    }},
    "/messages": {
        "post": {
            "summary": "Send a postcard (or a command to a service). A block or contacts-only privacy drops it "
                       "silently: the sender still gets 201.",
            "operationId": "sendMessage", "tags": ["messages"], "security": SECURED,
            "requestBody": body("SendMessage"),
            "responses": {"201": ok("Accepted and on disk.", "Message"),
                          "200": ok("A repeated client_msg_id: the original message.", "Message"),
                          **authed(*JSON_BODY, "msg_type_not_allowed", "receiver_not_found", "self_message",
                                   "idempotency_key_reused", "rate_limited", "stranger_quota_exceeded")},
        },
        "get": {
            "summary": "The caller's mailbox: newest first, or oldest first after `since`.",
            "operationId": "listMessages", "tags": ["messages"], "security": SECURED,
            "parameters": query_parameters(shapes.MessageQuery),
            "responses": {"200": ok("One page.", "MessagePage"), **authed("unknown_field", "invalid_field")},
        },
    },
    "/messages/{message_id}": {
        "get": {
            "summary": "One message of the caller's mailbox.", "operationId": "getMessage", "tags": ["messages"],
            "security": SECURED, "parameters": [MESSAGE_ID_PARAM],
            "responses": {"200": ok("The message.", "Message"), **authed("message_not_found")},
        },
        "delete": {
            "summary": "Remove a message from the caller's mailbox only (the other side keeps it).",
            "operationId": "deleteMessage", "tags": ["messages"], "security": SECURED,
            "parameters": [MESSAGE_ID_PARAM],
            "responses": {"204": ok("Removed."), **authed("message_not_found")},
        },
    },
    "/contacts": {
        "post": {
            "summary": "Trust a user (their cards reach you even with contacts_only privacy, and no stranger "
                       "quota applies).",
            "operationId": "addContact", "tags": ["contacts"], "security": SECURED,
            "requestBody": body("ContactRequest"),
            "responses": {"201": ok("Added.", "Contact"),
                          **authed(*JSON_BODY, "self_reference", "user_not_found", "contact_exists")},
        },
        "get": {
            "summary": "The caller's trusted contacts with nickname and avatar.", "operationId": "listContacts",
            "tags": ["contacts"], "security": SECURED,
            "responses": {"200": array_of("Contacts, oldest first.", "Contact"), **authed()},
        },
    },
    "/contacts/{contact_id}": {
        "put": {
            "summary": "Change a contact's alias (null or \"\" clears it).", "operationId": "renameContact",
            "tags": ["contacts"], "security": SECURED, "requestBody": body("AliasUpdate"),
            "parameters": [path_param("contact_id", "The contact's bipupu_id.")],
            "responses": {"200": ok("Renamed.", "Contact"), **authed(*JSON_BODY, "contact_not_found")},
        },
        "delete": {
            "summary": "Remove a contact.", "operationId": "removeContact", "tags": ["contacts"],
            "security": SECURED, "parameters": [path_param("contact_id", "The contact's bipupu_id.")],
            "responses": {"204": ok("Removed."), **authed("contact_not_found")},
        },
    },
    "/blocks": {
        "post": {
            "summary": "Block a user: their cards are dropped silently (they are never told).",
            "operationId": "addBlock", "tags": ["blocks"], "security": SECURED, "requestBody": body("BlockRequest"),
            "responses": {"201": ok("Blocked.", "Block"),
                          **authed(*JSON_BODY, "self_reference", "user_not_found", "block_exists")},
        },
        "get": {
            "summary": "The users the caller blocked.", "operationId": "listBlocks", "tags": ["blocks"],
            "security": SECURED,
            "responses": {"200": array_of("Blocks, oldest first.", "Block"), **authed()},
        },
    },
    "/blocks/{blocked_id}": {"delete": {
        "summary": "Unblock a user.", "operationId": "removeBlock", "tags": ["blocks"], "security": SECURED,
        "parameters": [path_param("blocked_id", "The blocked user's bipupu_id.")],
        "responses": {"204": ok("Unblocked."), **authed("block_not_found")},
    }},
    "/ws": {"get": {
        "summary": "Live pushes of new messages (WebSocket).", "description": WS_PROTOCOL,
        "operationId": "websocket", "tags": ["messages"], "security": [{"bearer": []}, {}],
        "parameters": [
            {"name": "token", "in": "query", "required": False, "schema": {"type": "string"},
             "description": "Access token, when no header can be set (redacted from logs)."},
            {"name": "since", "in": "query", "required": False,
             "schema": components()["Message"]["properties"]["id"],
             "description": "Replay messages after this id before live ones."},
        ],
        "responses": {"101": ok("Switching to the WebSocket protocol."), **errors("websocket_required")},
    }},
    "/services": {"get": {
        "summary": "The service accounts (send them a card such as TD or HELP) and whether the caller subscribes.",
        "operationId": "listServices", "tags": ["services"], "security": SECURED,
        "responses": {"200": array_of("Active services.", "Service"), **authed()},
    }},
    "/services/{service_id}/broadcast": {"post": {
        "summary": "Broadcast now (admins only): one card to every subscriber of the service, or to every active "
                   "user for a notice service such as bipupu.notice. For scripts: cron, Home Assistant, the bench.",
        "operationId": "broadcastNow", "tags": ["services"], "security": SECURED,
        "parameters": [path_param("service_id", "The service's id, e.g. bipupu.notice.")],
        "requestBody": body("BroadcastRequest"),
        "responses": {"200": ok("Sent to everyone it reaches, on disk and pushed.", "BroadcastResult"),
                      **authed(*JSON_BODY, "not_admin", "service_not_found", "service_inactive")},
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

# Codes any request may meet before it reaches an operation (the HTTP layer, the connection cap).
ANYWHERE = ("malformed_request", "method_not_allowed", "not_found", "length_required", "uri_too_long",
            "unsupported_media_type", "headers_too_large", "too_many_connections", "internal_error")


def error_table() -> str:
    rows = "\n".join(f"| `{code}` | {status} | {meaning} |" for code, (status, meaning) in CODES.items())
    return ("Every error is `{\"error\": {\"code\", \"message\", \"field\"?}}`; `code` is one of these, and "
            "each operation's answers list the ones it can send. Any request may also meet "
            + ", ".join(f"`{code}`" for code in ANYWHERE) + " before it reaches an operation.\n\n"
            "| code | status | meaning |\n|---|---|---|\n" + rows)


def document() -> dict[str, Any]:
    """The document, a fresh copy each call (callers may change theirs)."""
    return msgspec.json.decode(_encoded())


@functools.cache
def _encoded() -> bytes:
    return msgspec.json.encode(_build())


def _build() -> dict[str, Any]:
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Bipupu server",
            "version": __version__,
            "description": "Postcards between pager-like pupu devices. All bodies are JSON; times are RFC 3339 "
                           "UTC with Z.\n\n" + error_table(),
        },
        "servers": [{"url": "/"}],
        "security": SECURED,
        "paths": PATHS,
        "components": {
            "schemas": components(),
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An access token from /auth/register, /auth/login or "
                                                          "/auth/refresh."}},
        },
    }


async def openapi(request: web.Request) -> web.Response:
    return web.Response(body=_encoded(), content_type="application/json")
