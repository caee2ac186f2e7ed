"""Security: no secrets in logs, forged tokens, odd and traversing paths, SQL metacharacters, who may touch what."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import logging
import sqlite3
from contextlib import closing, suppress
from typing import Any, Callable

import aiohttp
import pytest
from aiohttp import WSMsgType, web
from itsdangerous import URLSafeSerializer

from bipupu_server import keys
from bipupu_server.app import init_app
from bipupu_server.web.accesslog import RedactingAccessLogger, RedactingFormatter
from tests.conftest import (ADMIN_PASSWORD, PASSWORD, assert_error, bearer, connect_with, db_rows, db_write, register,
                            send_card, until)

ALICE, BOB, CAROL = "00000002", "00000003", "00000004"
SALT = "bipupu.token.v1"
WAIT = 2.0  # bound on every wait for an answer that should come at once
FAR_FUTURE = 4_000_000_000
# What must never come back in a response body: files on the server, the database, the schema.
FILE_MARKERS = (b"root:x:0:0", b"root:", b"SQLite format 3", b"CREATE TABLE", b"PRAGMA", b"[metadata]",
                b"import ", b"Traceback")
# Written by the scheduler's first tick, in the background, whenever it gets to it.
SCHEDULER_TABLES = {"broadcast_runs", "daily_deliveries"}
SQL_NASTIES = [
    "' OR 1=1 --",
    '"; DROP TABLE users; --',
    "x'); DELETE FROM messages;--",
    "%_ \\ ? ?1 :name @p $q",
]


# Helpers ----------------------------------------------------------------------------------------

def read_file(db_path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read an SQLite file through a read-only connection of our own (blocking: use a thread)."""
    with closing(sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)) as conn:
        return conn.execute(sql, params).fetchall()


async def schema_and_counts(client) -> dict[str, Any]:
    """The tables and how many rows each holds: what an injection would disturb."""
    tables = [name for (name,) in await db_rows(client, "SELECT name FROM sqlite_master WHERE type = 'table'")]
    counts = {name: (await db_rows(client, f'SELECT count(*) FROM "{name}"'))[0][0] for name in tables
              if name not in SCHEDULER_TABLES}
    schema = await db_rows(client, "SELECT type, name, sql FROM sqlite_master ORDER BY name")
    return {"schema": schema, "counts": counts}


async def befriend(client, owner: dict[str, Any], contact_id: str, alias: str | None = None) -> dict[str, Any]:
    resp = await client.post("/contacts", json={"contact_id": contact_id, "alias": alias}, headers=bearer(owner))
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def ws_refused_with(client, token: str, how: str) -> int | None:
    """Offer `token` to /ws one way; returns the close code the server answers with."""
    ws = await connect_with(client, token, how)
    try:
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == WSMsgType.CLOSE, (msg.type, msg.data)
        return msg.data
    finally:
        await ws.close()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims_of(token: str) -> dict[str, Any]:
    _, claims = URLSafeSerializer("any key", salt=SALT).loads_unsafe(token)
    assert isinstance(claims, dict), token
    return claims


@pytest.fixture
async def carol(client, alice, bob) -> dict[str, Any]:
    return await register(client, "carol")


# Logs hold no secrets ------------------------------------------------------------------------

@pytest.fixture
def debug_logs(caplog):
    """Every record of every logger, the access log included, from before the server starts."""
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="aiohttp.access")
    return caplog


@pytest.fixture
async def served_like_run_py(debug_logs, make_config, clock):
    """The app behind web.AppRunner with run.py's RedactingAccessLogger (the test server logs with aiohttp's
    own AccessLogger, which writes query strings as they are), on a free port; an HTTP session to it."""
    app = init_app(make_config(), clock=clock)
    runner = web.AppRunner(app, access_log_class=RedactingAccessLogger)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        host, port = runner.addresses[0][:2]
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            yield app, session, (host, port)
    finally:
        await runner.cleanup()


