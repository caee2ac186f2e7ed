"""The one JSON error shape, for every kind of bad request, and bad requests change nothing."""

from __future__ import annotations

import re
import sqlite3
from contextlib import closing
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import pytest

import bipupu_server
from bipupu_server import keys
from bipupu_server.app import ROUTES
from tests.conftest import ADMIN_PASSWORD, PASSWORD, assert_error, bearer, login, register

LIMIT = 64 * 1024
PACKAGE_DIR = str(Path(bipupu_server.__file__).resolve().parent)

# Every route that reads a JSON body (every POST/PUT/PATCH), straight from the app's route table so a
# new route is covered the day it is added; path parameters get a well-formed bipupu_id.
JSON_ROUTES = [(method, re.sub(r"{[^}]+}", "00000003", path))
               for method, path, _ in ROUTES if method in ("POST", "PUT", "PATCH")]
# Routes whose body may be left out entirely (an empty body means {}).
OPTIONAL_BODY = {("POST", "/auth/logout")}


def test_json_routes_include_the_account_routes():
    assert set(JSON_ROUTES) >= {
        ("POST", "/auth/register"), ("POST", "/auth/login"), ("POST", "/auth/refresh"), ("POST", "/auth/logout"),
        ("PUT", "/me"), ("PUT", "/me/password")}


MALFORMED = [
    pytest.param(b"{", id="unclosed"),
    pytest.param(b'{"username": "alice",}', id="trailing_comma"),
    pytest.param(b"{'username': 'alice'}", id="single_quotes"),
    pytest.param(b'{"username" "alice"}', id="missing_colon"),
    pytest.param(b'{"username": alice}', id="bare_word"),
    pytest.param(b'{"a": NaN}', id="nan"),
    pytest.param(b'{"a": Infinity}', id="infinity"),
    pytest.param(b'{"a": 1e400}', id="overflowing_number"),
    pytest.param(b'{"a": 1} {"b": 2}', id="two_documents"),
    pytest.param(b'{"a": "\x01"}', id="raw_control_char_in_string"),
    pytest.param(b"nul", id="truncated_literal"),
    pytest.param(b"\x00", id="nul_byte"),
]
NOT_AN_OBJECT = [
    pytest.param(b"[]", id="empty_array"),
    pytest.param(b'["username", "password"]', id="array"),
    pytest.param(b'[{"username": "alice"}]', id="array_of_object"),
    pytest.param(b'"username"', id="string"),
    pytest.param(b"42", id="integer"),
    pytest.param(b"3.5", id="float"),
    pytest.param(b"null", id="null"),
    pytest.param(b"true", id="true"),
]
INVALID_UTF8 = [
    pytest.param(b'{"username": "\xff\xfe", "password": "correct horse"}', id="ff_fe"),
    pytest.param(b'{"username": "al\xc3\x28ce"}', id="bad_continuation"),
    pytest.param(b'{"username": "\xc0\xaf"}', id="overlong"),
    pytest.param(b'{"username": "al\xed\xa0\x80ice"}', id="encoded_surrogate"),
    pytest.param(b'{"username": "alice\xe6\x98"}', id="truncated_sequence"),
    pytest.param(b'\xfe\xff\x00{\x00}', id="utf16_bom"),
]


def deep_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_objects(depth: int) -> bytes:
    return b'{"a":' * depth + b"1" + b"}" * depth


async def in_chunks(data: bytes, size: int = 8192) -> AsyncIterator[bytes]:
    """A body the client can only send chunked (no Content-Length)."""
    for start in range(0, len(data), size):
        yield data[start:start + size]


async def assert_shaped(client, resp, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """assert_error, and the body gives nothing of the server's insides away."""
    error = await assert_error(resp, status, code, field)
    text = await resp.text()
    app = client.server.app
    for leak in ("Traceback", 'File "', ".py", "site-packages", PACKAGE_DIR,
                 str(app[keys.config].data_dir), str(Path.cwd())):
        assert leak not in text, f"{leak!r} in error body {text}"
    return error


def sender(client, account: dict[str, Any]):
    """send(method, path, data) with a JSON content type, as that (logged-in) account."""
    async def send(method: str, path: str, data: Any):
        headers = {"Content-Type": "application/json", **bearer(account)}
        return await client.request(method, path, data=data, headers=headers)
    return send


@pytest.fixture
async def send(client, alice):
    """As the admin, so that the admin-only routes get as far as reading their body too (alice exists so that
    the routes naming 00000003 name a real account)."""
    return sender(client, await login(client, "admin", ADMIN_PASSWORD))


def db_state(client) -> dict[str, Any]:
    """Everything a failed write must leave as it was, read from the SQLite file itself."""
    with closing(sqlite3.connect(client.server.app[keys.config].db_path)) as conn:
        return {
            "users": conn.execute("SELECT * FROM users ORDER BY bipupu_id").fetchall(),
            "counter": conn.execute("SELECT value FROM counters WHERE name = 'bipupu_id'").fetchall(),
            "sessions": conn.execute("SELECT * FROM sessions ORDER BY id").fetchall(),
            "refresh_tokens": conn.execute("SELECT * FROM refresh_tokens ORDER BY token_hash").fetchall(),
        }


async def assert_every_route_refuses(client, send, routes, data: Callable[[], Any], status: int, code: str) -> None:
    """Send the same bad body to every route; report every route that does not answer as expected."""
    failures = []
    for method, path in routes:
        resp = await send(method, path, data())
        try:
            await assert_shaped(client, resp, status, code)
        except AssertionError as exc:
            failures.append(f"{method} {path}: {exc}")
    assert not failures, "\n".join(failures)


# Bodies that are not a JSON object -------------------------------------------------------------

@pytest.mark.parametrize("body", MALFORMED)
async def test_malformed_json_is_400(client, send, body):
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: body, 400, "malformed_json")


