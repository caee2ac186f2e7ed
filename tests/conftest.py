"""Shared fixtures: a real app on a real SQLite file in a temp dir, with an injected clock."""

from __future__ import annotations

import asyncio
import os
import subprocess
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterator

import pytest

from bipupu_server.app import init_app
from bipupu_server.config import Config
from tests.processes import STOP_TIMEOUT_S, Server, environment

# The suite gives the same result whatever BIPUPU_* a user's shell exports (a data dir, a port, rate
# limits off, a time zone…): none of them reaches the code under test. BIPUPU_FUZZ_* tune the suite itself.
for _name in [name for name in os.environ if name.startswith("BIPUPU_") and not name.startswith("BIPUPU_FUZZ_")]:
    del os.environ[_name]

PASSWORD = "correct horse"
ADMIN_PASSWORD = "admin-password-1"


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


@pytest.fixture
def make_config(tmp_path: Path) -> Callable[..., Config]:
    """Config for a test server: its own data dir, cheap bcrypt, known admin password."""
    def make(**overrides: Any) -> Config:
        base = Config(data_dir=tmp_path / "data", secret_key="test-secret-key-0123456789abcdef",
                      bcrypt_cost=4, admin_password=ADMIN_PASSWORD)
        base.data_dir.mkdir(exist_ok=True)
        return replace(base, **overrides)
    return make


@pytest.fixture
def make_client(aiohttp_client, make_config, clock) -> Callable[..., Awaitable[Any]]:
    """Start a server with config overrides and return a test client for it."""
    async def make(**overrides: Any):
        return await aiohttp_client(init_app(make_config(**overrides), clock=clock))
    return make


@pytest.fixture
async def client(make_client):
    return await make_client()


async def register(client, username: str, password: str = PASSWORD, **extra: Any) -> dict[str, Any]:
    """Register an account and return the response body (with tokens); fails the test if refused."""
    resp = await client.post("/auth/register", json={"username": username, "password": password, **extra})
    assert resp.status == 201, await resp.text()
    return await resp.json()


def bearer(account: dict[str, Any]) -> dict[str, str]:
    return {"Authorization": f"Bearer {account['access_token']}"}


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


@pytest.fixture
async def alice(client) -> dict[str, Any]:
    return await register(client, "alice")


@pytest.fixture
async def bob(client) -> dict[str, Any]:
    return await register(client, "bob")


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