async def test_logs_hold_no_password_token_or_key_through_a_whole_session(served_like_run_py, debug_logs):
    app, http, _ = served_like_run_py
    first, second, wrong = "first-pass-9f3k", "second-pass-7q2z", "wrong-pass-4m8x"
    tokens: list[str] = []

    async def ok(resp, status: int) -> Any:
        assert resp.status == status, await resp.text()
        body = await resp.json() if resp.content_type == "application/json" else None
        if isinstance(body, dict):
            tokens.extend(body[name] for name in ("access_token", "refresh_token") if name in body)
        return body

    account = await ok(await http.post("/auth/register", json={"username": "alice", "password": first}), 201)
    await ok(await http.post("/auth/register", json={"username": "bob", "password": second}), 201)
    login = await ok(await http.post("/auth/login", json={"username": "alice", "password": first}), 200)
    pair = await ok(await http.post("/auth/refresh", json={"refresh_token": login["refresh_token"]}), 200)
    # A reused refresh token (revokes that login) and a tampered access token: refusals are logged too.
    await ok(await http.post("/auth/refresh", json={"refresh_token": login["refresh_token"]}), 401)
    await ok(await http.get("/me", headers={"Authorization": f"Bearer {pair['access_token']}x"}), 401)
    await ok(await http.put("/me/password", json={"old_password": first, "new_password": second},
                            headers=bearer(account)), 204)
    await ok(await http.post("/auth/login", json={"username": "alice", "password": wrong}), 401)
    await ok(await http.post("/auth/login", json={"username": "alice", "password": first}), 401)
    fresh = await ok(await http.post("/auth/login", json={"username": "alice", "password": second}), 200)
    async with http.ws_connect("/ws", params={"token": fresh["access_token"]}) as ws:
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == WSMsgType.TEXT and json.loads(msg.data)["type"] == "auth_ok", msg
    async with http.ws_connect("/ws", params={"token": login["access_token"]}) as ws:  # signed out by the reuse
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == WSMsgType.CLOSE and msg.data == 4003, msg  # signed out: do not retry
    await ok(await http.get("/health", params={"access_token": fresh["access_token"],
                                               "refresh_token": fresh["refresh_token"], "password": second}), 200)
    await ok(await http.post("/auth/logout", json={"refresh_token": fresh["refresh_token"]},
                             headers=bearer(fresh)), 204)

    hashes = [row[0] for row in await asyncio.to_thread(read_file, app[keys.config].db_path,
                                                          "SELECT password_hash FROM users")]
    secrets = {"password": [first, second, wrong, ADMIN_PASSWORD], "token": tokens,
               "token signature": [token.rsplit(".", 1)[1] for token in tokens],
               "secret key": [app[keys.config].secret_key], "password hash": hashes}
    assert len(tokens) == 10 and len(hashes) == 3

    records = debug_logs.get_records("setup") + debug_logs.get_records("call")
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    lines = [formatter.format(record) for record in records]
    leaks = [f"{kind} {secret[:12]}… in: {line[:300]}"
             for kind, values in secrets.items() for secret in values for line in lines if secret in line]
    assert not leaks, "\n".join(leaks)

    # The check above means something only if the access log really ran, through the redacting logger.
    access = [record.getMessage() for record in records if record.name == "aiohttp.access"]
    assert any('"GET /ws?token=[redacted]" 101' in line for line in access), access
    assert any("/health?access_token=[redacted]&refresh_token=[redacted]&password=[redacted]" in line
               for line in access), access
    assert any('"POST /auth/login" 401' in line for line in access), access