@pytest.mark.parametrize("body", NOT_AN_OBJECT)
async def test_json_that_is_not_an_object_is_400(client, send, body):
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: body, 400, "malformed_json")


@pytest.mark.parametrize("body", INVALID_UTF8)
async def test_invalid_utf8_is_400(client, send, body):
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: body, 400, "malformed_json")


@pytest.mark.parametrize("body", [b"", b"   ", b"\r\n"], ids=["empty", "spaces", "newline"])
async def test_empty_body_is_400_where_a_body_is_required(client, send, body):
    routes = [route for route in JSON_ROUTES if route not in OPTIONAL_BODY]
    await assert_every_route_refuses(client, send, routes, lambda: body, 400, "malformed_json")


# Deep nesting: the parser's limit, never a crash -----------------------------------------------

@pytest.mark.parametrize("body", [
    pytest.param(deep_arrays(30_000), id="arrays"),
    pytest.param(deep_objects(10_000), id="objects"),
    pytest.param(b'{"nickname": ' + deep_arrays(20_000) + b"}", id="arrays_in_a_field"),
])
async def test_deeply_nested_json_within_the_size_limit_is_400(client, send, body):
    assert len(body) <= LIMIT
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: body, 400, "malformed_json")


@pytest.mark.parametrize("body", [
    pytest.param(deep_arrays(100_000), id="arrays"),
    pytest.param(deep_objects(100_000), id="objects"),
])
async def test_deeply_nested_json_is_400_even_when_big_bodies_are_allowed(make_client, body):
    client = await make_client(max_body_bytes=1024 * 1024)  # let the body reach the JSON parser
    await register(client, "alice")
    send = sender(client, await login(client, "admin", ADMIN_PASSWORD))
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: body, 400, "malformed_json")


# Size -------------------------------------------------------------------------------------------

async def test_body_over_64_kib_is_413_with_content_length(client, send):
    body = b'{"username": "' + b"a" * LIMIT + b'"}'
    resp = await send("POST", "/auth/login", body)
    assert resp.request_info.headers.get("Content-Length") == str(len(body))
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: body, 413, "payload_too_large")


async def test_body_over_64_kib_is_413_when_chunked(client, send):
    body = b'{"username": "' + b"a" * LIMIT + b'"}'
    resp = await send("POST", "/auth/login", in_chunks(body))
    sent = resp.request_info.headers
    assert sent.get("Transfer-Encoding") == "chunked" and "Content-Length" not in sent
    await assert_every_route_refuses(client, send, JSON_ROUTES, lambda: in_chunks(body), 413, "payload_too_large")


@pytest.mark.parametrize("chunked", [False, True], ids=["content_length", "chunked"])
async def test_body_of_exactly_64_kib_is_read_and_one_byte_more_is_not(client, alice, chunked):
    send = sender(client, alice)

    def padded(nickname: str, size: int) -> bytes:
        body = b'{"nickname": "' + nickname.encode() + b'"}'
        return body + b" " * (size - len(body))

    accepted = padded("Padded", LIMIT)
    resp = await send("PUT", "/me", in_chunks(accepted) if chunked else accepted)
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["nickname"] == "Padded"

    refused = padded("Too big", LIMIT + 1)
    resp = await send("PUT", "/me", in_chunks(refused) if chunked else refused)
    await assert_shaped(client, resp, 413, "payload_too_large")
    me = await client.get("/me", headers=bearer(alice))
    assert (await me.json())["nickname"] == "Padded"


# Routing errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"),
    ("GET", "/"),
    ("POST", "/nope"),
    ("GET", "/me/nope"),
    ("GET", "/users"),
    ("GET", "/users/"),
    ("GET", "/users/00000002/cards"),
    ("POST", "/auth"),
    ("GET", "/openapi.yaml"),
    ("GET", "/static/../../etc/passwd"),
])
async def test_unknown_route_is_404(client, alice, method, path):
    await assert_shaped(client, await client.request(method, path, headers=bearer(alice)), 404, "not_found")


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("DELETE", "/me", {"GET", "PUT"}),
    ("POST", "/me", {"GET", "PUT"}),
    ("PATCH", "/me", {"GET", "PUT"}),
    ("GET", "/auth/login", {"POST"}),
    ("PUT", "/auth/register", {"POST"}),
    ("GET", "/me/password", {"PUT"}),
    ("DELETE", "/users/00000002", {"GET"}),
    ("POST", "/health", {"GET"}),
    ("DELETE", "/openapi.json", {"GET"}),
])
async def test_wrong_method_is_405_with_allow(client, alice, method, path, allowed):
    resp = await client.request(method, path, headers=bearer(alice))
    await assert_shaped(client, resp, 405, "method_not_allowed")
    assert "Allow" in resp.headers
    assert {m.strip() for m in resp.headers["Allow"].split(",")} - {"HEAD"} == allowed


