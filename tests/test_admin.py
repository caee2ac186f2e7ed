"""Account administration (admin.py): the operations the admin pages call, on a real server and database."""

from __future__ import annotations

import asyncio

import pytest
from aiohttp import WSMsgType

from bipupu_server import keys
from bipupu_server.errors import Conflict, Forbidden, Invalid, NotFound, RateLimited, Unauthorized
from bipupu_server.protocol import SIGNED_OUT
from tests.conftest import (ADMIN_PASSWORD, PASSWORD, WAIT, assert_error, bearer, db_rows, login, register,
                            send_card)

ADDRESS = "192.0.2.10"


@pytest.fixture
def admin(client):
    return client.server.app[keys.admin]


async def closed_with(ws) -> int:
    """Wait for the server's close frame (nothing else may come first); returns the code it sent."""
    msg = await ws.receive(timeout=WAIT)
    assert msg.type == WSMsgType.CLOSE, (msg.type, msg.data)
    return msg.data


# Signing in ------------------------------------------------------------------------------------

async def test_an_admin_password_check_issues_no_token(client, admin):
    who = await admin.check_admin("admin", ADMIN_PASSWORD, address=ADDRESS)
    assert (who.bipupu_id, who.username) == ("00000001", "admin")
    rows = await db_rows(client, "SELECT count(*) FROM sessions")
    assert rows == [(0,)]  # no login, no refresh token: the pages keep their own cookie


async def test_a_non_admin_is_refused_and_wrong_passwords_are_as_for_login(client, admin, alice):
    with pytest.raises(Forbidden) as refused:
        await admin.check_admin("alice", PASSWORD, address=ADDRESS)
    assert refused.value.code == "not_admin"
    with pytest.raises(Unauthorized) as wrong:
        await admin.check_admin("admin", "not the password", address=ADDRESS)
    assert wrong.value.code == "invalid_credentials"
    with pytest.raises(Unauthorized):
        await admin.check_admin("nobody-here", ADMIN_PASSWORD, address=ADDRESS)


async def test_admin_password_checks_share_the_login_limits(client, admin, make_config):
    limit = make_config().login_fail_limit.count
    for _ in range(limit):
        with pytest.raises(Unauthorized):
            await admin.check_admin("admin", "wrong password!", address=ADDRESS)
    with pytest.raises(RateLimited):
        await admin.check_admin("admin", ADMIN_PASSWORD, address=ADDRESS)
    # ... and the API's login for that account is held back as well: one budget for guesses.
    await assert_error(await login(client, "admin", ADMIN_PASSWORD, response=True), 429, "too_many_attempts")


async def test_a_deactivated_admin_cannot_sign_in(client, admin):
    second = await admin.create_user("second", PASSWORD, is_admin=True)
    await admin.set_active(second["bipupu_id"], False)
    with pytest.raises(Forbidden) as refused:
        await admin.check_admin("second", PASSWORD, address=ADDRESS)
    assert refused.value.code == "account_deactivated"


# Finding users ---------------------------------------------------------------------------------

async def test_users_are_paged_in_bipupu_id_order(client, admin):
    for n in range(5):
        await register(client, f"user{n}")
    first = await admin.users(limit=4)
    assert [u["bipupu_id"] for u in first.users] == ["00000001", "00000002", "00000003", "00000004"]
    assert first.next_after == "00000004"
    rest = await admin.users(after=first.next_after, limit=4)
    assert [u["username"] for u in rest.users] == ["user3", "user4"]
    assert rest.next_after is None
    assert set(first.users[0]) == {"bipupu_id", "username", "nickname", "is_active", "is_admin", "created_at"}
    assert "password_hash" not in str(first.users)


async def test_search_by_username_nickname_or_bipupu_id(client, admin):
    await register(client, "Zhang_Wei", nickname="小张")
    await register(client, "li.na", nickname="Nana")
    await register(client, "percent", nickname="100%")
    assert [u["username"] for u in (await admin.users("zhang")).users] == ["Zhang_Wei"]  # casefolded
    assert [u["username"] for u in (await admin.users("ＺＨＡＮＧ")).users] == ["Zhang_Wei"]  # NFKC as at login
    assert [u["username"] for u in (await admin.users("小张")).users] == ["Zhang_Wei"]
    assert [u["username"] for u in (await admin.users("nana")).users] == ["li.na"]
    assert [u["username"] for u in (await admin.users("0000000")).users] == ["admin", "Zhang_Wei", "li.na",
                                                                            "percent"]
    assert [u["username"] for u in (await admin.users("00000003")).users] == ["li.na"]
    # LIKE's wildcards in a search match themselves, not everything.
    assert [u["username"] for u in (await admin.users("%")).users] == ["percent"]
    assert [u["username"] for u in (await admin.users("_")).users] == ["Zhang_Wei"]
    assert (await admin.users("nobody")).users == []


async def test_bad_paging_is_refused_naming_the_field(admin):
    for kwargs, field in (({"after": "12"}, "after"), ({"after": "１２３４５６７８"}, "after"),
                          ({"limit": 0}, "limit"), ({"limit": 201}, "limit"), ({"text": "x" * 65}, "q")):
        with pytest.raises(Invalid) as refused:
            await admin.users(**kwargs)
        assert refused.value.field == field