def test_the_log_formatter_redacts_tokens_and_passwords_wherever_they_appear(alice_tokens_offline):
    """run.py formats every line with it: the last guard for what a library logs on its own."""
    access, refresh = alice_tokens_offline
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s")))
    logger = logging.getLogger("tests.redaction")
    logger.addHandler(handler)
    logger.propagate, level = False, logger.level
    logger.setLevel(logging.DEBUG)
    try:
        logger.error("Error handling request: Invalid header value char: b'Bearer %s\\x01'", access)
        logger.warning("GET /ws?since=0190a000-0000-7000-8000-000000000001&token=%s HTTP/1.1", access)
        logger.info("body %s", {"refresh_token": refresh, "password": "hunter2-hunter2", "content": "hello"})
        logger.info('json {"old_password": "first-secret", "new_password": "second-secret"}')
        try:
            raise ValueError(f"could not parse {refresh}")
        except ValueError:
            logger.exception("failed in bipupu_server.web.auth for %s", "00000002")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
        logger.setLevel(level)
    text = stream.getvalue()
    for secret in (access, refresh, *access.split("."), *refresh.split("."), "hunter2-hunter2", "first-secret",
                   "second-secret"):
        if len(secret) >= 8:
            assert secret not in text, (secret, text)
    # What is not secret stays readable.
    for kept in ("0190a000-0000-7000-8000-000000000001", "bipupu_server.web.auth", "00000002", "hello",
                 "Traceback", "ValueError", "GET /ws?since="):
        assert kept in text, (kept, text)


@pytest.fixture
def alice_tokens_offline(make_config, clock) -> tuple[str, str]:
    """A real access and refresh token pair, as the server signs them (no server needed)."""
    from bipupu_server.tokens import TokenSigner
    signer = TokenSigner(make_config().secret_key, clock, access_ttl_s=3600, refresh_ttl_s=86400)
    return signer.access("00000002", "5b0f7e2a-2f4c-4f5e-9d0e-6c1f1d2e3a4b"), signer.refresh("session")[0]


async def test_a_client_hanging_up_mid_body_is_no_server_error(served_like_run_py, debug_logs, monkeypatch):
    """A phone that loses signal while uploading a card: run.py's setting (no handler cancellation) makes the
    handler see the lost connection; that is the client's doing, not a 500 or an ERROR with a traceback."""
    app, http, (host, port) = served_like_run_py
    account = await (await http.post("/auth/register", json={"username": "alice", "password": PASSWORD})).json()
    await (await http.post("/auth/register", json={"username": "bob", "password": PASSWORD})).json()
    signer = app[keys.accounts].signer
    verify, reading = signer.verify, asyncio.Event()

    def verify_then_tell(*args: Any, **kwargs: Any) -> Any:
        claims = verify(*args, **kwargs)
        reading.set()  # the handler's next step is reading the body
        return claims

    monkeypatch.setattr(signer, "verify", verify_then_tell)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    writer.write((f"POST /messages HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: application/json\r\n"
                  f"Authorization: Bearer {account['access_token']}\r\nContent-Length: 200\r\n\r\n"
                  '{"receiver_id": "00000003", "con').encode())
    await writer.drain()
    await asyncio.wait_for(reading.wait(), WAIT)
    await asyncio.sleep(0)  # the handler is now reading the body
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()
    # The handler has noticed, logged and finished once its request is in the access log.
    await until(lambda: any(r.name == "aiohttp.access" and '"POST /messages"' in r.getMessage()
                            for r in debug_logs.get_records("call")), "the hung-up request in the access log")

    errors = [r for r in debug_logs.get_records("call") if r.levelno >= logging.ERROR]
    assert not errors, "\n".join(logging.Formatter().format(r) for r in errors)
    metrics = await (await http.get("/metrics")).text()
    assert 'bipupu_http_responses_total{status="201"}' in metrics, metrics  # the registrations were counted
    assert 'bipupu_http_responses_total{status="500"}' not in metrics, metrics
    assert (await http.get("/health")).status == 200
    assert await asyncio.to_thread(read_file, app[keys.config].db_path, "SELECT count(*) FROM messages") == [(0,)]


# Forged tokens and algorithm confusion -------------------------------------------------------

def _jwt(header: dict[str, Any], claims: dict[str, Any], key: bytes | None) -> str:
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = b64(hmac.new(key, signing_input.encode(), hashlib.sha256).digest()) if key is not None else ""
    return f"{signing_input}.{signature}"


def _itsdangerous(secret: str, claims: dict[str, Any], *, salt: str = SALT, digest=hashlib.sha256) -> str:
    return URLSafeSerializer(secret, salt=salt, signer_kwargs={"digest_method": digest}).dumps(claims)