async def test_wrong_method_is_405_even_without_a_token(client):
    resp = await client.delete("/me")
    await assert_shaped(client, resp, 405, "method_not_allowed")
    assert {m.strip() for m in resp.headers["Allow"].split(",")} - {"HEAD"} == {"GET", "PUT"}


# Authentication errors have the shape too ------------------------------------------------------

@pytest.mark.parametrize(("headers", "code"), [
    ({}, "missing_token"),
    ({"Authorization": "Bearer"}, "invalid_token"),
    ({"Authorization": "Bearer   "}, "invalid_token"),
    ({"Authorization": "Basic YWxpY2U6cGFzc3dvcmQ="}, "invalid_token"),
    ({"Authorization": "Bearer not-a-token"}, "invalid_token"),
    ({"Authorization": "Bearer \u00e9t\u00e9"}, "invalid_token"),
])
async def test_bad_authorization_is_401_in_the_shape(client, alice, headers, code):
    resp = await client.get("/me", headers=headers)
    await assert_shaped(client, resp, 401, code)
    assert resp.headers.get("WWW-Authenticate", "").lower().startswith("bearer")


# A failed write changes nothing ----------------------------------------------------------------

@pytest.mark.parametrize(("body", "status", "code", "field"), [
    pytest.param({"username": "alice", "password": PASSWORD}, 409, "username_taken", "username", id="taken"),
    pytest.param({"username": "ALICE", "password": PASSWORD}, 409, "username_taken", "username",
                 id="taken_other_case"),
    pytest.param({"username": "ａｌｉｃｅ", "password": PASSWORD}, 409, "username_taken", "username",
                 id="taken_full_width"),
    pytest.param({"username": "carol", "password": "short"}, 422, "password_too_short", "password",
                 id="short_password"),
    pytest.param({"username": "carol", "password": "x" * 73}, 422, "password_too_long", "password",
                 id="long_password"),
    pytest.param({"username": "c a", "password": PASSWORD}, 422, "invalid_field", "username", id="bad_username"),
    pytest.param({"username": "12345678", "password": PASSWORD}, 422, "username_all_digits", "username",
                 id="all_digits"),
    pytest.param({"username": "carol", "password": PASSWORD, "nickname": ""}, 422, "invalid_field", "nickname",
                 id="bad_nickname"),
    pytest.param({"username": "carol", "password": PASSWORD, "bipupu_id": "00000042"}, 422, "unknown_field",
                 "bipupu_id", id="chosen_bipupu_id"),
    pytest.param({"password": PASSWORD}, 422, "missing_field", "username", id="missing_username"),
])
async def test_failed_registration_changes_nothing(client, alice, body, status, code, field):
    before = db_state(client)
    assert len(before["users"]) == 2
    await assert_shaped(client, await client.post("/auth/register", json=body), status, code, field)
    assert db_state(client) == before
    # and no bipupu_id was used up: the next account gets the next number
    assert (await register(client, "dave"))["bipupu_id"] == "00000003"


@pytest.mark.parametrize(("body", "status", "code"), [
    pytest.param(b'{"username": "carol", "password": ', 400, "malformed_json", id="malformed"),
    pytest.param(b'{"username": "carol", "password": "' + b"p" * LIMIT + b'"}', 413, "payload_too_large",
                 id="too_large"),
])
async def test_refused_registration_body_changes_nothing(client, send, body, status, code):
    before = db_state(client)
    await assert_shaped(client, await send("POST", "/auth/register", body), status, code)
    assert db_state(client) == before
    assert (await register(client, "carol"))["bipupu_id"] == "00000003"


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    pytest.param({"old_password": "wrong password", "new_password": "new password 1"}, 403, "wrong_password", None,
                 id="wrong_old"),
    pytest.param({"old_password": PASSWORD, "new_password": "short"}, 422, "password_too_short", "new_password",
                 id="short_new"),
    pytest.param({"old_password": PASSWORD}, 422, "missing_field", "new_password", id="missing_new"),
    pytest.param({"old_password": PASSWORD, "new_password": "new password 1", "all": True}, 422, "unknown_field",
                 "all", id="unknown"),
])
async def test_failed_password_change_changes_nothing(client, alice, body, status, code, field):
    second_login = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert second_login.status == 200
    before = db_state(client)
    await assert_shaped(client, await client.put("/me/password", json=body, headers=bearer(alice)),
                        status, code, field)
    assert db_state(client) == before
    resp = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 200
