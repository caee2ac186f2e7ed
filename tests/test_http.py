"""HTTP details outside tools rely on: HEAD on every GET route, no caching, CORS off unless asked for."""

from __future__ import annotations

import pytest

from bipupu_server.app import ROUTES
from tests.conftest import PASSWORD, assert_error, bearer

GET_PATHS = [path.replace("{bipupu_id}", "00000001").replace("{message_id}", "0190a000-0000-7000-8000-000000000000")
             for method, path, _ in ROUTES if method == "GET" and path != "/ws"]
APP = "https://app.example"


@pytest.mark.parametrize("path", GET_PATHS)
async def test_every_get_route_answers_head_like_get_without_a_body(client, alice, path):
    get = await client.get(path, headers=bearer(alice))
    head = await client.head(path, headers=bearer(alice))
    assert head.status == get.status, (path, head.status, get.status)
    assert head.headers["Content-Type"] == get.headers["Content-Type"]
    assert await head.read() == b""


async def test_head_health_without_a_token_is_200_and_head_me_is_401(client):
    assert (await client.head("/health")).status == 200
    assert (await client.head("/me")).status == 401


async def test_answers_that_carry_tokens_or_mailboxes_are_never_cached(client, alice):
    resp = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 200
    assert resp.headers["Cache-Control"] == "no-store"
    for path in ("/me", "/messages", "/health"):
        assert (await client.get(path, headers=bearer(alice))).headers["Cache-Control"] == "no-store", path
    await assert_error(await client.get("/me"), 401, "missing_token")


async def test_without_cors_origins_a_browser_on_another_origin_gets_no_cors_headers(client, alice):
    resp = await client.get("/me", headers={**bearer(alice), "Origin": APP})
    assert resp.status == 200
    assert "Access-Control-Allow-Origin" not in resp.headers
    preflight = await client.options("/messages", headers={"Origin": APP, "Access-Control-Request-Method": "POST"})
    assert preflight.status == 405
    assert "Access-Control-Allow-Origin" not in preflight.headers


async def test_a_listed_origin_gets_a_preflight_and_its_answers_while_others_get_nothing(make_client):
    client = await make_client(cors_origins=(APP,))
    preflight = await client.options("/messages", headers={
        "Origin": APP, "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization, content-type"})
    assert preflight.status == 204
    assert preflight.headers["Access-Control-Allow-Origin"] == APP
    assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
    assert preflight.headers["Access-Control-Allow-Headers"] == "Authorization, Content-Type"
    assert "Access-Control-Allow-Credentials" not in preflight.headers  # tokens, not cookies
    resp = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD},
                             headers={"Origin": APP})
    assert resp.status == 201
    assert resp.headers["Access-Control-Allow-Origin"] == APP and resp.headers["Vary"] == "Origin"
    error = await client.get("/me", headers={"Origin": APP})  # errors too, so the page can read them
    await assert_error(error, 401, "missing_token")
    assert error.headers["Access-Control-Allow-Origin"] == APP
    for origin in ("https://evil.example", "https://app.example.evil", "null"):
        other = await client.options("/messages", headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert other.status == 405 and "Access-Control-Allow-Origin" not in other.headers, origin
        other = await client.get("/health", headers={"Origin": origin})
        assert "Access-Control-Allow-Origin" not in other.headers, origin