# Each gets (the server's secret key, the claims of alice's real access token) and forges one.
FORGERIES: dict[str, Callable[[str, dict[str, Any]], str]] = {
    "jwt-alg-none": lambda secret, c: _jwt({"alg": "none", "typ": "JWT"}, {**c, "exp": FAR_FUTURE}, None),
    "jwt-hs256-with-the-secret": lambda secret, c: _jwt({"alg": "HS256", "typ": "JWT"}, {**c, "exp": FAR_FUTURE},
                                                        secret.encode()),
    "hmac-sha1-itsdangerous-default": lambda secret, c: _itsdangerous(secret, c, digest=hashlib.sha1),
    "right-key-other-salt": lambda secret, c: _itsdangerous(secret, c, salt="bipupu.token.v2"),
    "right-key-default-salt": lambda secret, c: _itsdangerous(secret, c, salt="itsdangerous"),
    "access-without-exp": lambda secret, c: _itsdangerous(secret, {k: v for k, v in c.items() if k != "exp"}),
    "exp-as-a-string": lambda secret, c: _itsdangerous(secret, {**c, "exp": str(FAR_FUTURE)}),
    "exp-as-a-float": lambda secret, c: _itsdangerous(secret, {**c, "exp": float(FAR_FUTURE)}),
    "unsigned-payload-only": lambda secret, c: b64(json.dumps({**c, "exp": FAR_FUTURE}).encode()),
}


def forge(client, account: dict[str, Any], kind: str) -> str:
    claims = claims_of(account["access_token"])
    assert claims["typ"] == "access" and claims["sub"] == account["bipupu_id"], claims
    return FORGERIES[kind](client.server.app[keys.config].secret_key, claims)


@pytest.mark.parametrize("kind", FORGERIES)
async def test_a_forged_token_is_401_on_rest_and_changes_nothing(client, alice, bob, kind):
    token = forge(client, alice, kind)
    headers = {"Authorization": f"Bearer {token}"}
    await assert_error(await client.get("/me", headers=headers), 401, "invalid_token")
    resp = await client.post("/messages", json={"receiver_id": BOB, "content": "forged"}, headers=headers)
    await assert_error(resp, 401, "invalid_token")
    resp = await client.put("/me", json={"nickname": "Forged"}, headers=headers)
    await assert_error(resp, 401, "invalid_token")
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]
    assert await db_rows(client, "SELECT nickname FROM users WHERE bipupu_id = ?", (ALICE,)) == [("alice",)]


@pytest.mark.parametrize("how", ["header", "query", "frame"])
@pytest.mark.parametrize("kind", FORGERIES)
async def test_a_forged_token_is_closed_with_4001_on_the_socket(client, alice, kind, how):
    assert await ws_refused_with(client, forge(client, alice, kind), how) == 4001


async def test_the_genuine_token_passes_where_the_forgeries_fail(client, alice):
    """The forgeries copy a live token's claims: only their signing makes them fail."""
    claims = claims_of(alice["access_token"])
    remade = _itsdangerous(client.server.app[keys.config].secret_key, claims)
    assert remade == alice["access_token"]
    assert (await client.get("/me", headers={"Authorization": f"Bearer {remade}"})).status == 200


# Tokens that are not ASCII ------------------------------------------------------------------------
# itsdangerous cannot even encode some (a raw 0xff byte arrives as a lone surrogate): they were a 500.

NON_ASCII_TOKENS = {"raw-0xff": "\udcff", "utf-8": "令牌.签名", "latin-1-after-a-real-token": None}


def non_ascii(kind: str, account: dict[str, Any]) -> str:
    token = NON_ASCII_TOKENS[kind]
    return token if token is not None else account["access_token"] + "\u00e9"