async def test_one_user_in_full(client, admin, alice, bob, open_ws, clock):
    await send_card(client, alice, bob["bipupu_id"], "one")
    await send_card(client, alice, bob["bipupu_id"], "two")
    await send_card(client, bob, alice["bipupu_id"], "back")
    clock.advance(60)
    await login(client, "alice")
    ws = await open_ws(alice)
    detail = await admin.user(alice["bipupu_id"])
    assert detail["username"] == "alice" and detail["is_active"] and not detail["is_admin"]
    assert (detail["cards_sent"], detail["cards_received"]) == (2, 1)
    assert detail["live_sockets"] == 1
    assert len(detail["sessions"]) == 2  # the registration's login and the second one
    assert detail["last_seen_at"] == max(s["refreshed_at"] for s in detail["sessions"])
    assert detail["last_seen_at"] > detail["created_at"]
    await ws.close()
    with pytest.raises(NotFound):
        await admin.user("99999999")
    with pytest.raises(NotFound):
        await admin.user("not an id")


# Changing accounts -----------------------------------------------------------------------------

async def test_create_works_with_registration_closed(make_client):
    client = await make_client(registration="closed")
    admin = client.server.app[keys.admin]
    await assert_error(await client.post("/auth/register", json={"username": "carol", "password": PASSWORD}),
                       403, "registration_closed")
    made = await admin.create_user("carol", PASSWORD, "Carol")
    assert (made["bipupu_id"], made["nickname"]) == ("00000002", "Carol")
    assert "access_token" not in made
    assert (await login(client, "carol"))["bipupu_id"] == "00000002"
    with pytest.raises(Conflict) as taken:
        await admin.create_user("CAROL", PASSWORD)
    assert taken.value.code == "username_taken"


async def test_deactivating_closes_the_users_sockets_at_once_and_reactivating_restores_the_logins(
        client, admin, alice, bob, open_ws):
    phone, tablet, others = await open_ws(alice), await open_ws(alice), await open_ws(bob)
    view = await admin.set_active(alice["bipupu_id"], False)
    assert view["is_active"] is False
    assert await closed_with(phone) == SIGNED_OUT and await closed_with(tablet) == SIGNED_OUT
    await assert_error(await client.get("/me", headers=bearer(alice)), 403, "account_deactivated")
    assert not others.closed
    await others.send_json({"type": "ping"})
    assert (await others.receive_json(timeout=WAIT))["type"] == "pong"
    view = await admin.set_active(alice["bipupu_id"], True)
    assert view["is_active"] is True
    assert (await client.get("/me", headers=bearer(alice))).status == 200  # the same token works again
    await others.close()


async def test_reset_password_gives_a_new_one_once_and_signs_everything_out(client, admin, alice, open_ws):
    ws = await open_ws(alice)
    new = await admin.reset_password(alice["bipupu_id"])
    assert len(new) >= 20
    assert await closed_with(ws) == SIGNED_OUT
    await assert_error(await client.get("/me", headers=bearer(alice)), 401, "token_revoked")
    await assert_error(await login(client, "alice", response=True), 401, "invalid_credentials")
    assert (await login(client, "alice", new))["bipupu_id"] == alice["bipupu_id"]
    assert new != await admin.reset_password(alice["bipupu_id"])


async def test_sign_out_everywhere(client, admin, alice, open_ws):
    second = await login(client, "alice")
    ws = await open_ws(second)
    assert await admin.sign_out_everywhere(alice["bipupu_id"]) == 2
    assert await closed_with(ws) == SIGNED_OUT
    for account in (alice, second):
        await assert_error(await client.get("/me", headers=bearer(account)), 401, "token_revoked")
    assert (await login(client, "alice"))["bipupu_id"] == alice["bipupu_id"]  # the password still works
    assert await admin.sign_out_everywhere(alice["bipupu_id"]) == 1


async def test_grant_and_revoke_admin(client, admin, alice):
    assert (await admin.set_admin(alice["bipupu_id"], True))["is_admin"] is True
    assert (await (await client.get("/me", headers=bearer(alice))).json())["is_admin"] is True
    assert (await admin.check_admin("alice", PASSWORD, address=ADDRESS)).bipupu_id == alice["bipupu_id"]
    assert (await admin.set_admin("00000001", False))["is_admin"] is False  # alice is an admin now
    with pytest.raises(Conflict) as last:
        await admin.set_admin(alice["bipupu_id"], False)
    assert last.value.code == "last_admin"
    assert (await admin.user(alice["bipupu_id"]))["is_admin"] is True


async def test_the_last_active_admin_cannot_be_revoked_or_deactivated(client, admin):
    for change in (admin.set_admin("00000001", False), admin.set_active("00000001", False)):
        with pytest.raises(Conflict) as last:
            await change
        assert last.value.code == "last_admin"
    assert await db_rows(client, "SELECT is_admin, is_active FROM users WHERE bipupu_id = '00000001'") == [(1, 1)]
    # An inactive admin does not count: with the second admin deactivated, the first is still the last.
    second = await admin.create_user("second", PASSWORD, is_admin=True)
    await admin.set_active(second["bipupu_id"], False)
    with pytest.raises(Conflict):
        await admin.set_admin("00000001", False)


async def test_two_admins_revoking_each_other_at_once_leave_one(client, admin):
    """Both changes are queued before either runs: the check inside the write job sees the first."""
    second = await admin.create_user("second", PASSWORD, is_admin=True)
    results = await asyncio.gather(admin.set_admin("00000001", False), admin.set_admin(second["bipupu_id"], False),
                                   return_exceptions=True)
    assert sorted(type(r).__name__ for r in results) == ["Conflict", "dict"]
    assert await db_rows(client, "SELECT count(*) FROM users WHERE is_admin = 1 AND is_active = 1") == [(1,)]


async def test_unknown_users_are_not_found(admin):
    for change in (admin.set_active("00000042", False), admin.set_admin("00000042", True),
                   admin.reset_password("00000042"), admin.sign_out_everywhere("1' OR '1'='1")):
        with pytest.raises(NotFound) as missing:
            await change
        assert missing.value.code == "user_not_found"
