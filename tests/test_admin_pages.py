"""The admin pages (/admin) through HTTP: sign-in, the cookie, CSRF, elevation, escaping, headers, i18n."""

from __future__ import annotations

import re
from typing import Any

import pytest
from aiohttp import WSMsgType

from bipupu_server import keys
from bipupu_server.admin import ELEVATION_S, PAGE_ABSOLUTE_S, PAGE_IDLE_S
from bipupu_server.protocol import SIGNED_OUT
from tests.conftest import (ADMIN_PASSWORD, PASSWORD, WAIT, assert_error, bearer, csrf_of, db_rows, db_write, form_token,
                            post_form, register, sign_in)

async def test_signed_out_browsers_are_sent_to_the_login_page(client):
    for path in ("/admin/", "/admin/users", "/admin/users/00000001", "/admin/audit"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/admin/login", path
    resp = await client.post("/admin/users/00000001/deactivate", data={"csrf": "x"}, allow_redirects=False)
    assert resp.status == 403
    assert await db_rows(client, "SELECT is_active FROM users WHERE bipupu_id = '00000001'") == [(1,)]


async def test_login_sets_a_strict_http_only_cookie_and_opens_the_dashboard(client):
    resp = await sign_in(client)
    cookie = resp.cookies["bipupu_admin"]
    assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/admin"
    assert not cookie["secure"]  # plain HTTP here; Secure whenever the request came over HTTPS
    page = await client.get("/admin/")
    assert page.status == 200
    html = await page.text()
    assert 'id="users">1<' in html and "Dashboard" in html
    assert await db_rows(client, "SELECT kind FROM sessions") == [("admin",)]
    assert await db_rows(client, "SELECT count(*) FROM refresh_tokens") == [(0,)]


@pytest.mark.parametrize("username, password, status, words", [
    ("admin", "wrong password", 401, "Wrong username or password."),
    ("nobody", ADMIN_PASSWORD, 401, "Wrong username or password."),
    ("alice", PASSWORD, 403, "This account is not an admin."),
])
async def test_a_refused_login_shows_why_and_sets_no_cookie(client, alice, username, password, status, words):
    resp = await sign_in(client, username, password)
    assert resp.status == status
    assert words in await resp.text()
    assert "bipupu_admin" not in resp.cookies
    assert (await client.get("/admin/", allow_redirects=False)).status == 303


async def test_a_login_without_or_with_a_forged_csrf_token_is_refused(client):
    await client.get("/admin/login")  # the form cookie is set
    for token in (None, "0" * 32, "forged"):
        data = {"username": "admin", "password": ADMIN_PASSWORD, **({"csrf": token} if token else {})}
        resp = await client.post("/admin/login", data=data, allow_redirects=False)
        assert resp.status == 403, token
        assert "bipupu_admin" not in resp.cookies
    assert await db_rows(client, "SELECT count(*) FROM sessions") == [(0,)]


async def test_an_action_with_a_forged_csrf_token_changes_nothing(admin_client, alice):
    for data in ({}, {"csrf": "0" * 40}):
        resp = await admin_client.post(f"/admin/users/{alice['bipupu_id']}/deactivate", data=data,
                                       allow_redirects=False)
        assert resp.status == 403
    assert await db_rows(admin_client, "SELECT is_active FROM users WHERE username = 'alice'") == [(1,)]


async def test_a_cross_origin_form_is_refused(admin_client, alice):
    token = csrf_of(await (await admin_client.get("/admin/users")).text())
    resp = await admin_client.post(f"/admin/users/{alice['bipupu_id']}/deactivate", data={"csrf": token},
                                   headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert resp.status == 403
    assert await db_rows(admin_client, "SELECT is_active FROM users WHERE username = 'alice'") == [(1,)]


async def test_deactivating_from_the_page_closes_the_users_socket_with_4003(admin_client, alice, open_ws):
    ws = await open_ws(alice)
    resp = await post_form(admin_client, f"/admin/users/{alice['bipupu_id']}/deactivate")
    assert resp.status == 303 and resp.headers["Location"] == f"/admin/users/{alice['bipupu_id']}"
    msg = await ws.receive(timeout=WAIT)
    assert (msg.type, msg.data) == (WSMsgType.CLOSE, SIGNED_OUT)
    page = await (await admin_client.get(f"/admin/users/{alice['bipupu_id']}")).text()
    assert 'id="active">no<' in page and "user.deactivate" in page
    audit = await db_rows(admin_client, "SELECT actor_id, action, target, address FROM audit_log WHERE action LIKE 'user.%'")
    assert audit == [("00000001", "user.deactivate", alice["bipupu_id"], "127.0.0.1")]


async def test_dangerous_actions_ask_for_the_password_again_after_a_few_minutes(admin_client, alice, clock):
    target = f"/admin/users/{alice['bipupu_id']}/reset-password"
    clock.advance(ELEVATION_S + 1)
    resp = await post_form(admin_client, target)
    assert resp.status == 403 and 'name="confirm_password"' in await resp.text()
    resp = await post_form(admin_client, target, confirm_password="not it")
    assert resp.status == 403 and "Wrong username or password." in await resp.text()
    assert await db_rows(admin_client, "SELECT count(*) FROM audit_log WHERE action = 'user.reset_password'") == [(0,)]
    resp = await post_form(admin_client, target, confirm_password=ADMIN_PASSWORD)
    assert resp.status == 200
    shown = re.search(r'id="new-password">([^<]+)<', await resp.text()).group(1)
    login = await admin_client.post("/auth/login", json={"username": "alice", "password": shown})
    assert login.status == 200
    # The audit log says it happened, never what the password is.
    rows = await db_rows(admin_client, "SELECT detail FROM audit_log")
    assert rows and all(shown not in detail and ADMIN_PASSWORD not in detail for (detail,) in rows)


async def test_the_last_admin_cannot_be_revoked_from_the_page(admin_client):
    resp = await post_form(admin_client, "/admin/users/00000001/revoke-admin")
    assert resp.status == 409
    assert await db_rows(admin_client, "SELECT is_admin FROM users WHERE bipupu_id = '00000001'") == [(1,)]


async def test_create_a_user_and_find_them(admin_client):
    resp = await post_form(admin_client, "/admin/users", username="carol", password=PASSWORD, nickname="Carol")
    assert resp.status == 303 and resp.headers["Location"] == "/admin/users/00000002"
    found = await (await admin_client.get("/admin/users", params={"q": "caro"})).text()
    assert "/admin/users/00000002" in found
    resp = await post_form(admin_client, "/admin/users", username="carol", password=PASSWORD)
    assert resp.status == 409


async def test_user_written_text_is_escaped(admin_client):
    await register(admin_client, "mallory", nickname="<script>alert(1)</script>")
    for path in ("/admin/users", "/admin/users/00000002"):
        html = await (await admin_client.get(path)).text()
        assert "<script>alert(1)</script>" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script" not in await (await admin_client.get("/admin/users", params={"q": "<script>"})).text()


async def test_every_page_carries_the_security_headers(admin_client):
    for path in ("/admin/", "/admin/users", "/admin/users/00000001", "/admin/audit", "/admin/users/00000099"):
        resp = await admin_client.get(path)
        headers = resp.headers
        assert "script-src 'self'" in headers["Content-Security-Policy"]
        assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
        assert "unsafe-inline" not in headers["Content-Security-Policy"]
        assert headers["X-Content-Type-Options"] == "nosniff"
        assert headers["Referrer-Policy"] == "same-origin"
        assert headers["Cache-Control"] == "no-store"
        assert resp.content_type == "text/html"
        assert "<script" not in await resp.text()  # no inline script anywhere
    assert (await admin_client.get("/admin/users/00000099")).status == 404


async def test_a_bearer_token_opens_no_page_and_the_cookie_authorises_no_api(admin_client):
    token = (await (await admin_client.post("/auth/login", json={"username": "admin",
                                                                  "password": ADMIN_PASSWORD})).json())
    fresh = await admin_client.get("/admin/", headers=bearer(token), allow_redirects=False)
    assert fresh.status == 403
    me = await admin_client.get("/me")  # the client still holds the admin cookie
    assert me.status == 401


async def test_logout_ends_the_page_login(admin_client):
    token = csrf_of(await (await admin_client.get("/admin/")).text())
    resp = await admin_client.post("/admin/logout", data={"csrf": token}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login"
    assert (await admin_client.get("/admin/", allow_redirects=False)).status == 303
    assert await db_rows(admin_client, "SELECT revoked_why FROM sessions") == [("logged out",)]
    assert [a for (a,) in await db_rows(admin_client, "SELECT action FROM audit_log ORDER BY id")] == [
        "admin.login", "admin.logout"]


async def test_a_stolen_cookie_stops_working_after_logout(client):
    resp = await sign_in(client)
    cookie = resp.cookies["bipupu_admin"].value
    token = csrf_of(await (await client.get("/admin/")).text())
    await client.post("/admin/logout", data={"csrf": token})
    replay = await client.get("/admin/", cookies={"bipupu_admin": cookie}, allow_redirects=False)
    assert replay.status == 303


@pytest.mark.parametrize("idle, absolute", [(PAGE_IDLE_S, False), (PAGE_ABSOLUTE_S, True)])
async def test_page_logins_expire_when_idle_and_absolutely(admin_client, clock, idle, absolute):
    if absolute:  # keep it busy: an idle timeout must not be what ends it
        for _ in range(PAGE_ABSOLUTE_S // (PAGE_IDLE_S // 2)):
            clock.advance(PAGE_IDLE_S // 2)
            if (await admin_client.get("/admin/", allow_redirects=False)).status != 200:
                break
        assert (await admin_client.get("/admin/", allow_redirects=False)).status == 303
    else:
        clock.advance(idle - 5)
        assert (await admin_client.get("/admin/", allow_redirects=False)).status == 200
        clock.advance(idle)
        assert (await admin_client.get("/admin/", allow_redirects=False)).status == 303


async def test_a_forged_or_foreign_cookie_is_ignored(client):
    for value in ("garbage", "ImFkbWluIg.forged", "x" * 4000):
        resp = await client.get("/admin/", cookies={"bipupu_admin": value}, allow_redirects=False)
        assert resp.status == 303


async def test_deactivating_an_admin_ends_their_page_login(admin_client, make_config):
    admin = admin_client.server.app[keys.admin]
    second = await admin.create_user("second", PASSWORD, is_admin=True)
    await admin.set_active("00000001", False)
    assert (await admin_client.get("/admin/", allow_redirects=False)).status == 303
    assert second["bipupu_id"] == "00000002"


async def test_chinese_by_accept_language(client):
    resp = await client.get("/admin/login", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    html = await resp.text()
    assert "用户名" in html and resp.headers["Content-Language"] == "zh"
    resp = await client.get("/admin/login", headers={"Accept-Language": "fr, en;q=0.5"})
    assert "Username" in await resp.text() and resp.headers["Content-Language"] == "en"


@pytest.mark.parametrize("body, content_type, status", [
    (b"csrf=x&username=\xff\xfe", "application/x-www-form-urlencoded", 400),
    (b'{"username": "admin"}', "application/json", 415),
    (b"a=" + b"x" * (70 * 1024), "application/x-www-form-urlencoded", 413),
])
async def test_bad_bodies_get_a_clear_refusal(client, body, content_type, status):
    await client.get("/admin/login")
    resp = await client.post("/admin/login", data=body, headers={"Content-Type": content_type},
                             allow_redirects=False)
    assert resp.status == status
    assert resp.content_type == "text/html"


async def test_login_attempts_are_limited_like_the_apis(client, make_config):
    for _ in range(make_config().login_fail_limit.count):
        assert (await sign_in(client, "admin", "wrong password")).status == 401
    resp = await sign_in(client)
    assert resp.status == 429 and "Retry-After" in resp.headers


# The JSON door for scripts: POST /services/{id}/broadcast with an admin's bearer token ------------

async def admin_token(client) -> dict[str, Any]:
    resp = await client.post("/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD})
    assert resp.status == 200
    return await resp.json()


async def test_an_admin_token_broadcasts_to_everyone_through_the_notice_service(client, alice, bob, open_ws):
    ws = await open_ws(bob)
    pattern = {"led_color": "#FF8800", "effect": "blink", "duration_s": 3}
    resp = await client.post("/services/bipupu.notice/broadcast", json={"content": "维护通知", "pattern": pattern},
                             headers=bearer(await admin_token(client)))
    assert resp.status == 200, await resp.text()
    body = await resp.json()
    assert (body["service_id"], body["sent"]) == ("bipupu.notice", 3) and body["duration_s"] >= 0
    frame = await ws.receive_json(timeout=WAIT)
    assert frame["type"] == "new_message"
    card = frame["payload"]
    assert (card["sender_id"], card["content"], card["msg_type"]) == ("bipupu.notice", "维护通知", "COSMIC_BROADCAST")
    assert card["pattern"]["led_color"] == "#FF8800" and card["pattern"]["effect"] == "blink"
    audit = await db_rows(client, "SELECT actor_id, action, target, detail FROM audit_log")
    assert audit == [("00000001", "service.broadcast", "bipupu.notice", '{"sent":3,"via":"api"}')]


async def test_broadcasting_needs_an_admin_token_and_a_good_body(client, alice):
    path = "/services/bipupu.notice/broadcast"
    await assert_error(await client.post(path, json={"content": "x"}), 401, "missing_token")
    await assert_error(await client.post(path, json={"content": "x"}, headers=bearer(alice)), 403, "not_admin")
    admin = await admin_token(client)
    await assert_error(await client.post(path, json={"content": "   "}, headers=bearer(admin)), 422, "invalid_field",
                       "content")
    await assert_error(await client.post(path, json={"content": "x", "pattern": {"effect": "explode"}},
                                         headers=bearer(admin)), 422, "invalid_field")
    await assert_error(await client.post(path, data=b"\xff\xfe", headers={**bearer(admin),
                                         "Content-Type": "application/json"}), 400, "malformed_json")
    await assert_error(await client.post("/services/no.such/broadcast", json={"content": "x"}, headers=bearer(admin)),
                       404, "service_not_found")
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]
    # The admin page cookie alone authorises nothing here.
    await sign_in(client)
    await assert_error(await client.post(path, json={"content": "x"}), 401, "missing_token")


async def test_a_switched_off_service_cannot_broadcast(client, alice):
    await db_write(client, "UPDATE services SET is_active = 0 WHERE id = 'cosmic.fortune'")
    await assert_error(await client.post("/services/cosmic.fortune/broadcast", json={"content": "x"},
                                         headers=bearer(await admin_token(client))), 409, "service_inactive")