@pytest.mark.parametrize("kind", NON_ASCII_TOKENS)
async def test_a_token_that_is_not_ascii_is_401_everywhere_a_token_goes(client, alice, kind):
    token = non_ascii(kind, alice)
    # As bytes on the wire: a 0xff byte, or UTF-8 (aiohttp's client would refuse to send either).
    header = token.encode("utf-8", "surrogateescape").decode("latin-1")
    for path in ("/me", "/messages", "/contacts"):
        status, headers, body = await raw_get(client, path, {"Authorization": f"Bearer {header}"})
        assert status == 401, (path, body)
        assert json.loads(body)["error"]["code"] == "invalid_token"
    if kind != "raw-0xff":  # JSON text cannot carry a lone surrogate
        for body in ({"refresh_token": token}, {"refresh_token": token, "all": True}):
            await assert_error(await client.post("/auth/logout", json=body), 401, "invalid_token")
            await assert_error(await client.post("/auth/refresh", json={"refresh_token": token}), 401,
                               "invalid_token")
        assert await ws_refused_with(client, token, "frame") == 4001
        assert await ws_refused_with(client, token, "query") == 4001
    assert (await client.get("/me", headers=bearer(alice))).status == 200


async def test_a_raw_0xff_token_on_the_websocket_upgrade_is_closed_4001_not_a_500(client, alice):
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    key = base64.b64encode(b"0123456789abcdef").decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer \xff\r\n\r\n")
                 .encode("latin-1"))
    raw = b""
    try:
        while len(raw.partition(b"\r\n\r\n")[2]) < 4:  # the 101, then the close frame's first bytes
            chunk = await asyncio.wait_for(reader.read(4096), WAIT)
            assert chunk, raw
            raw += chunk
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    head, _, frames = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 101"), head
    assert frames[0] == 0x88 and int.from_bytes(frames[2:4], "big") == 4001, frames[:16]
    assert b"500" not in frames


async def test_no_answer_names_the_server_software_or_its_version(client, alice):
    for resp in (await client.get("/health"), await client.get("/nowhere"), await client.get("/me"),
                 await client.get("/me", headers=bearer(alice))):
        assert resp.headers["Server"] == "bipupu", resp.headers


# Path traversal and odd paths ----------------------------------------------------------------

async def raw_get(client, target: str, headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """Send the request line exactly as given (no client-side normalisation); returns status, headers, body."""
    host, port = client.server.host, client.server.port
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
    try:
        head = [f"GET {target} HTTP/1.1", f"Host: {host}:{port}", "Connection: close",
                *(f"{name}: {value}" for name, value in (headers or {}).items())]
        writer.write(("\r\n".join(head) + "\r\n\r\n").encode("latin-1"))
        await writer.drain()
        raw = await asyncio.wait_for(reader.read(), WAIT)  # the server closes after its answer
    finally:
        writer.close()
        with suppress(ConnectionError):
            await writer.wait_closed()
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *header_lines = top.decode("latin-1").split("\r\n")
    answer = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in header_lines)}
    return int(status_line.split()[1]), answer, body


def assert_refused_without_content(status: int, headers: dict[str, str], body: bytes, *,
                                   json_shape: bool = True) -> None:
    assert 400 <= status < 500, (status, body[:300])
    for marker in FILE_MARKERS:
        assert marker not in body, (marker, body[:300])
    if json_shape:
        assert headers.get("content-type", "").startswith("application/json"), (headers, body[:300])
        data = json.loads(body)
        assert set(data) == {"error"} and isinstance(data["error"].get("code"), str), data
        assert isinstance(data["error"].get("message"), str) and data["error"]["message"], data


ODD_PATHS = [
    "/users/..%2F..%2Fetc%2Fpasswd",
    "/users/..%2F..%2F..%2Fschema.sql",
    "/users/%2e%2e%2f%2e%2e%2fetc%2fpasswd",
    "/messages/..%2F..%2Fschema.sql",
    "/messages/..%5c..%5cschema.sql",
    "/messages/%2e%2e/%2e%2e/schema.sql",
    "/static/../schema.sql",
    "/static/../../../../etc/passwd",
    "/static/..%2Fschema.sql",
    "/static/%2e%2e/%2e%2e/etc/passwd",
    "/../../etc/passwd",
    "/..%2F..%2Fetc%2Fpasswd",
    "/schema.sql",
    "/setup.cfg",
    "/run.py",
    "/data/bipupu.db",
    "/bipupu.db",
    "/secret_key",
    "/static/",
    "/users/%00",
    "/users/00000002%00",
    "/users/%0000000002",
    "/messages/%00",
    "/messages/%00..%2F..%2Fschema.sql",
    "/me%00",
    "/%00",
    "/contacts/%00",
    "/users/%2500",
    "/messages?peer=%00",
    "/messages?before=%00",
    "/messages?msg_type=USER_POSTCARD%00",
    "/users/" + "7" * 7000,
    "/" + "a" * 7000,
]


