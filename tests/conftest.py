"""Shared fixtures: a real app on a real SQLite file in a temp dir, with an injected clock."""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import re
import sqlite3
import subprocess
import time
from contextlib import closing
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest
from aiohttp import WSMsgType

from bipupu_server import keys
from bipupu_server.app import init_app
from bipupu_server.config import Config
from tests.processes import STOP_TIMEOUT_S, Server, environment

# The suite gives the same result whatever BIPUPU_* a user's shell exports (a data dir, a port, rate
# limits off, a time zone…): none of them reaches the code under test. BIPUPU_FUZZ_* and BIPUPU_TEST_* tune the
# suite itself.
for _name in [name for name in os.environ if name.startswith("BIPUPU_") and not name.startswith(("BIPUPU_FUZZ_", "BIPUPU_TEST_"))]:
    del os.environ[_name]

PASSWORD = "correct horse"
ADMIN_PASSWORD = "admin-password-1"
BOB = "00000003"  # the second account a test registers (the admin is 00000001)
WAIT = 2.0  # bound on every wait for something that should come
QUIET = 0.3  # bound on every wait for a frame that should not come


class FakeClock:
    """Time that moves only when a test says so; `set_wall` jumps the wall clock alone."""

    def __init__(self, start: float = 1_790_000_000.0):
        self.wall = start
        self.mono = 1000.0
        self._moved: asyncio.Event | None = None
        self._start = (self.wall, self.mono)
        self._seen: dict[asyncio.Task | None, tuple[float, float]] = {}  # per sleeping task: the time it woke to

    def time(self) -> float:
        return self.wall

    def monotonic(self) -> float:
        return self.mono

    async def sleep(self, seconds: float) -> None:
        """Sleep until the test moves the clock (by any amount): sleepers then look again.

        A move made while a sleeper was busy counts too: it returns at once. Each sleeping task
        keeps its own idea of what it has seen, so one sleeper never hides a move from another.
        """
        task = asyncio.current_task()
        if (self.wall, self.mono) == self._seen.get(task, self._start):
            if self._moved is None or self._moved.is_set():
                self._moved = asyncio.Event()
            await self._moved.wait()
        self._seen[task] = (self.wall, self.mono)

    def _wake(self) -> None:
        if self._moved is not None:
            self._moved.set()

    def advance(self, seconds: float) -> None:
        self.wall += seconds
        self.mono += seconds
        self._wake()

    def set_wall(self, value: float) -> None:
        self.wall = value
        self._wake()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


# BIPUPU_TEST_RELAY=1: every test server also runs the BLE relay, on the real radio (.ci/run, on a machine
# with no Bluetooth: SPEC §8's "the server keeps running when there is no adapter", checked by the whole suite).
RELAY_EVERYWHERE = {"ble_device": "pupu-1", "ble_owner": BOB} if os.environ.get("BIPUPU_TEST_RELAY") == "1" else {}


@pytest.fixture
def make_config(tmp_path: Path, request) -> Callable[..., Config]:
    """Config for a test server: its own data dir, cheap bcrypt, known admin password."""
    relay = {} if request.node.get_closest_marker("relay_off") else RELAY_EVERYWHERE

    def make(**overrides: Any) -> Config:
        base = Config(data_dir=tmp_path / "data", secret_key="test-secret-key-0123456789abcdef",
                      bcrypt_cost=4, admin_password=ADMIN_PASSWORD, **relay)
        base.data_dir.mkdir(exist_ok=True)
        return replace(base, **overrides)
    return make


@pytest.fixture
def started_clients() -> list[Any]:
    """The test clients make_client started, in order: the last is "the test's server" to the factories below."""
    return []


