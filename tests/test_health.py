"""GET /health, and how the API answers when the database is unusable."""

from __future__ import annotations

import pytest

import bipupu_server
from bipupu_server import keys
from tests.conftest import PASSWORD, assert_error, bearer, until

HEALTH_KEYS = {"status", "db", "version", "uptime_s", "relay"}


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


async def get_health(client, status: int) -> dict:
    resp = await client.get("/health")
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/json"
    return await resp.json()


@pytest.mark.relay_off
async def test_health_is_ok(client):
    body = await get_health(client, 200)
    assert set(body) == HEALTH_KEYS
    assert body["status"] == "ok"
    assert body["db"] == "ok"
    assert body["version"] == bipupu_server.__version__
    assert is_number(body["uptime_s"]) and body["uptime_s"] >= 0
    assert body["relay"] == {"state": "off", "detail": "BIPUPU_BLE_DEVICE and BIPUPU_BLE_OWNER are not set"}


async def test_health_needs_no_token(client):
    resp = await client.get("/health", headers={"Authorization": "Bearer not-a-token"})
    assert resp.status == 200


async def test_uptime_follows_the_clock(client, clock):
    first = (await get_health(client, 200))["uptime_s"]
    clock.advance(10)
    second = (await get_health(client, 200))["uptime_s"]
    assert second - first == pytest.approx(10, abs=0.2)
    clock.set_wall(clock.time() - 86400)  # a wall-clock jump back does not shrink the uptime
    third = (await get_health(client, 200))["uptime_s"]
    assert third >= second


async def test_health_is_503_when_the_database_is_closed(client):
    await get_health(client, 200)
    await client.server.app[keys.db].close()
    resp = await client.get("/health")
    assert resp.status == 503, await resp.text()
    assert resp.content_type == "application/json"
    retry_after = resp.headers.get("Retry-After")
    assert retry_after is not None and retry_after.isdigit() and int(retry_after) >= 1
    body = await resp.json()
    assert set(body) - {"error"} == HEALTH_KEYS
    assert body["status"] == "unavailable"
    assert body["db"] == "unavailable"
    assert body["version"] == bipupu_server.__version__
    assert "Traceback" not in await resp.text()


async def test_authenticated_me_is_503_when_the_database_is_closed(client, alice):
    await client.server.app[keys.db].close()
    resp = await client.get("/me", headers=bearer(alice))
    await assert_error(resp, 503, "database_unavailable")
    assert "Retry-After" in resp.headers


@pytest.mark.parametrize(("method", "path", "body", "needs_token"), [
    ("PUT", "/me", {"nickname": "Changed"}, True),
    ("GET", "/users/00000002", None, True),
    ("POST", "/auth/login", {"username": "alice", "password": PASSWORD}, False),
    ("POST", "/auth/register", {"username": "carol", "password": PASSWORD}, False),
])
async def test_other_calls_are_503_when_the_database_is_closed(client, alice, method, path, body, needs_token):
    await client.server.app[keys.db].close()
    headers = bearer(alice) if needs_token else {}
    resp = await client.request(method, path, json=body, headers=headers)
    error = await assert_error(resp, 503, "database_unavailable")
    assert "Traceback" not in error["message"]


async def test_bad_input_is_still_refused_as_such_when_the_database_is_closed(client, alice):
    await client.server.app[keys.db].close()
    resp = await client.post("/auth/login", data=b"{", headers={"Content-Type": "application/json"})
    await assert_error(resp, 400, "malformed_json")
    await assert_error(await client.get("/me"), 401, "missing_token")
    assert (await client.get("/openapi.json")).status == 200


async def test_health_recovers_from_an_old_write_failure_by_probing(client):
    """A failed write marks the database unavailable; once the failure is old, a probe write may clear it."""
    db = client.server.app[keys.db]
    # The scheduler's start-up tick writes once; a success would clear the failure.
    await until(lambda: db.fetchone("SELECT 1 AS done FROM broadcast_runs"), "the scheduler's start-up tick", 3)
    # A reader sees a commit before the writer task records that batch's success (which clears write_error):
    # a write of our own, queued after the tick's, returns only once that is done.
    await db.write(lambda tx: None)
    clock = client.server.app[keys.clock]
    db.write_error, db.write_error_at = "database or disk is full", clock.monotonic()
    recent = await client.get("/health")
    assert recent.status == 503 and (await recent.json())["db"] == "unavailable"
    clock.advance(29)
    assert (await client.get("/health")).status == 503  # not yet: the failure is recent
    clock.advance(2)  # the failure is old now, and writes do work
    old = await client.get("/health")
    assert old.status == 200 and (await old.json())["db"] == "ok"
    assert db.write_error is None