@pytest.mark.parametrize("target", ODD_PATHS, ids=lambda target: target[:48])
async def test_an_odd_or_traversing_path_is_a_4xx_in_the_error_shape_never_a_file(client, alice, target):
    status, headers, body = await raw_get(client, target, bearer(alice))
    assert_refused_without_content(status, headers, body)


@pytest.mark.parametrize("target", ["/users/" + "7" * 8300, "/" + "a" * 9000, "/messages?peer=" + "0" * 9000],
                         ids=["user-8k", "path-9k", "query-9k"])
async def test_a_request_line_over_8_kib_is_refused_with_a_4xx(client, alice, target):
    status, headers, body = await raw_get(client, target, bearer(alice))
    # aiohttp's parser refuses it before any handler or middleware: its own 4xx, maybe not our JSON.
    assert_refused_without_content(status, headers, body, json_shape=False)
    resp = await client.get("/me", headers=bearer(alice))  # and the server is none the worse
    assert resp.status == 200


async def test_a_user_card_through_a_traversing_id_is_not_someone_elses(client, alice, bob):
    for target in (f"/users/{BOB}%2F..%2F{ALICE}", f"/users/..%2F{BOB}", f"/users/{BOB}%00", f"/users/{BOB}%20"):
        status, headers, body = await raw_get(client, target, bearer(alice))
        assert_refused_without_content(status, headers, body)
        assert status == 404, (target, body)


# Injection -----------------------------------------------------------------------------------

@pytest.fixture
async def open_client(make_client):
    """No rate limits: these tests make many refused attempts on purpose."""
    return await make_client(rate_limit=False)


async def test_sql_metacharacters_in_usernames_are_refused_and_no_login_bypass_works(open_client):
    client = open_client
    alice = await register(client, "alice")
    before = await schema_and_counts(client)
    for name in SQL_NASTIES + ["admin' --", "alice'--"]:
        resp = await client.post("/auth/register", json={"username": name, "password": PASSWORD})
        await assert_error(resp, 422, "invalid_field", "username")
    # Classic bypasses, and LIKE wildcards that would match alice were the lookup a pattern.
    for name in SQL_NASTIES + ["alice' --", 'alice" --', "' OR '1'='1", "_lice", "%", "ali%", "alice\u0000"]:
        for password in (PASSWORD, "' OR '1'='1", '" OR ""="'):
            resp = await client.post("/auth/login", json={"username": name, "password": password})
            await assert_error(resp, 401, "invalid_credentials")
    resp = await client.post("/auth/login", json={"username": "alice", "password": "' OR '1'='1"})
    await assert_error(resp, 401, "invalid_credentials")
    assert await schema_and_counts(client) == before
    assert (await client.get("/me", headers=bearer(alice))).status == 200