@pytest.fixture
def make_client(aiohttp_client, make_config, clock, started_clients) -> Callable[..., Awaitable[Any]]:
    """Start a server with config overrides and return a test client for it."""
    async def make(**overrides: Any):
        client = await aiohttp_client(init_app(make_config(**overrides), clock=clock))
        started_clients.append(client)
        return client
    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def register(client, username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    """Register an account and return the response body (with tokens); fails the test if refused."""
    resp = await client.post("/auth/register", json={"username": username, "password": password, **extra})
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def login(client, username: str, password: str = PASSWORD, *, response: bool = False) -> Any:
    """Log in (another session of an existing account) and return the body with the tokens; fails the test
    unless it is 200. With response=True, the response as it came, for the tests of refusals."""
    resp = await client.post("/auth/login", json={"username": username, "password": password})
    if response:
        return resp
    assert resp.status == 200, await resp.text()
    return await resp.json()


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


async def post_card(client, sender: dict[str, Any], receiver_id: Any = BOB, content: Any = "hello", **fields: Any):
    """POST /messages as `sender`; the response as it came."""
    return await client.post("/messages", json={"receiver_id": receiver_id, "content": content, **fields},
                             headers=bearer(sender))


async def send_card(client, sender: dict[str, Any], receiver_id: Any = BOB, content: Any = "hello",
                    **fields: Any) -> dict[str, Any]:
    """Send a card that must be accepted (201) and return the message object."""
    resp = await post_card(client, sender, receiver_id, content, **fields)
    assert resp.status == 201, await resp.text()
    return await resp.json()


def rfc3339(ts: float) -> str:
    """Epoch seconds as the API writes times (RFC 3339 UTC, to the second): written here, not imported from the server."""
    return datetime.fromtimestamp(int(ts), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


async def assert_error(resp, status: int, code: str, field: str | None = None) -> dict[str, Any]:
    """The response is the one error shape with this status and code (and field, when given)."""
    assert resp.status == status, f"{resp.status} {await resp.text()}"
    assert resp.content_type == "application/json"
    body = await resp.json()
    assert set(body) == {"error"}
    error = body["error"]
    assert set(error) <= {"code", "message", "field"}
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"]
    # Messages are for people: a field's rule in words, never the regular expression behind it.
    assert "regex" not in error["message"] and "\\" not in error["message"], error
    if field is not None:
        assert error.get("field") == field, error
    return error


async def until(condition: Callable[[], Any], what: str | Callable[[], str], timeout: float = WAIT) -> None:
    """Yield to the event loop until `condition()` (awaited if it returns an awaitable) is true, for a state no
    event announces; fails saying `what` (called then, if it is a function) after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        done = condition()
        if inspect.isawaitable(done):
            done = await done
        if done:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s: {what() if callable(what) else what}")
        await asyncio.sleep(0)


# The server's SQLite file, behind its back (states the API cannot produce) ---------------------

def _rows(path: Path, sql: str, params: tuple) -> list[tuple]:
    with closing(sqlite3.connect(path)) as conn:
        return conn.execute(sql, params).fetchall()


def _write(path: Path, sql: str, params: tuple) -> None:
    with closing(sqlite3.connect(path)) as conn, conn:
        conn.execute(sql, params)


async def db_rows(client, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the server's SQLite file through a connection of our own, off the event loop."""
    return await asyncio.to_thread(_rows, client.server.app[keys.config].db_path, sql, params)


async def db_write(client, sql: str, params: tuple = ()) -> None:
    """Change the server's SQLite file through a connection of our own (an operator's deactivation, a
    switched-off service), off the event loop."""
    await asyncio.to_thread(_write, client.server.app[keys.config].db_path, sql, params)


# WebSockets -----------------------------------------------------------------------------------

async def receive_json(ws, timeout: float = WAIT) -> dict[str, Any]:
    msg = await ws.receive(timeout=timeout)
    assert msg.type == WSMsgType.TEXT, (msg.type, msg.data, msg.extra)
    return json.loads(msg.data)


async def receive_card(ws) -> dict[str, Any]:
    """The next frame, which must be a new_message push; returns its payload."""
    data = await receive_json(ws)
    assert data["type"] == "new_message", data
    assert set(data) == {"type", "payload"}, data
    return data["payload"]


async def assert_quiet(ws) -> None:
    """Nothing arrives on this socket for a short while."""
    try:
        msg = await ws.receive(timeout=QUIET)
    except asyncio.TimeoutError:
        return
    raise AssertionError(f"unexpected frame: {msg}")


async def connect_with(client, token: str, how: str):
    """A socket offered `token` in one of the three ways ("header", "query", "frame"); nothing read yet."""
    if how == "header":
        return await client.ws_connect("/ws", headers={"Authorization": f"Bearer {token}"})
    if how == "query":
        return await client.ws_connect("/ws", params={"token": token})
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": token})
    return ws


# Accounts, logged-in clients and authenticated sockets in one line -----------------------------

@pytest.fixture
async def alice(client) -> dict[str, Any]:
    return await register(client, "alice")


@pytest.fixture
async def bob(client) -> dict[str, Any]:
    return await register(client, "bob")


@pytest.fixture
def logged_in(aiohttp_client, started_clients) -> Callable[..., Awaitable[Any]]:
    """`await logged_in(alice)`: a test client of the test's server (the last one started, or `client=`) whose
    every request, WebSockets included, carries the account's access token."""
    async def make(account: dict[str, Any], *, client: Any = None):
        server = (client or started_clients[-1]).server
        return await aiohttp_client(server, headers=bearer(account))
    return make


@pytest.fixture
async def alice_client(logged_in, alice):
    """alice's own test client: `await alice_client.get("/me")` is alice's profile."""
    return await logged_in(alice)


@pytest.fixture
def open_ws(started_clients) -> Callable[..., Awaitable[Any]]:
    """`await open_ws(bob)`: a /ws of the account on the test's server (the last one started, or `client=`),
    authenticated and its auth_ok read. The token goes in the Authorization header, or with `frame=True` (or a
    `since`) in a first auth frame."""
    async def connect(account: dict[str, Any], *, since: str | None = None, frame: bool = False, client: Any = None):
        client = client or started_clients[-1]
        if frame or since is not None:
            ws = await client.ws_connect("/ws")
            await ws.send_json({"type": "auth", "token": account["access_token"],
                                **({"since": since} if since is not None else {})})
        else:
            ws = await client.ws_connect("/ws", headers=bearer(account))
        data = await receive_json(ws)
        assert data["type"] == "auth_ok" and data["bipupu_id"] == account["bipupu_id"], data
        return ws
    return connect


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Any]:
    """Start run.py servers (waiting until /health answers); all are stopped at teardown."""
    started: list[Server] = []

    def start(data_dir: Path | None = None, **settings: str) -> Server:
        server = Server(tmp_path, data_dir or tmp_path / "data", environment(**settings), f"server{len(started)}")
        started.append(server)
        server.wait_ready()
        return server

    yield start
    for server in started:
        if server.proc.poll() is None:
            server.proc.terminate()
            try:
                server.proc.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                server.kill()


# The admin pages ---------------------------------------------------------------------------

CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(html: str) -> str:
    match = CSRF.search(html)
    assert match, html[:500]
    return match.group(1)


async def form_token(client, path: str = "/admin/login") -> str:
    resp = await client.get(path)
    assert resp.status == 200, resp.status
    return csrf_of(await resp.text())


async def sign_in(client, username: str = "admin", password: str = ADMIN_PASSWORD):
    """Log in through the login form; returns the 303 response."""
    token = await form_token(client)
    return await client.post("/admin/login", data={"csrf": token, "username": username, "password": password},
                             allow_redirects=False)


@pytest.fixture
async def admin_client(client):
    """The test client, signed in to the admin pages as the first admin."""
    resp = await sign_in(client)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/", await resp.text()
    return client


async def post_form(client, path: str, **fields: str):
    token = csrf_of(await (await client.get("/admin/users")).text())
    return await client.post(path, data={"csrf": token, **fields}, allow_redirects=False)
