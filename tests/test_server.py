"""The HTTP server around the app (web/server.py), as run.py serves it: real TCP on loopback.

A cap per client address on connections that have proven nothing, a time bound on request
bodies, and requests aiohttp's parser refuses answered in the one error shape without echoing
them. Two client addresses come from the loopback range: 127.0.0.1 and 127.0.0.2.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import logging
import os
import struct
from ipaddress import ip_network
from contextlib import suppress
from typing import Any

import aiohttp
import pytest

from bipupu_server import keys
from bipupu_server.app import init_app
from bipupu_server.web import server
from bipupu_server.web.accesslog import RedactingAccessLogger
from tests.conftest import PASSWORD, until
from tests.processes import call

WAIT = 5.0  # bound on every wait for something that should happen
OTHER = "127.0.0.2"  # a second client address on the same machine


class Served:
    """The app behind server.start on a free port, with helpers that speak raw HTTP to it."""

    def __init__(self, app, host: str, port: int):
        self.app, self.host, self.port = app, host, port
        self.url = f"http://{host}:{port}"

    async def open(self, source: str = "127.0.0.1") -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        return await asyncio.wait_for(asyncio.open_connection(self.host, self.port, local_addr=(source, 0)), WAIT)

    async def exchange(self, raw: bytes, source: str = "127.0.0.1") -> tuple[int, dict[str, str], bytes]:
        """Send `raw` bytes as they are, read until the server closes; returns status, headers, body."""
        reader, writer = await self.open(source)
        try:
            writer.write(raw)
            await writer.drain()
            return parse(await asyncio.wait_for(reader.read(), WAIT))
        finally:
            await close(writer)

    async def get(self, path: str, source: str = "127.0.0.1", headers: str = "") -> tuple[int, dict[str, str], bytes]:
        request = f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n"
        return await self.exchange(request.encode("latin-1"), source)  # each character one byte, as given

    def unproven(self, source: str = "127.0.0.1") -> int:
        return self.app[keys.connections].unproven(source)


def parse(raw: bytes) -> tuple[int, dict[str, str], bytes]:
    top, _, body = raw.partition(b"\r\n\r\n")
    status_line, *lines = top.decode("latin-1").split("\r\n")
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, body


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with suppress(ConnectionError):
        await writer.wait_closed()


def assert_error_shape(status: int, headers: dict[str, str], body: bytes, expected: int, code: str) -> dict:
    assert status == expected, (status, body[:300])
    assert headers.get("content-type", "").startswith("application/json"), headers
    data = json.loads(body)
    assert set(data) == {"error"} and data["error"]["code"] == code, data
    assert isinstance(data["error"]["message"], str) and data["error"]["message"], data
    assert headers.get("server") == "bipupu", headers
    return data


@pytest.fixture
async def start(make_config, clock):
    """start(**config overrides) -> a Served app; every one is stopped at teardown."""
    runners = []

    async def start(**overrides: Any) -> Served:
        app = init_app(make_config(**overrides), clock=clock)
        runner, site = await server.start(app, app[keys.connections], "127.0.0.1", 0,
                                          access_log_class=RedactingAccessLogger)
        runners.append(runner)
        host, port = site.addresses[0][:2]
        return Served(app, host, port)

    yield start
    for runner in runners:
        await runner.cleanup()


async def register(served: Served, session: aiohttp.ClientSession, username: str) -> dict[str, Any]:
    async with session.post(f"{served.url}/auth/register", json={"username": username, "password": PASSWORD}) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


# The cap per address ------------------------------------------------------------------------------

async def test_connections_past_the_cap_are_refused_with_429_while_another_address_is_served(start):
    served = await start(connections_per_address=5)
    held = [await served.open() for _ in range(5)]  # silent: they have proven nothing
    await until(lambda: served.unproven() == 5, "five connections counted", WAIT)
    status, headers, body = await served.get("/health")
    assert_error_shape(status, headers, body, 429, "too_many_connections")
    assert headers["retry-after"] == "5" and headers["connection"] == "close"
    status, _, body = await served.get("/health", source=OTHER)  # someone else is not held up
    assert status == 200, body
    await close(held.pop()[1])  # a closed connection gives its place back
    await until(lambda: served.unproven() == 4, "the closed connection uncounted", WAIT)
    status, _, _ = await served.get("/health")
    assert status == 200
    for _, writer in held:
        await close(writer)
    await until(lambda: served.unproven() == 0, "every connection uncounted", WAIT)


async def test_authenticated_sockets_do_not_count_so_many_phones_behind_one_address_work(start):
    served = await start(connections_per_address=3)
    async with aiohttp.ClientSession() as session:
        accounts = [await register(served, session, name) for name in ("alice", "bob", "carol")]
        sockets = []
        for account in accounts:  # 9 authenticated sockets from one address, three times the cap
            for _ in range(3):
                ws = await session.ws_connect(f"{served.url}/ws", headers={
                    "Authorization": f"Bearer {account['access_token']}"})
                assert (await ws.receive_json(timeout=WAIT))["type"] == "auth_ok"
                sockets.append(ws)
        await session.close()  # its idle keep-alive connections count too: give them back
        await until(lambda: served.unproven() == 0, "authenticated sockets uncounted", WAIT)
        held = [await served.open() for _ in range(2)]
        status, _, body = await served.get("/health")  # the third unproven connection
        assert status == 200, body
        for ws in sockets:
            assert not ws.closed
            await ws.close()
        for _, writer in held:
            await close(writer)


async def test_a_socket_counts_until_it_authenticates(start):
    served = await start(connections_per_address=2)
    async with aiohttp.ClientSession() as session:
        account = await register(served, session, "alice")
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as session:
        waiting = [await session.ws_connect(f"{served.url}/ws") for _ in range(2)]  # no auth frame yet
        await until(lambda: served.unproven() == 2, "the waiting sockets counted", WAIT)
        status, headers, body = await served.get("/health")
        assert_error_shape(status, headers, body, 429, "too_many_connections")
        await waiting[0].send_json({"type": "auth", "token": account["access_token"]})
        assert (await waiting[0].receive_json(timeout=WAIT))["type"] == "auth_ok"
        await until(lambda: served.unproven() == 1, "the authenticated socket uncounted", WAIT)
        status, _, body = await served.get("/health")
        assert status == 200, body
        for ws in waiting:
            await ws.close()


# Slow bodies ------------------------------------------------------------------------------------

async def trickle(served: Served, path: str = "/auth/login", source: str = "127.0.0.1"):
    """A POST whose headers promise 100 bytes of body, then one byte every 50 ms: a slowloris."""
    reader, writer = await served.open(source)
    writer.write(f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 f"Content-Length: 100\r\n\r\n".encode())

    async def drip() -> None:
        with suppress(ConnectionError):
            for _ in range(100):
                writer.write(b" ")
                await writer.drain()
                await asyncio.sleep(0.05)  # real time: the body timeout under test is on the real clock

    return reader, writer, asyncio.create_task(drip())


async def answer_then_close(reader: asyncio.StreamReader, dripping: asyncio.Task) -> tuple[int, dict, bytes]:
    """One whole answer, then the end of the connection (a reset counts: the server closed on unread bytes)."""
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    status, headers, _ = parse(head)
    body = await asyncio.wait_for(reader.readexactly(int(headers["content-length"])), WAIT)
    dripping.cancel()
    try:
        rest = await asyncio.wait_for(reader.read(), WAIT)
    except ConnectionResetError:
        rest = b""
    assert rest == b"", rest
    return status, headers, body


async def test_a_body_trickled_too_slowly_is_answered_408_and_the_connection_closed(start):
    served = await start(body_timeout_s=0.5)
    reader, writer, dripping = await trickle(served)
    try:
        status, headers, body = await answer_then_close(reader, dripping)
        assert_error_shape(status, headers, body, 408, "request_timeout")
        assert headers["connection"] == "close"
    finally:
        dripping.cancel()
        await close(writer)
    await until(lambda: served.unproven() == 0, "the timed-out connection uncounted", WAIT)


async def test_slow_bodies_cannot_take_the_server_offline(start):
    served = await start(connections_per_address=20, body_timeout_s=1.0)
    slow = [await trickle(served) for _ in range(20)]
    try:
        await until(lambda: served.unproven() == 20, "twenty trickling connections", WAIT)
        status, headers, body = await served.get("/health")  # the 21st from that address
        assert_error_shape(status, headers, body, 429, "too_many_connections")
        status, _, body = await served.get("/health", source=OTHER)
        assert status == 200, body
        # All at once: each client reads its answer when it comes and stops dripping, as a real one would.
        answers = [answer[0] for answer in await asyncio.gather(
            *(answer_then_close(reader, dripping) for reader, _, dripping in slow))]
        assert answers == [408] * 20  # each cut off by the body bound
        await until(lambda: served.unproven() == 0, "all of them uncounted", WAIT)
        status, _, body = await served.get("/health")
        assert status == 200, body
    finally:
        for _, writer, dripping in slow:
            dripping.cancel()
            await close(writer)


# What aiohttp's parser refuses, in the one error shape and never echoed --------------------------

TOKEN_LIKE = "eyJ0eXAiOiJhY2Nlc3MiLCJzaWQiOiJzZWNyZXQifQ.c2lnbmF0dXJlLW9mLWEtdG9rZW4"
UNPARSABLE = {
    "request-line-over-8-kib": b"GET /users/" + b"7" * 9000 + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "header-over-8-kib": b"GET /health HTTP/1.1\r\nHost: x\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n",
    "control-byte-in-the-path": b"GET /me\x01" + TOKEN_LIKE.encode() + b" HTTP/1.1\r\nHost: x\r\n\r\n",
    "token-in-the-query-then-a-control-byte": b"GET /ws?token=" + TOKEN_LIKE.encode() + b" \x01 HTTP/1.1\r\n"
                                              b"Host: x\r\n\r\n",
    "control-byte-after-a-bearer-token": b"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                                         + TOKEN_LIKE.encode() + b"\x01\r\n\r\n",
    "conflicting-lengths": b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 7\r\n\r\n"
                           b"{}{}{}{",
    "length-and-chunked": b"POST /auth/login HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n"
                          b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    "not-http": b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + TOKEN_LIKE.encode() + b"\r\n\r\n",
}


@pytest.mark.parametrize("raw", UNPARSABLE.values(), ids=UNPARSABLE.keys())
async def test_a_request_the_parser_refuses_is_a_4xx_in_the_error_shape_that_echoes_nothing(start, caplog, raw):
    caplog.set_level(logging.DEBUG)
    served = await start()
    status, headers, body = await served.exchange(raw)
    assert 400 <= status < 500, (status, body)
    assert_error_shape(status, headers, body, status, "malformed_request")
    assert TOKEN_LIKE.encode() not in body and b"aaaa" not in body and b"7777" not in body, body
    logged = "\n".join(f"{r.getMessage()} {r.exc_text or ''} {r.exc_info or ''}" for r in caplog.records)
    assert TOKEN_LIKE not in logged, logged
    status, _, _ = await served.get("/health")  # and the server is none the worse
    assert status == 200


# The real run.py ----------------------------------------------------------------------------------

def ws_close_code(raw: bytes) -> int:
    """The close code of the first frame after a 101 answer (server frames are not masked)."""
    _, _, frames = raw.partition(b"\r\n\r\n")
    assert frames[0] & 0x0F == 0x8, frames[:8]  # opcode: close
    return struct.unpack("!H", frames[2:4])[0]


def test_run_py_caps_connections_redacts_every_log_line_and_refuses_non_ascii_tokens(serve):
    """Through the real process: its log holds no token even where aiohttp itself logs the request."""
    running = serve(BIPUPU_LIMIT_CONNECTIONS="4", BIPUPU_ADMIN_PASSWORD="admin-password-1")
    status, account = call(running.url, "POST", "/auth/register", {"username": "alice", "password": PASSWORD})
    assert status == 201, account
    token = account["access_token"]

    async def attack() -> None:
        served = Served(None, "127.0.0.1", running.port)
        for raw in [b"GET /ws?token=" + token.encode() + b" \x01 HTTP/1.1\r\nHost: x\r\n\r\n",
                    b"GET /me HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + token.encode() + b"\x01\r\n\r\n"]:
            status, headers, body = await served.exchange(raw)
            assert_error_shape(status, headers, body, 400, "malformed_request")
            assert token.encode() not in body
        status, headers, body = await served.get("/me", headers="Authorization: Bearer \xff\r\n")
        assert_error_shape(status, headers, body, 401, "invalid_token")
        key = base64.b64encode(os.urandom(16)).decode()
        upgrade = (f"GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer \xff\r\n\r\n")
        reader, writer = await served.open()
        writer.write(upgrade.encode("latin-1"))
        raw = b""
        while len(raw.partition(b"\r\n\r\n")[2]) < 4:  # the answer, then the close frame's first bytes
            chunk = await asyncio.wait_for(reader.read(4096), WAIT)
            assert chunk, raw
            raw += chunk
        await close(writer)
        assert raw.startswith(b"HTTP/1.1 101"), raw[:100]
        assert ws_close_code(raw) == 4001
        assert b"HTTP/1.1 500" not in raw
        held = [await served.open() for _ in range(4)]  # accepted, and counted, in the order they came
        status, headers, body = await served.get("/health")
        assert_error_shape(status, headers, body, 429, "too_many_connections")
        for _, writer in held:
            await close(writer)

    asyncio.run(attack())
    assert running.stop() == 0
    log = running.stderr + running.stdout
    for part in [token, *(part for part in token.split(".") if len(part) >= 16)]:  # payload and signature too
        assert part not in log, (part, log[-3000:])
    assert "Traceback" not in log, log[-3000:]
    assert "refused an unparsable request" in log


# Behind a reverse proxy -------------------------------------------------------------------------

LOOPBACK = (ip_network("127.0.0.1/32"),)
STRANGERS = itertools.count()


async def login_from(client, forwarded_for: str | None) -> int:
    """A failed login (a new username each time, so only the per-address limit can refuse it)."""
    headers = {"X-Forwarded-For": forwarded_for} if forwarded_for is not None else {}
    resp = await client.post("/auth/login", json={"username": f"nobody{next(STRANGERS)}", "password": PASSWORD},
                             headers=headers)
    return resp.status


async def test_without_a_trusted_proxy_x_forwarded_for_is_ignored(make_client):
    client = await make_client()
    statuses = [await login_from(client, f"198.51.100.{n}") for n in range(31)]  # a new address each time...
    assert statuses == [401] * 30 + [429]  # ...all counted against the one the server sees


async def test_behind_a_trusted_proxy_limits_count_the_forwarded_client(make_client):
    client = await make_client(trusted_proxies=LOOPBACK)
    assert [await login_from(client, "203.0.113.7") for _ in range(31)] == [401] * 30 + [429]
    assert await login_from(client, "203.0.113.8") == 401  # another client behind the same proxy
    # What the client itself wrote (the left end) cannot pick its key: the proxy's hop (the right end) does.
    assert await login_from(client, "203.0.113.99, 203.0.113.7") == 429
    assert await login_from(client, "203.0.113.7, 127.0.0.1") == 429  # a chain of trusted proxies is skipped


async def test_a_trusted_proxy_is_not_capped_but_everyone_else_is(start):
    served = await start(connections_per_address=2, trusted_proxies=LOOPBACK)
    held = [await served.open() for _ in range(5)]
    status, _, body = await served.get("/health")
    assert status == 200, body
    others = [await served.open(OTHER) for _ in range(2)]
    status, headers, body = await served.get("/health", source=OTHER)
    assert_error_shape(status, headers, body, 429, "too_many_connections")
    for _, writer in held + others:
        await close(writer)


async def test_a_silent_connection_cut_by_the_idle_timeout_gives_its_place_back(start, monkeypatch):
    # aiohttp forgets its transport when its idle timer fires (force_close): the count must not leak,
    # or every header slowloris would lock its address out for good.
    monkeypatch.setattr(server, "KEEPALIVE_TIMEOUT_S", 0.3)
    served = await start(connections_per_address=2)
    silent = [await served.open() for _ in range(2)]
    for reader, writer in silent:
        assert await asyncio.wait_for(reader.read(), WAIT) == b""  # the server closed it
        await close(writer)
    await until(lambda: served.unproven() == 0, "the timed-out connections uncounted", WAIT)
    status, _, body = await served.get("/health")
    assert status == 200, body