@pytest.mark.parametrize("nasty", SQL_NASTIES)
async def test_sql_metacharacters_in_stored_text_come_back_verbatim_and_the_tables_stay_intact(open_client, nasty):
    client = open_client
    alice, bob = await register(client, "alice"), await register(client, "bob")
    schema = (await schema_and_counts(client))["schema"]

    resp = await client.put("/me", json={"nickname": nasty, "cosmic_profile": {nasty: nasty},
                                         "avatar_url": "/avatars/" + nasty.replace(" ", "")},
                            headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    me = await resp.json()
    assert (me["nickname"], me["cosmic_profile"]) == (nasty, {nasty: nasty})
    resp = await client.get(f"/users/{ALICE}", headers=bearer(bob))
    assert (await resp.json())["nickname"] == nasty

    contact = await befriend(client, bob, ALICE, alias=nasty)
    assert contact["alias"] == nasty
    resp = await client.put(f"/contacts/{ALICE}", json={"alias": nasty + "!"}, headers=bearer(bob))
    assert resp.status == 200 and (await resp.json())["alias"] == nasty + "!"
    listed = await (await client.get("/contacts", headers=bearer(bob))).json()
    assert [(c["contact_id"], c["alias"], c["nickname"]) for c in listed] == [(ALICE, nasty + "!", nasty)]

    card = await send_card(client, alice, BOB, nasty, client_msg_id=nasty)
    assert card["content"] == nasty
    resp = await client.post("/messages", json={"receiver_id": BOB, "content": nasty, "client_msg_id": nasty},
                             headers=bearer(alice))
    assert resp.status == 200 and (await resp.json())["id"] == card["id"]  # the key matched exactly itself

    assert (await schema_and_counts(client))["schema"] == schema
    assert await db_rows(client, "SELECT count(*) FROM users") == [(3,)]
    assert await db_rows(client, "SELECT content, client_msg_id FROM messages") == [(nasty, nasty)]
    assert await db_rows(client, "SELECT alias FROM trusted_contacts") == [(nasty + "!",)]
    assert await db_rows(client, "SELECT nickname FROM users WHERE bipupu_id = ?", (ALICE,)) == [(nasty,)]
    assert await db_rows(client, "PRAGMA integrity_check") == [("ok",)]


@pytest.mark.parametrize("name", ["peer", "before", "since", "msg_type", "direction", "limit"])
async def test_sql_metacharacters_in_mailbox_query_parameters_are_422(client, alice, bob, name):
    await send_card(client, alice, BOB, "keep me")
    before = await schema_and_counts(client)
    for value in SQL_NASTIES + ["00000002' OR '1'='1", "1 OR 1=1", "USER_POSTCARD' --", "1; DROP TABLE messages"]:
        resp = await client.get("/messages", params={name: value}, headers=bearer(bob))
        await assert_error(resp, 422, "invalid_field", name)
    assert await schema_and_counts(client) == before


async def test_sql_metacharacters_in_path_parameters_find_nothing_and_delete_nothing(client, alice, bob):
    card = await send_card(client, alice, BOB, "keep me")
    await befriend(client, bob, ALICE, alias="Alice")
    resp = await client.post("/blocks", json={"blocked_id": ALICE}, headers=bearer(bob))
    assert resp.status == 201, await resp.text()
    before = await schema_and_counts(client)
    for nasty in SQL_NASTIES + ["0' OR '1'='1", "* "]:
        quoted = nasty.replace("%", "%25").replace("?", "%3F").replace("\\", "%5C").replace(" ", "%20")
        resp = await client.get(f"/messages/{quoted}", headers=bearer(bob))
        await assert_error(resp, 404, "message_not_found")
        resp = await client.delete(f"/messages/{quoted}", headers=bearer(bob))
        await assert_error(resp, 404, "message_not_found")
        resp = await client.delete(f"/contacts/{quoted}", headers=bearer(bob))
        await assert_error(resp, 404, "contact_not_found")
        resp = await client.put(f"/contacts/{quoted}", json={"alias": "x"}, headers=bearer(bob))
        await assert_error(resp, 404, "contact_not_found")
        resp = await client.delete(f"/blocks/{quoted}", headers=bearer(bob))
        await assert_error(resp, 404, "block_not_found")
        resp = await client.get(f"/users/{quoted}", headers=bearer(bob))
        await assert_error(resp, 404, "user_not_found")
    assert await schema_and_counts(client) == before
    resp = await client.get(f"/messages/{card['id']}", headers=bearer(bob))
    assert resp.status == 200 and await resp.json() == card


# Authorisation boundaries -------------------------------------------------------------------

async def test_another_users_card_cannot_be_read_or_deleted_and_looks_like_no_card_at_all(client, alice, bob, carol):
    card = await send_card(client, alice, BOB, "for bob only")
    unknown = card["id"][:-4] + ("0000" if not card["id"].endswith("0000") else "1111")
    for method in ("GET", "DELETE"):
        theirs = await client.request(method, f"/messages/{card['id']}", headers=bearer(carol))
        nobodys = await client.request(method, f"/messages/{unknown}", headers=bearer(carol))
        # The same answer as for a card that never existed: no oracle for other people's ids.
        assert await assert_error(theirs, 404, "message_not_found") == await assert_error(nobodys, 404,
                                                                                           "message_not_found")
    for query in ({"direction": "all"}, {"direction": "all", "peer": ALICE}, {"direction": "all", "peer": BOB},
                  {"since": unknown[:-12] + "0" * 12}):
        resp = await client.get("/messages", params=query, headers=bearer(carol))
        assert resp.status == 200, await resp.text()
        assert (await resp.json())["messages"] == [], query
    for owner in (alice, bob):
        resp = await client.get(f"/messages/{card['id']}", headers=bearer(owner))
        assert resp.status == 200 and await resp.json() == card
    assert await db_rows(client, "SELECT in_inbox, in_outbox FROM messages WHERE id = ?", (card["id"],)) == [(1, 1)]


async def test_another_users_contacts_and_blocks_cannot_be_renamed_or_removed(client, alice, bob, carol):
    await befriend(client, bob, CAROL, alias="Carol")
    resp = await client.post("/blocks", json={"blocked_id": ALICE}, headers=bearer(bob))
    assert resp.status == 201, await resp.text()
    contacts_before = await db_rows(client, "SELECT * FROM trusted_contacts")
    blocks_before = await db_rows(client, "SELECT * FROM user_blocks")

    # alice knows both ids, but only bob's lists hold them: she reaches her own (empty) lists only.
    await assert_error(await client.put(f"/contacts/{CAROL}", json={"alias": "pwned"}, headers=bearer(alice)),
                       404, "contact_not_found")
    await assert_error(await client.delete(f"/contacts/{CAROL}", headers=bearer(alice)), 404, "contact_not_found")
    await assert_error(await client.delete(f"/blocks/{ALICE}", headers=bearer(alice)), 404, "block_not_found")
    await assert_error(await client.delete(f"/blocks/{BOB}", headers=bearer(alice)), 404, "block_not_found")
    assert await (await client.get("/contacts", headers=bearer(alice))).json() == []
    assert await (await client.get("/blocks", headers=bearer(alice))).json() == []

    assert await db_rows(client, "SELECT * FROM trusted_contacts") == contacts_before
    assert await db_rows(client, "SELECT * FROM user_blocks") == blocks_before
    listed = await (await client.get("/contacts", headers=bearer(bob))).json()
    assert [(c["contact_id"], c["alias"]) for c in listed] == [(CAROL, "Carol")]


async def test_a_deactivated_users_live_token_stops_working_at_once(client, alice, bob, open_ws):
    assert (await client.get("/me", headers=bearer(alice))).status == 200  # the token is warm, maybe cached
    ws = await open_ws(alice)
    await ws.close()

    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (ALICE,))

    await assert_error(await client.get("/me", headers=bearer(alice)), 403, "account_deactivated")
    await assert_error(await client.get("/messages", headers=bearer(alice)), 403, "account_deactivated")
    resp = await client.post("/messages", json={"receiver_id": BOB, "content": "after"}, headers=bearer(alice))
    await assert_error(resp, 403, "account_deactivated")
    resp = await client.put("/me", json={"nickname": "Ghost"}, headers=bearer(alice))
    await assert_error(resp, 403, "account_deactivated")
    resp = await client.post("/contacts", json={"contact_id": BOB}, headers=bearer(alice))
    await assert_error(resp, 403, "account_deactivated")
    resp = await client.post("/auth/refresh", json={"refresh_token": alice["refresh_token"]})
    await assert_error(resp, 403, "account_deactivated")
    for how in ("header", "query", "frame"):
        assert await ws_refused_with(client, alice["access_token"], how) == 4003, how

    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]
    assert await db_rows(client, "SELECT count(*) FROM trusted_contacts") == [(0,)]
    assert await db_rows(client, "SELECT nickname FROM users WHERE bipupu_id = ?", (ALICE,)) == [("alice",)]
    assert (await client.get("/me", headers=bearer(bob))).status == 200  # bob is untouched
