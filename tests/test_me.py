"""GET/PUT /me and GET /users/{bipupu_id}: the profile rules, immutable identity, and what never leaves."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tests.conftest import ADMIN_PASSWORD, PASSWORD, assert_error, bearer, db_rows, db_write, login, register, rfc3339

ME_KEYS = {"bipupu_id", "username", "nickname", "avatar_url", "cosmic_profile", "privacy", "is_admin", "created_at"}
CARD_KEYS = {"bipupu_id", "nickname", "avatar_url"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
PROFILE = {"birthday": "1995-08-17", "mbti": "INFP", "zodiac": "狮子座"}


async def user_row(client, bipupu_id: str) -> tuple:
    """The user's row as stored, read straight from the server's SQLite file."""
    rows = await db_rows(client, "SELECT id, bipupu_id, username, username_key, password_hash, nickname, avatar_url,"
                                 " cosmic_profile, privacy, is_active, is_admin, created_at FROM users"
                                 " WHERE bipupu_id = ?", (bipupu_id,))
    assert len(rows) == 1, rows
    return rows[0]


async def get_me(client, account: dict[str, Any]) -> dict[str, Any]:
    resp = await client.get("/me", headers=bearer(account))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def put_me(client, account: dict[str, Any], body: Any):
    return await client.put("/me", json=body, headers=bearer(account))


# GET /me ----------------------------------------------------------------------------------------

async def test_me_of_a_new_user_has_exactly_the_documented_fields(client, clock, alice):
    me = await get_me(client, alice)
    assert set(me) == ME_KEYS
    assert TIMESTAMP.match(me["created_at"]), me["created_at"]
    assert me == {
        "bipupu_id": "00000002", "username": "alice", "nickname": "alice", "avatar_url": None,
        "cosmic_profile": {}, "privacy": "everyone", "is_admin": False, "created_at": rfc3339(clock.time()),
    }


async def test_me_created_at_follows_the_injected_clock(client, clock, alice):
    clock.advance(3 * 86400 + 61)
    bob = await register(client, "bob")
    assert (await get_me(client, bob))["created_at"] == rfc3339(clock.time())
    alice_again = await login(client, "alice")  # the first access token has expired by now
    assert (await get_me(client, alice_again))["created_at"] == rfc3339(clock.time() - 3 * 86400 - 61)


async def test_me_of_the_admin_says_is_admin(client):
    admin = await login(client, "admin", ADMIN_PASSWORD)
    me = await get_me(client, admin)
    assert set(me) == ME_KEYS
    assert me["bipupu_id"] == "00000001"
    assert me["username"] == "admin"
    assert me["is_admin"] is True
    assert TIMESTAMP.match(me["created_at"]), me["created_at"]


async def test_me_without_a_token_is_401(client):
    await assert_error(await client.get("/me"), 401, "missing_token")


async def test_internal_id_and_password_hash_never_leave_the_server(client, alice, bob):
    bodies: list[str] = []

    async def keep(resp, status: int) -> dict[str, Any]:
        text = await resp.text()
        assert resp.status == status, text
        bodies.append(text)
        return await resp.json()

    # register (the fixtures' bodies are kept too)
    carol = await keep(await client.post("/auth/register", json={"username": "carol", "password": PASSWORD}), 201)
    bodies += [repr(alice), repr(bob)]
    logged_in = await keep(await client.post("/auth/login", json={"username": "alice", "password": PASSWORD}), 200)
    await keep(await client.post("/auth/refresh", json={"refresh_token": logged_in["refresh_token"]}), 200)
    await keep(await client.get("/me", headers=bearer(alice)), 200)
    await keep(await client.get("/me", headers=bearer(carol)), 200)
    await keep(await client.put("/me", json={"nickname": "Alice"}, headers=bearer(alice)), 200)
    await keep(await client.get("/users/00000002", headers=bearer(bob)), 200)
    await keep(await client.get("/users/00000002", headers=bearer(alice)), 200)
    await keep(await client.get("/users/00000001", headers=bearer(alice)), 200)
    await keep(await client.post("/auth/login", json={"username": "alice", "password": "wrong password"}), 401)

    secrets = [row[0] for row in await db_rows(client, "SELECT id FROM users")]
    hashes = [row[0] for row in await db_rows(client, "SELECT password_hash FROM users")]
    assert len(secrets) == 4 and all(hashes)
    for body in bodies:
        for secret in secrets + hashes + ["password_hash", "$2b$"]:
            assert secret not in body, f"{secret!r} leaked in {body}"


# PUT /me: what can change -----------------------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "stored"), [
    ("nickname", "Moon Walker", "Moon Walker"),
    ("nickname", "  Moon  ", "Moon"),
    ("nickname", "x", "x"),
    ("nickname", "  " + "x" * 32 + "\t", "x" * 32),
    ("nickname", "星" * 32, "星" * 32),
    ("avatar_url", "http://example.com/a.png", "http://example.com/a.png"),
    ("avatar_url", "https://cdn.example.com/u/2.png?s=64", "https://cdn.example.com/u/2.png?s=64"),
    ("avatar_url", "/static/a.png", "/static/a.png"),
    ("cosmic_profile", PROFILE, PROFILE),
    ("cosmic_profile", {"k": "x" * 2040}, {"k": "x" * 2040}),  # exactly 2048 bytes as JSON
    ("privacy", "contacts_only", "contacts_only"),
])
async def test_put_me_changes_only_the_given_field(client, alice, field, value, stored):
    before = await get_me(client, alice)
    resp = await put_me(client, alice, {field: value})
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body == {**before, field: stored}
    assert await get_me(client, alice) == body


async def test_put_me_avatar_null_clears_it(client, alice):
    resp = await put_me(client, alice, {"avatar_url": "https://example.com/a.png"})
    assert (await resp.json())["avatar_url"] == "https://example.com/a.png"
    resp = await put_me(client, alice, {"avatar_url": None})
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["avatar_url"] is None
    assert (await get_me(client, alice))["avatar_url"] is None
    assert (await user_row(client, "00000002"))[6] is None


async def test_put_me_privacy_goes_back_to_everyone(client, alice):
    assert (await (await put_me(client, alice, {"privacy": "contacts_only"})).json())["privacy"] == "contacts_only"
    resp = await put_me(client, alice, {"privacy": "everyone"})
    assert resp.status == 200
    assert (await get_me(client, alice))["privacy"] == "everyone"


async def test_put_me_several_fields_at_once(client, alice):
    change = {"nickname": "Alice ☆", "avatar_url": "/static/a.png", "cosmic_profile": PROFILE,
              "privacy": "contacts_only"}
    resp = await put_me(client, alice, change)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == ME_KEYS
    assert {name: body[name] for name in change} == change
    assert await get_me(client, alice) == body


async def test_put_me_cosmic_profile_replaces_the_whole_object(client, alice):
    await put_me(client, alice, {"cosmic_profile": PROFILE})
    resp = await put_me(client, alice, {"cosmic_profile": {"bazi": "甲子"}})
    assert resp.status == 200
    assert (await get_me(client, alice))["cosmic_profile"] == {"bazi": "甲子"}


async def test_put_me_cosmic_profile_keeps_numbers_as_they_came(client, alice):
    # orjson reads integers past 64 bits as floats; a profile keeps them exact, and small ones stay integers.
    raw = '{"cosmic_profile": {"lucky": 123456789012345678901234567890, "small": 7, "negative": -3, ' \
          '"half": 1.5, "nested": [18446744073709551616, {"n": 2}]}}'
    resp = await client.put("/me", data=raw, headers={**bearer(alice), "Content-Type": "application/json"})
    assert resp.status == 200, await resp.text()
    expected = {"lucky": 123456789012345678901234567890, "small": 7, "negative": -3, "half": 1.5,
                "nested": [18446744073709551616, {"n": 2}]}
    for body in (await resp.text(), await (await client.get("/me", headers=bearer(alice))).text()):
        profile = json.loads(body)["cosmic_profile"]  # the standard library: exact integers
        assert profile == expected
        assert all(type(profile[k]) is int for k in ("lucky", "small", "negative"))
        assert "123456789012345678901234567890" in body


@pytest.mark.parametrize("raw", ['{"cosmic_profile": {"n": 123456789012345678901234567890, "x": NaN}}',
                                 '{"cosmic_profile": {"n": 123456789012345678901234567890, "s": "\\ud800"}}',
                                 '{"cosmic_profile": {"n": 123456789012345678901234567890} ',
                                 '[' * 5000 + '123456789012345678901234567890' + ']' * 5000])
async def test_bodies_with_big_integers_are_still_checked_like_any_json(client, alice, raw):
    resp = await client.put("/me", data=raw, headers={**bearer(alice), "Content-Type": "application/json"})
    await assert_error(resp, 400, "malformed_json")
    assert (await get_me(client, alice))["cosmic_profile"] == {}


async def test_put_me_shows_on_the_public_card(client, alice, bob):
    avatar = "https://example.com/a.png"
    await put_me(client, alice, {"nickname": "Alice", "avatar_url": avatar})
    resp = await client.get("/users/00000002", headers=bearer(bob))
    assert await resp.json() == {"bipupu_id": "00000002", "nickname": "Alice", "avatar_url": avatar}


# PUT /me: what is refused -----------------------------------------------------------------------

def nested(levels: int) -> dict:
    """An object nested `levels` deep, built without recursion."""
    value: dict = {}
    for _ in range(levels - 1):
        value = {"a": value}
    return value

@pytest.mark.parametrize(("field", "value"), [
    ("nickname", ""),
    ("nickname", "   "),
    ("nickname", "x" * 33),
    ("nickname", "星" * 33),
    ("nickname", "a\x00b"),
    ("nickname", "a\nb"),
    ("nickname", "a\tb"),
    ("nickname", "a\x7fb"),
    ("nickname", "a\x85b"),
    ("nickname", "a\x1b[31mb"),
    ("nickname", None),
    ("nickname", 5),
    ("nickname", True),
    ("nickname", ["Moon"]),
    ("nickname", {"name": "Moon"}),
    ("avatar_url", "javascript:alert(1)"),
    ("avatar_url", "JavaScript:alert(1)"),
    ("avatar_url", "//evil.example/x"),
    ("avatar_url", "ftp://x/y"),
    ("avatar_url", "http://"),
    ("avatar_url", "https://"),
    ("avatar_url", "http:///a.png"),
    ("avatar_url", "a b"),
    ("avatar_url", "https://example.com/a b.png"),
    ("avatar_url", "static/a.png"),
    ("avatar_url", "data:image/png;base64,AAAA"),
    ("avatar_url", ""),
    ("avatar_url", 5),
    ("avatar_url", True),
    ("avatar_url", ["https://example.com/a.png"]),
    ("avatar_url", {"url": "https://example.com/a.png"}),
    ("cosmic_profile", []),
    ("cosmic_profile", [PROFILE]),
    ("cosmic_profile", "INFP"),
    ("cosmic_profile", 5),
    ("cosmic_profile", True),
    ("cosmic_profile", {"k": "x" * 2041}),  # 2049 bytes as JSON
    ("cosmic_profile", {"zodiac": "狮" * 700}),  # 700 characters but 2108 bytes
    ("cosmic_profile", {"a": nested(17)}),  # 18 levels: deeper than 16
    ("cosmic_profile", {"a": nested(300)}),  # deeper than orjson can encode
    ("privacy", "Everyone"),
    ("privacy", "nobody"),
    ("privacy", "contacts only"),
    ("privacy", ""),
    ("privacy", None),
    ("privacy", 1),
    ("privacy", ["everyone"]),
])
async def test_put_me_refuses_a_bad_value_and_changes_nothing(client, alice, field, value):
    before = await get_me(client, alice)
    row = await user_row(client, "00000002")
    await assert_error(await put_me(client, alice, {field: value}), 422, "invalid_field", field)
    assert await get_me(client, alice) == before
    assert await user_row(client, "00000002") == row


@pytest.mark.parametrize(("field", "value"), [
    ("bipupu_id", "00000099"),
    ("username", "mallory"),
    ("id", "00000000-0000-4000-8000-000000000000"),
    ("is_admin", True),
    ("created_at", "2000-01-01T00:00:00Z"),
])
@pytest.mark.parametrize("with_nickname", [False, True], ids=["alone", "with_valid_nickname"])
async def test_put_me_refuses_immutable_fields_and_changes_nothing(client, alice, field, value, with_nickname):
    before = await get_me(client, alice)
    row = await user_row(client, "00000002")
    body = {"nickname": "Changed", field: value} if with_nickname else {field: value}
    await assert_error(await put_me(client, alice, body), 422, "immutable_field", field)
    assert await get_me(client, alice) == before
    assert await user_row(client, "00000002") == row
    assert await db_rows(client, "SELECT count(*) FROM users WHERE is_admin = 1") == [(1,)]


@pytest.mark.parametrize(("body", "field"), [
    ({"email": "alice@example.com"}, "email"),
    ({"nickname": "Changed", "mood": "happy"}, "mood"),
    ({"password": PASSWORD + "!"}, "password"),
    ({"password_hash": "$2b$04$" + "a" * 53}, "password_hash"),
    ({"Nickname": "Changed"}, "Nickname"),
])
async def test_put_me_refuses_unknown_fields_and_changes_nothing(client, alice, body, field):
    before = await get_me(client, alice)
    row = await user_row(client, "00000002")
    await assert_error(await put_me(client, alice, body), 422, "unknown_field", field)
    assert await get_me(client, alice) == before
    assert await user_row(client, "00000002") == row


@pytest.mark.parametrize(("body", "field"), [
    ({"nickname": "Changed", "avatar_url": "javascript:alert(1)"}, "avatar_url"),
    ({"avatar_url": "https://example.com/ok.png", "nickname": ""}, "nickname"),
    ({"privacy": "contacts_only", "cosmic_profile": ["INFP"]}, "cosmic_profile"),
    ({"cosmic_profile": PROFILE, "privacy": "friends"}, "privacy"),
    ({"nickname": "Changed", "avatar_url": "/static/a.png", "privacy": "contacts_only", "cosmic_profile": "x"},
     "cosmic_profile"),
])
async def test_put_me_with_one_bad_field_applies_none(client, alice, body, field):
    before = await get_me(client, alice)
    row = await user_row(client, "00000002")
    await assert_error(await put_me(client, alice, body), 422, "invalid_field", field)
    assert await get_me(client, alice) == before
    assert await user_row(client, "00000002") == row


async def test_put_me_without_a_token_is_401_and_changes_nothing(client, alice):
    row = await user_row(client, "00000002")
    await assert_error(await client.put("/me", json={"nickname": "Changed"}), 401, "missing_token")
    assert await user_row(client, "00000002") == row


# GET /users/{bipupu_id} -------------------------------------------------------------------------

async def test_user_card_has_exactly_the_public_fields(client, alice, bob):
    resp = await client.get("/users/00000002", headers=bearer(bob))
    assert resp.status == 200
    card = await resp.json()
    assert set(card) == CARD_KEYS
    assert card == {"bipupu_id": "00000002", "nickname": "alice", "avatar_url": None}


async def test_user_card_of_the_admin_and_of_oneself(client, alice):
    resp = await client.get("/users/00000001", headers=bearer(alice))
    assert await resp.json() == {"bipupu_id": "00000001", "nickname": "admin", "avatar_url": None}
    resp = await client.get("/users/00000002", headers=bearer(alice))
    assert await resp.json() == {"bipupu_id": "00000002", "nickname": "alice", "avatar_url": None}


@pytest.mark.parametrize("bipupu_id", ["99999999", "00000000", "00000004"])
async def test_user_card_of_an_unknown_id_is_404(client, alice, bob, bipupu_id):
    await assert_error(await client.get(f"/users/{bipupu_id}", headers=bearer(alice)), 404, "user_not_found")


@pytest.mark.parametrize("bipupu_id", [
    "abc",
    "1234567",
    "123456789",
    "..%2Fme",  # "../me", encoded so the client does not resolve it to /me
    "0000000２",  # a full-width digit
    "２２２２２２２２",
    "%2000000002",
    "00000002%20",
    "+0000002",
    "-0000002",
    "0x000002",
])
async def test_user_card_of_a_malformed_id_is_404(client, alice, bipupu_id):
    await assert_error(await client.get(f"/users/{bipupu_id}", headers=bearer(alice)), 404, "user_not_found")


async def test_user_card_of_a_deactivated_user_is_404(client, alice, bob):
    resp = await client.get("/users/00000002", headers=bearer(bob))
    assert resp.status == 200
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", ("00000002",))
    await assert_error(await client.get("/users/00000002", headers=bearer(bob)), 404, "user_not_found")


async def test_user_card_without_a_token_is_401(client, alice):
    await assert_error(await client.get("/users/00000002"), 401, "missing_token")


async def test_user_card_with_a_forged_token_is_401(client, alice):
    payload, _ = alice["access_token"].rsplit(".", 1)
    headers = {"Authorization": f"Bearer {payload}.{'A' * 43}"}
    await assert_error(await client.get("/users/00000002", headers=headers), 401, "invalid_token")
