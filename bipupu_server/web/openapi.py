"""GET /openapi.json: the OpenAPI 3.1 document of every route (a test keeps it true to the router)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from .. import __version__
from ..accounts import (AVATAR_URL_MAX, NICKNAME_MAX, PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES, PRIVACY_CHOICES,
                        USERNAME_MAX, USERNAME_MIN)
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
    return {str(status): {"$ref": f"#/components/responses/E{status}"} for status in statuses}


ERROR_MEANINGS = {
    400: "Malformed JSON, or a body that is not a JSON object (code malformed_json).",
    401: "Missing, invalid, expired, revoked or wrong-type token; or wrong credentials.",
    403: "Forbidden (e.g. registration_closed, account_deactivated, wrong_password).",
    404: "Not found.",
    409: "Conflict (e.g. username_taken).",
    413: "JSON body over 64 KiB.",
    422: "Validation failed; `field` names the field (codes: missing_field, unknown_field, invalid_field, "
         "immutable_field, password_too_short, password_too_long, username_all_digits).",
    429: "Rate limited; `Retry-After` says how many seconds to wait.",
    503: "Database unavailable (or bipupu_id space exhausted); retry later.",
}

BIPUPU_ID = {"type": "string", "pattern": "^[0-9]{8}$", "examples": ["00000002"]}
TIMESTAMP = {"type": "string", "format": "date-time", "examples": ["2026-02-10T16:00:00Z"]}
PASSWORD = {"type": "string", "minLength": 1, "description": f"{PASSWORD_MIN_BYTES}–{PASSWORD_MAX_BYTES} bytes of UTF-8"}
USERNAME = {
    "type": "string", "minLength": USERNAME_MIN, "maxLength": USERNAME_MAX,
    "description": "Letters of any script, digits, '_', '.', '-'; not all digits. Unique after NFKC + casefold.",
    "examples": ["星语者_7"],
}
NICKNAME = {"type": "string", "minLength": 1, "maxLength": NICKNAME_MAX}
AVATAR_URL = {"type": ["string", "null"], "maxLength": AVATAR_URL_MAX,
              "description": "An http(s) URL or a server-relative path starting with /."}
PROFILE = {"type": "object", "description": "Free keys (birthday, bazi, mbti, zodiac…); at most 2 KB as JSON."}
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

SECURED = [{"bearer": []}]

PATHS: dict[str, dict[str, Any]] = {
    "/auth/register": {"post": {
        "summary": "Create an account (when registration is open) and log it in.",
        "operationId": "register", "tags": ["auth"], "requestBody": body("RegisterRequest"),
        "responses": {"201": ok("The new account with its first token pair.", "Account"),
                      **errors(400, 403, 409, 413, 422, 429, 503)},
    }},
    "/auth/login": {"post": {
        "summary": "Log in with username (matched after NFKC + casefold) and password.",
        "operationId": "login", "tags": ["auth"], "requestBody": body("LoginRequest"),
        "responses": {"200": ok("A new session's token pair.", "Account"), **errors(400, 401, 403, 413, 422, 429, 503)},
    }},
    "/auth/refresh": {"post": {
        "summary": "Trade a refresh token for a new pair; the old one stops working, and presenting it again "
                   "signs the whole session out.",
        "operationId": "refresh", "tags": ["auth"], "requestBody": body("RefreshRequest"),
        "responses": {"200": ok("A new token pair.", "TokenPair"), **errors(400, 401, 403, 413, 422, 503)},
    }},
    "/auth/logout": {"post": {
        "summary": "End this session (by access token or refresh_token), or every session with all=true.",
        "operationId": "logout", "tags": ["auth"], "requestBody": body("LogoutRequest", required=False),
        "security": [{"bearer": []}, {}],
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
    "/health": {"get": {
        "summary": "Liveness and database state.", "operationId": "health", "tags": ["operations"],
        "security": [],
        "responses": {"200": ok("Healthy.", "Health"), "503": ok("The database is unusable.", "Health")},
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
