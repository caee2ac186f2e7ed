"""Auth through HTTP: registration, login, rate limits, tokens, refresh, logout and password change."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
from contextlib import closing
from typing import Any

import pytest
from itsdangerous import URLSafeSerializer

from bipupu_server import keys
from tests.conftest import ADMIN_PASSWORD, PASSWORD, assert_error, bearer, db_write, login, register

TOKEN_KEYS = {"access_token", "refresh_token", "token_type", "expires_in"}
ACCOUNT_KEYS = {"bipupu_id", "username", "nickname"} | TOKEN_KEYS
ME_KEYS = {"bipupu_id", "username", "nickname", "avatar_url", "cosmic_profile", "privacy", "is_admin", "created_at"}
LONGEST_PASSWORD = "密" * 24  # 72 bytes of UTF-8: bcrypt's limit
TOO_LONG_PASSWORD = "a" + "密" * 24  # 73 bytes
NEW_PASSWORD = "battery staple"
DAY = 24 * 3600


# The real database file, for states the API cannot produce yet ----------------------------------

def db_value(client, sql: str, params: tuple = ()) -> Any:
    with closing(sqlite3.connect(client.server.app[keys.config].db_path)) as conn:
        return conn.execute(sql, params).fetchone()[0]


def user_count(client) -> int:
    return db_value(client, "SELECT count(*) FROM users")


def id_counter(client) -> int:
    return db_value(client, "SELECT value FROM counters WHERE name = 'bipupu_id'")


async def deactivate(client, bipupu_id: str) -> None:
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (bipupu_id,))


# HTTP shorthands ---------------------------------------------------------------------------------

async def refresh(client, refresh_token: str):
    return await client.post("/auth/refresh", json={"refresh_token": refresh_token})


async def me(client, access_token: str):
    return await client.get("/me", headers={"Authorization": f"Bearer {access_token}"})


async def assert_me(client, access_token: str, bipupu_id: str) -> dict[str, Any]:
    resp = await me(client, access_token)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert body["bipupu_id"] == bipupu_id
    return body


# Crafting tokens as an attacker would ------------------------------------------------------------

def token_serializer(secret: str) -> URLSafeSerializer:
    return URLSafeSerializer(secret, salt="bipupu.token.v1", signer_kwargs={"digest_method": hashlib.sha256})


def token_claims(token: str) -> dict[str, Any]:
    _, claims = token_serializer("not-the-key").loads_unsafe(token)
    assert isinstance(claims, dict), token
    return claims


# Register ----------------------------------------------------------------------------------------

async def test_register_returns_the_account_and_a_token_pair(client):
    resp = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    assert resp.status == 201, await resp.text()
    body = await resp.json()
    assert set(body) == ACCOUNT_KEYS
    assert body["bipupu_id"] == "00000002"
    assert body["username"] == "alice"
    assert body["nickname"] == "alice"
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 3600
    assert isinstance(body["access_token"], str) and body["access_token"]
    assert isinstance(body["refresh_token"], str) and body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]
    profile = await assert_me(client, body["access_token"], "00000002")
    assert set(profile) == ME_KEYS
    assert profile["username"] == "alice"
    assert profile["is_admin"] is False


async def test_bipupu_ids_are_consecutive_from_00000002(client):
    ids = [(await register(client, name))["bipupu_id"] for name in ("alice", "bob", "carol")]
    assert ids == ["00000002", "00000003", "00000004"]


async def test_refused_registrations_use_up_no_bipupu_id(client, alice):
    refusals = [
        ({"username": "ALICE", "password": PASSWORD}, 409, "username_taken"),
        ({"username": "no spaces", "password": PASSWORD}, 422, "invalid_field"),
        ({"username": "carol", "password": "short"}, 422, "password_too_short"),
        ({"username": "carol", "password": TOO_LONG_PASSWORD}, 422, "password_too_long"),
        ({"username": "carol", "password": PASSWORD, "nickname": " "}, 422, "invalid_field"),
        ({"username": "12345678", "password": PASSWORD}, 422, "username_all_digits"),
    ]
    for body, status, code in refusals:
        await assert_error(await client.post("/auth/register", json=body), status, code)
    assert (await register(client, "bob"))["bipupu_id"] == "00000003"
    assert user_count(client) == 3
    assert id_counter(client) == 3


async def test_nickname_defaults_to_the_username_and_is_trimmed(client):
    plain = await register(client, "alice")
    assert plain["nickname"] == "alice"
    trimmed = await register(client, "bob", nickname="  Bobby 🌙  ")
    assert trimmed["nickname"] == "Bobby 🌙"
    assert (await assert_me(client, trimmed["access_token"], trimmed["bipupu_id"]))["nickname"] == "Bobby 🌙"
    longest = await register(client, "carol", nickname="星" * 32)
    assert longest["nickname"] == "星" * 32


@pytest.mark.parametrize("nickname", ["", "   ", "n" * 33, 7, ["nick"], "tab\there"],
                         ids=["empty", "blank", "33-chars", "number", "list", "control-char"])
async def test_invalid_nicknames_are_refused(client, nickname):
    resp = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD, "nickname": nickname})
    await assert_error(resp, 422, "invalid_field", field="nickname")
    assert user_count(client) == 1


# Username rules ----------------------------------------------------------------------------------

@pytest.mark.parametrize("username", ["星语者_7", "Лунный_кот", "नमस्ते", "moon.walker-7", "abc", "a" * 32],
                         ids=["chinese", "cyrillic", "devanagari-vowel-signs", "dots-dashes", "3-chars", "32-chars"])
async def test_usernames_of_any_script_are_accepted(client, username):
    account = await register(client, username)
    assert account["username"] == username
    assert (await assert_me(client, account["access_token"], "00000002"))["username"] == username
    assert (await login(client, username, response=True)).status == 200


async def test_full_width_latin_username_is_stored_nfkc_normalised(client):
    account = await register(client, "ｓｔａｒ_x")
    assert account["username"] == "star_x"
    assert account["nickname"] == "star_x"
    assert (await assert_me(client, account["access_token"], "00000002"))["username"] == "star_x"
    assert db_value(client, "SELECT username FROM users WHERE bipupu_id = '00000002'") == "star_x"
    for spelling in ("star_x", "ｓｔａｒ_x", "STAR_X"):
        resp = await login(client, spelling, response=True)
        assert resp.status == 200, spelling
        assert (await resp.json())["bipupu_id"] == "00000002"


@pytest.mark.parametrize("username", ["ab", "a" * 33, "moon walker", "moon@walker", "star😀", "\u0301abc", "", "   "],
                         ids=["2-chars", "33-chars", "space", "at-sign", "emoji", "leading-combining-mark",
                              "empty", "blank"])
async def test_invalid_usernames_are_refused(client, username):
    resp = await client.post("/auth/register", json={"username": username, "password": PASSWORD})
    await assert_error(resp, 422, "invalid_field", field="username")
    assert user_count(client) == 1


@pytest.mark.parametrize("username", ["12345678", "１２３４５６７８", "007"], ids=["ascii", "full-width", "short"])
async def test_all_digit_usernames_are_refused(client, username):
    resp = await client.post("/auth/register", json={"username": username, "password": PASSWORD})
    await assert_error(resp, 422, "username_all_digits", field="username")
    assert user_count(client) == 1


@pytest.mark.parametrize("second", ["moon.walker", "ＭＯＯＮ.walker", "MOON.WALKER", " Moon.Walker "])
async def test_usernames_are_unique_after_nfkc_and_casefold(client, second):
    await register(client, "Moon.Walker")
    resp = await client.post("/auth/register", json={"username": second, "password": PASSWORD})
    await assert_error(resp, 409, "username_taken", field="username")
    assert user_count(client) == 2


@pytest.mark.parametrize(("field", "value"), [
    ("username", 12345), ("username", ["alice"]), ("username", None),
    ("password", 123456789), ("password", [PASSWORD]), ("password", None),
])
async def test_wrongly_typed_registration_fields_are_refused(client, field, value):
    body = {"username": "alice", "password": PASSWORD, field: value}
    await assert_error(await client.post("/auth/register", json=body), 422, "invalid_field", field=field)
    assert user_count(client) == 1


@pytest.mark.parametrize(("body", "missing"), [
    ({"password": PASSWORD}, "username"),
    ({"username": "alice"}, "password"),
    ({"username": "alice", "nickname": "Al"}, "password"),
])
async def test_registration_missing_fields_are_refused(client, body, missing):
    await assert_error(await client.post("/auth/register", json=body), 422, "missing_field", field=missing)
    assert user_count(client) == 1


@pytest.mark.parametrize("extra", ["bipupu_id", "is_admin", "id"])
async def test_registration_unknown_field_is_refused(client, extra):
    body = {"username": "alice", "password": PASSWORD, extra: "00000099" if extra == "bipupu_id" else True}
    await assert_error(await client.post("/auth/register", json=body), 422, "unknown_field", field=extra)
    assert user_count(client) == 1


@pytest.mark.parametrize("raw", [b"{", b"[]", b'"alice"', b"not json"], ids=["truncated", "array", "string", "text"])
async def test_registration_body_must_be_a_json_object(client, raw):
    resp = await client.post("/auth/register", data=raw, headers={"Content-Type": "application/json"})
    await assert_error(resp, 400, "malformed_json")
    assert user_count(client) == 1


# Passwords ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("password", ["a" * 7, "密密a"], ids=["7-ascii", "7-bytes-multibyte"])
async def test_password_shorter_than_8_bytes_is_refused(client, password):
    resp = await client.post("/auth/register", json={"username": "alice", "password": password})
    await assert_error(resp, 422, "password_too_short", field="password")
    assert user_count(client) == 1


@pytest.mark.parametrize("password", ["a" * 8, "密密ab", "a" * 72, LONGEST_PASSWORD],
                         ids=["8-ascii", "8-bytes-multibyte", "72-ascii", "72-bytes-multibyte"])
async def test_passwords_of_8_to_72_bytes_are_accepted(client, password):
    await register(client, "alice", password)
    assert (await login(client, "alice", password, response=True)).status == 200


@pytest.mark.parametrize("password", ["a" * 73, TOO_LONG_PASSWORD, "密" * 25],
                         ids=["73-ascii", "73-bytes-multibyte", "75-bytes-multibyte"])
async def test_password_over_72_bytes_is_refused_not_truncated(client, password):
    resp = await client.post("/auth/register", json={"username": "alice", "password": password})
    await assert_error(resp, 422, "password_too_long", field="password")
    assert user_count(client) == 1


@pytest.mark.parametrize("password", ["a" * 72, LONGEST_PASSWORD], ids=["ascii", "multibyte"])
async def test_login_with_the_72_byte_password_plus_more_fails(client, password):
    await register(client, "alice", password)
    await assert_error(await login(client, "alice", password + "x", response=True), 401, "invalid_credentials")
    assert (await login(client, "alice", password, response=True)).status == 200


# Closed registration and an exhausted id space ---------------------------------------------------

async def test_closed_registration_refuses_and_creates_nothing(make_client):
    client = await make_client(registration="closed")
    resp = await client.post("/auth/register", json={"username": "alice", "password": PASSWORD})
    await assert_error(resp, 403, "registration_closed")
    assert user_count(client) == 1
    assert id_counter(client) == 1
    await assert_error(await login(client, "alice", response=True), 401, "invalid_credentials")
    admin = await login(client, "admin", ADMIN_PASSWORD, response=True)
    assert admin.status == 200
    assert (await admin.json())["bipupu_id"] == "00000001"


async def test_exhausted_bipupu_id_space_refuses_registration(client):
    await db_write(client, "UPDATE counters SET value = 99999998 WHERE name = 'bipupu_id'")
    assert (await register(client, "alice"))["bipupu_id"] == "99999999"
    resp = await client.post("/auth/register", json={"username": "bob", "password": PASSWORD})
    # Permanent, not a retry-later: a 4xx without Retry-After (a 503 with none told clients to retry for ever).
    await assert_error(resp, 409, "bipupu_id_exhausted")
    assert "Retry-After" not in resp.headers
    assert user_count(client) == 2
    assert id_counter(client) == 99999999
    await assert_error(await login(client, "bob", response=True), 401, "invalid_credentials")


# Login -------------------------------------------------------------------------------------------

async def test_login_returns_the_account_and_a_fresh_token_pair(client):
    account = await register(client, "alice", nickname="Al")
    resp = await login(client, "alice", response=True)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert set(body) == ACCOUNT_KEYS
    assert (body["bipupu_id"], body["username"], body["nickname"]) == ("00000002", "alice", "Al")
    assert (body["token_type"], body["expires_in"]) == ("bearer", 3600)
    assert body["refresh_token"] != account["refresh_token"]
    await assert_me(client, body["access_token"], "00000002")
    assert (await refresh(client, body["refresh_token"])).status == 200


@pytest.mark.parametrize("spelling", ["moon.walker", "MOON.WALKER", "ＭＯＯＮ.walker", " Moon.Walker "])
async def test_login_matches_usernames_like_uniqueness_does(client, spelling):
    await register(client, "Moon.Walker")
    resp = await login(client, spelling, response=True)
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["bipupu_id"], body["username"]) == ("00000002", "Moon.Walker")


async def test_wrong_password_and_unknown_username_give_identical_401s(client, alice):
    wrong_password = await login(client, "alice", "not the password", response=True)
    unknown_user = await login(client, "nobody", "not the password", response=True)
    await assert_error(wrong_password, 401, "invalid_credentials")
    await assert_error(unknown_user, 401, "invalid_credentials")
    assert await wrong_password.read() == await unknown_user.read()


async def test_deactivated_account_cannot_log_in(client, alice):
    await deactivate(client, alice["bipupu_id"])
    await assert_error(await login(client, "alice", response=True), 403, "account_deactivated")
    await assert_error(await login(client, "alice", "not the password", response=True), 401, "invalid_credentials")


@pytest.mark.parametrize(("body", "missing"), [
    ({"password": PASSWORD}, "username"), ({"username": "alice"}, "password"), ({}, None),
])
async def test_login_missing_fields_are_refused(client, alice, body, missing):
    await assert_error(await client.post("/auth/login", json=body), 422, "missing_field", field=missing)


async def test_login_unknown_field_is_refused(client, alice):
    resp = await client.post("/auth/login", json={"username": "alice", "password": PASSWORD, "remember": True})
    await assert_error(resp, 422, "unknown_field", field="remember")


# Rate limits -------------------------------------------------------------------------------------

def retry_after(resp) -> int:
    value = int(resp.headers["Retry-After"])
    assert value > 0
    return value


async def test_ten_failed_logins_lock_the_username_for_15_minutes(client, clock, alice, bob):
    for _ in range(10):
        await assert_error(await login(client, "alice", "not the password", response=True), 401, "invalid_credentials")
    locked = await login(client, "alice", response=True)
    await assert_error(locked, 429, "too_many_attempts")
    assert retry_after(locked) <= 15 * 60
    await assert_error(await login(client, "ALICE", response=True), 429, "too_many_attempts")
    assert (await login(client, "bob", response=True)).status == 200
    clock.advance(15 * 60 + 1)
    resp = await login(client, "alice", response=True)
    assert resp.status == 200, await resp.text()


async def test_guesses_sent_at_once_cannot_outrun_the_failure_limit(client, alice):
    # Forces the ordering that let every guess through: all 25 are in flight, none has finished
    # bcrypt, before any answer is given. At most 10 may reach bcrypt; the others are refused.
    accounts = client.server.app[keys.accounts]
    verify, gate, hashing, all_in = accounts.hasher.verify, asyncio.Event(), [], asyncio.Event()
    answers: list[int] = []

    def one_more_in() -> None:  # every guess is either hashing or answered
        if len(hashing) + len(answers) == 25:
            all_in.set()

    async def verify_when_all_are_in(password: str, hashed: str | None) -> bool:
        hashing.append(password)
        one_more_in()
        await gate.wait()
        return await verify(password, hashed)

    accounts.hasher.verify = verify_when_all_are_in

    async def guess(n: int) -> None:
        resp = await login(client, "alice", f"guess number {n}", response=True)
        answers.append(resp.status)
        one_more_in()
        if resp.status == 429:
            await assert_error(resp, 429, "too_many_attempts")

    guesses = [asyncio.create_task(guess(n)) for n in range(25)]
    await asyncio.wait_for(all_in.wait(), 10)
    gate.set()
    await asyncio.gather(*guesses)
    assert len(hashing) == 10
    assert sorted(answers) == [401] * 10 + [429] * 15
    # even the right password now
    await assert_error(await login(client, "alice", response=True), 429, "too_many_attempts")


async def test_the_right_password_gives_back_its_reserved_failure(client, alice):
    for _ in range(9):
        await assert_error(await login(client, "alice", "not the password", response=True), 401, "invalid_credentials")
    # counted as a failure while hashing, then given back
    assert (await login(client, "alice", response=True)).status == 200
    for _ in range(10):
        await assert_error(await login(client, "alice", "not the password", response=True), 401, "invalid_credentials")
    await assert_error(await login(client, "alice", response=True), 429, "too_many_attempts")


async def test_more_than_30_login_attempts_from_one_address_in_a_minute_are_refused(client, clock, alice):
    for attempt in range(30):
        assert (await login(client, "alice", response=True)).status == 200, attempt
    refused = await login(client, "alice", response=True)
    await assert_error(refused, 429, "too_many_attempts")
    assert retry_after(refused) <= 60
    await assert_error(await login(client, "someone-else", response=True), 429, "too_many_attempts")
    clock.advance(61)
    assert (await login(client, "alice", response=True)).status == 200


async def test_more_than_10_registrations_from_one_address_in_an_hour_are_refused(client, clock):
    for n in range(10):
        await register(client, f"user{n}")
    refused = await client.post("/auth/register", json={"username": "user10", "password": PASSWORD})
    await assert_error(refused, 429, "rate_limited")
    assert retry_after(refused) <= 3600
    assert user_count(client) == 11
    clock.advance(3601)
    assert (await register(client, "user10"))["bipupu_id"] == "00000012"


async def test_rate_limits_can_be_switched_off(make_client):
    client = await make_client(rate_limit=False)
    for n in range(12):
        await register(client, f"user{n}")
    for _ in range(12):
        await assert_error(await login(client, "user0", "not the password", response=True), 401, "invalid_credentials")
    for attempt in range(20):
        assert (await login(client, "user0", response=True)).status == 200, attempt


# Tokens ------------------------------------------------------------------------------------------

async def test_refresh_token_is_refused_as_bearer(client, alice):
    await assert_error(await me(client, alice["refresh_token"]), 401, "wrong_token_type")


async def test_access_token_is_refused_by_refresh(client, alice):
    await assert_error(await refresh(client, alice["access_token"]), 401, "wrong_token_type")


async def test_token_with_a_changed_signature_character_is_refused(client, alice):
    payload, signature = alice["access_token"].rsplit(".", 1)
    for position in (0, len(signature) // 2):
        changed = "B" if signature[position] == "A" else "A"
        forged = f"{payload}.{signature[:position]}{changed}{signature[position + 1:]}"
        await assert_error(await me(client, forged), 401, "invalid_token")
    await assert_me(client, alice["access_token"], alice["bipupu_id"])


async def test_token_with_a_changed_payload_is_refused(client, alice):
    claims = token_claims(alice["access_token"])
    _, signature = alice["access_token"].rsplit(".", 1)
    # The lifetime an attacker would like, under the original signature.
    longer = {**claims, "exp": claims["exp"] + 30 * DAY}
    forged = token_serializer("not-the-key").dump_payload(longer).decode() + "." + signature
    await assert_error(await me(client, forged), 401, "invalid_token")


async def test_token_signed_with_another_secret_key_is_refused(client, alice):
    claims = token_claims(alice["access_token"])
    own_key = token_serializer(client.server.app[keys.config].secret_key).dumps(claims)
    await assert_me(client, own_key, alice["bipupu_id"])  # the claims alone are good
    other_key = token_serializer("another-secret-key-0123456789abcdef").dumps(claims)
    await assert_error(await me(client, other_key), 401, "invalid_token")


async def test_token_from_a_server_with_another_secret_key_is_refused(client, make_client, alice):
    # Same database, so the session exists for both servers: only the key can tell them apart.
    other_server = await make_client(secret_key="another-secret-key-0123456789abcdef")
    bob = await register(other_server, "bob")
    await assert_me(other_server, bob["access_token"], bob["bipupu_id"])
    await assert_error(await me(client, bob["access_token"]), 401, "invalid_token")
    await assert_error(await refresh(client, bob["refresh_token"]), 401, "invalid_token")
    await assert_error(await me(other_server, alice["access_token"]), 401, "invalid_token")


async def test_expired_access_token_is_refused(client, clock, alice):
    clock.advance(3600 - 5)
    await assert_me(client, alice["access_token"], alice["bipupu_id"])
    clock.advance(6)
    await assert_error(await me(client, alice["access_token"]), 401, "token_expired")


@pytest.mark.parametrize("header", ["Basic x", "Bearer", "Bearer ", "Token abc", "bearer-abc"])
async def test_malformed_authorization_headers_are_refused(client, alice, header):
    resp = await client.get("/me", headers={"Authorization": header})
    await assert_error(resp, 401, "invalid_token")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_missing_token_is_refused_with_www_authenticate(client, alice):
    resp = await client.get("/me")
    await assert_error(resp, 401, "missing_token")
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_deactivated_account_access_token_is_forbidden(client, alice):
    await deactivate(client, alice["bipupu_id"])
    await assert_error(await me(client, alice["access_token"]), 403, "account_deactivated")


# Refresh -----------------------------------------------------------------------------------------

async def test_refresh_returns_a_new_working_pair(client, alice):
    resp = await refresh(client, alice["refresh_token"])
    assert resp.status == 200, await resp.text()
    pair = await resp.json()
    assert set(pair) == TOKEN_KEYS
    assert (pair["token_type"], pair["expires_in"]) == ("bearer", 3600)
    assert pair["refresh_token"] != alice["refresh_token"]
    await assert_me(client, pair["access_token"], alice["bipupu_id"])
    again = await refresh(client, pair["refresh_token"])
    assert again.status == 200, await again.text()


async def test_refreshed_access_token_outlives_the_first_one(client, clock, alice):
    clock.advance(3000)
    pair = await (await refresh(client, alice["refresh_token"])).json()
    clock.advance(1000)
    await assert_error(await me(client, alice["access_token"]), 401, "token_expired")
    await assert_me(client, pair["access_token"], alice["bipupu_id"])


async def test_rotated_refresh_token_reuse_revokes_the_session(client, alice):
    other_session = await login(client, "alice")
    rotated = await (await refresh(client, alice["refresh_token"])).json()
    await assert_error(await refresh(client, alice["refresh_token"]), 401, "refresh_token_reused")
    await assert_error(await refresh(client, rotated["refresh_token"]), 401, "token_revoked")
    await assert_error(await me(client, rotated["access_token"]), 401, "token_revoked")
    await assert_error(await me(client, alice["access_token"]), 401, "token_revoked")
    await assert_me(client, other_session["access_token"], alice["bipupu_id"])
    assert (await refresh(client, other_session["refresh_token"])).status == 200


async def test_refresh_token_lapses_after_30_days(client, clock, alice):
    other_session = await login(client, "alice")
    clock.advance(30 * DAY - 60)
    assert (await refresh(client, alice["refresh_token"])).status == 200
    clock.advance(61)
    await assert_error(await refresh(client, other_session["refresh_token"]), 401, "token_expired")


async def test_refresh_for_a_deactivated_account_is_forbidden(client, alice):
    await deactivate(client, alice["bipupu_id"])
    await assert_error(await refresh(client, alice["refresh_token"]), 403, "account_deactivated")


@pytest.mark.parametrize(("body", "status", "code", "field"), [
    ({}, 422, "missing_field", "refresh_token"),
    ({"refresh_token": 5}, 422, "invalid_field", "refresh_token"),
    ({"refresh_token": "garbage"}, 401, "invalid_token", None),
    ({"refresh_token": "", "all": True}, 422, "unknown_field", "all"),
], ids=["missing", "number", "garbage", "unknown-field"])
async def test_bad_refresh_requests_are_refused(client, alice, body, status, code, field):
    await assert_error(await client.post("/auth/refresh", json=body), status, code, field=field)


# Logout ------------------------------------------------------------------------------------------

async def test_logout_with_the_access_token_ends_that_session(client, alice):
    other_session = await login(client, "alice")
    resp = await client.post("/auth/logout", headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    await assert_error(await me(client, alice["access_token"]), 401, "token_revoked")
    await assert_error(await refresh(client, alice["refresh_token"]), 401, "token_revoked")
    await assert_me(client, other_session["access_token"], alice["bipupu_id"])


async def test_logout_with_only_the_refresh_token_ends_that_session(client, alice):
    other_session = await login(client, "alice")
    resp = await client.post("/auth/logout", json={"refresh_token": alice["refresh_token"]})
    assert resp.status == 204, await resp.text()
    await assert_error(await me(client, alice["access_token"]), 401, "token_revoked")
    await assert_error(await refresh(client, alice["refresh_token"]), 401, "token_revoked")
    await assert_me(client, other_session["access_token"], alice["bipupu_id"])


async def test_logout_all_revokes_every_session_of_the_user_only(client, alice, bob):
    second = await login(client, "alice")
    resp = await client.post("/auth/logout", json={"all": True}, headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    for session in (alice, second):
        await assert_error(await me(client, session["access_token"]), 401, "token_revoked")
        await assert_error(await refresh(client, session["refresh_token"]), 401, "token_revoked")
    await assert_me(client, bob["access_token"], bob["bipupu_id"])
    assert (await refresh(client, bob["refresh_token"])).status == 200
    assert (await login(client, "alice", response=True)).status == 200


@pytest.mark.parametrize("body", [None, {}, {"all": True}], ids=["no-body", "empty", "all"])
async def test_logout_without_any_token_is_refused(client, alice, body):
    resp = await client.post("/auth/logout", json=body) if body is not None else await client.post("/auth/logout")
    await assert_error(resp, 401, "missing_token")
    await assert_me(client, alice["access_token"], alice["bipupu_id"])


async def test_logout_refresh_token_null_is_refused_not_taken_as_absent(client, alice):
    resp = await client.post("/auth/logout", json={"refresh_token": None}, headers=bearer(alice))
    await assert_error(resp, 422, "invalid_field", field="refresh_token")
    await assert_me(client, alice["access_token"], alice["bipupu_id"])


@pytest.mark.parametrize("value", ["yes", 1, "true"])
async def test_logout_all_must_be_a_boolean(client, alice, value):
    resp = await client.post("/auth/logout", json={"all": value}, headers=bearer(alice))
    await assert_error(resp, 422, "invalid_field", field="all")
    await assert_me(client, alice["access_token"], alice["bipupu_id"])


async def test_logout_with_an_expired_access_token_and_a_valid_refresh_token_still_works(client, clock, alice):
    clock.advance(3601)
    await assert_error(await me(client, alice["access_token"]), 401, "token_expired")
    resp = await client.post("/auth/logout", json={"refresh_token": alice["refresh_token"]}, headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    await assert_error(await refresh(client, alice["refresh_token"]), 401, "token_revoked")


async def test_logout_with_another_users_refresh_token_is_refused(client, alice, bob):
    resp = await client.post("/auth/logout", json={"refresh_token": bob["refresh_token"]}, headers=bearer(alice))
    await assert_error(resp, 401, "invalid_token")
    await assert_me(client, bob["access_token"], bob["bipupu_id"])
    await assert_me(client, alice["access_token"], alice["bipupu_id"])


async def test_a_spent_refresh_token_cannot_log_anyone_out(client, alice):
    # An old copy of a rotated token (a phone backup) must not sign the owner out of every device.
    phone = await login(client, "alice")
    rotated = await refresh(client, alice["refresh_token"])
    assert rotated.status == 200
    newest = await rotated.json()
    for body in ({"refresh_token": alice["refresh_token"], "all": True}, {"refresh_token": alice["refresh_token"]}):
        resp = await client.post("/auth/logout", json=body)
        await assert_error(resp, 401, "refresh_token_reused")
    for session in (newest, phone):  # nothing was signed out, and the newest token still refreshes
        await assert_me(client, session["access_token"], alice["bipupu_id"])
    assert (await refresh(client, newest["refresh_token"])).status == 200


async def test_the_refresh_token_of_a_signed_out_login_cannot_log_anyone_out(client, alice):
    phone = await login(client, "alice")
    assert (await client.post("/auth/logout", headers=bearer(alice))).status == 204
    resp = await client.post("/auth/logout", json={"refresh_token": alice["refresh_token"], "all": True})
    await assert_error(resp, 401, "token_revoked")
    await assert_me(client, phone["access_token"], alice["bipupu_id"])


async def test_a_password_change_leaves_old_refresh_tokens_unable_to_log_out(client, alice):
    phone = await login(client, "alice")
    resp = await client.put("/me/password", json={"old_password": PASSWORD, "new_password": NEW_PASSWORD},
                            headers=bearer(phone))
    assert resp.status == 204, await resp.text()
    resp = await client.post("/auth/logout", json={"refresh_token": alice["refresh_token"], "all": True})
    await assert_error(resp, 401, "token_revoked")
    await assert_me(client, phone["access_token"], alice["bipupu_id"])


# Password change ---------------------------------------------------------------------------------

async def put_password(client, account, old: Any, new: Any):
    return await client.put("/me/password", json={"old_password": old, "new_password": new}, headers=bearer(account))


async def test_change_password_with_a_wrong_old_password_is_forbidden(client, alice):
    await assert_error(await put_password(client, alice, "not the password", NEW_PASSWORD), 403, "wrong_password")
    assert (await login(client, "alice", response=True)).status == 200
    await assert_error(await login(client, "alice", NEW_PASSWORD, response=True), 401, "invalid_credentials")


@pytest.mark.parametrize(("new", "code"), [(TOO_LONG_PASSWORD, "password_too_long"), ("a" * 7, "password_too_short")],
                         ids=["73-bytes", "7-bytes"])
async def test_change_password_validates_the_new_password(client, alice, new, code):
    await assert_error(await put_password(client, alice, PASSWORD, new), 422, code, field="new_password")
    assert (await login(client, "alice", response=True)).status == 200


async def test_change_password_keeps_this_session_and_revokes_the_others(client, alice):
    other_session = await login(client, "alice")
    resp = await put_password(client, alice, PASSWORD, NEW_PASSWORD)
    assert resp.status == 204, await resp.text()
    await assert_me(client, alice["access_token"], alice["bipupu_id"])
    assert (await refresh(client, alice["refresh_token"])).status == 200
    await assert_error(await me(client, other_session["access_token"]), 401, "token_revoked")
    await assert_error(await refresh(client, other_session["refresh_token"]), 401, "token_revoked")
    assert (await login(client, "alice", NEW_PASSWORD, response=True)).status == 200
    await assert_error(await login(client, "alice", response=True), 401, "invalid_credentials")


async def test_change_password_needs_an_access_token(client, alice):
    resp = await client.put("/me/password", json={"old_password": PASSWORD, "new_password": NEW_PASSWORD})
    await assert_error(resp, 401, "missing_token")
    assert (await login(client, "alice", response=True)).status == 200
