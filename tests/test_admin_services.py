"""The admin pages of services through HTTP: create, edit, subscribers, and broadcast now with a pattern."""

from __future__ import annotations

import re

import pytest

from bipupu_server import keys
from bipupu_server.admin import ELEVATION_S
from tests.conftest import (ADMIN_PASSWORD, assert_quiet, csrf_of, db_rows, post_form, receive_card, register,
                            send_card)

SERVICE = "/admin/services/weather.daily"


async def create_weather(client, **fields: str):
    return await post_form(client, "/admin/services", **{
        "id": "weather.daily", "name": "Weather", "description": "Rain or shine", "send_time": "07:30", **fields})


async def subscribe(client, account, service_id: str = "weather.daily") -> None:
    reply = await send_card(client, account, service_id, "SUB")
    assert reply["receiver_id"] == service_id


async def audit_actions(client, target: str) -> list[tuple]:
    return await db_rows(client, "SELECT action, detail FROM audit_log WHERE target = ? ORDER BY id", (target,))


async def message_count(client) -> int:
    return (await db_rows(client, "SELECT count(*) FROM messages"))[0][0]


async def test_the_list_shows_every_service_with_its_subscribers(admin_client, alice):
    await send_card(admin_client, alice, "cosmic.fortune", "TD")
    await admin_client.server.app[keys.services].update("cosmic.fortune", is_active=False)
    html = await (await admin_client.get("/admin/services")).text()
    fortune = re.search(r'<tr><td><a href="/admin/services/cosmic.fortune">.*?</tr>', html, re.S).group(0)
    assert "<td>1</td>" in fortune and "<td>no</td>" in fortune  # switched off services are listed too
    assert 'href="/admin/services/bipupu.notice"' in html


async def test_creating_a_service_opens_its_page_and_is_audited(admin_client):
    resp = await create_weather(admin_client)
    assert resp.status == 303 and resp.headers["Location"] == SERVICE
    assert await db_rows(admin_client, "SELECT name, description, send_time, kind, is_active FROM services"
                         " WHERE id = 'weather.daily'") == [("Weather", "Rain or shine", "07:30", "custom", 1)]
    assert await audit_actions(admin_client, "weather.daily") == [("service.create", '{"name":"Weather"}')]
    page = await admin_client.get(SERVICE)
    assert page.status == 200 and "Rain or shine" in await page.text()


@pytest.mark.parametrize("fields, words", [
    ({"id": "Weather"}, "lowercase dotted words"),
    ({"id": "12345678"}, "lowercase dotted words"),
    ({"name": ""}, "name"),
    ({"send_time": "25:00"}, "send_time must be HH:MM"),
    ({"daily_content": "x" * 501}, "daily_content"),
])
async def test_a_refused_service_shows_why_keeps_the_form_and_creates_nothing(admin_client, fields, words):
    resp = await create_weather(admin_client, **fields)
    assert resp.status == 422
    html = await resp.text()
    assert words in html and 'id="create-service"' in html
    assert await db_rows(admin_client, "SELECT count(*) FROM services") == [(2,)]
    assert await audit_actions(admin_client, "weather.daily") == []


async def test_a_service_id_taken_is_a_conflict(admin_client):
    resp = await post_form(admin_client, "/admin/services", id="cosmic.fortune", name="X", description="Y",
                           send_time="01:00")
    assert resp.status == 409 and "exists" in await resp.text()
    assert await db_rows(admin_client, "SELECT name FROM services WHERE id = 'cosmic.fortune'") != [("X",)]


async def test_user_written_service_text_is_escaped(admin_client):
    await create_weather(admin_client, name="<script>x</script>", description='"><img src=x onerror=alert(1)>')
    html = await (await admin_client.get(SERVICE)).text()
    assert "<script>x</script>" not in html and "&lt;script&gt;x&lt;/script&gt;" in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


async def test_forged_or_missing_csrf_changes_nothing(admin_client):
    for data in ({"csrf": "forged"}, {}):
        resp = await admin_client.post("/admin/services", data={**data, "id": "weather.daily", "name": "W",
                                                                "description": "D", "send_time": "07:00"})
        assert resp.status == 403
        resp = await admin_client.post("/admin/services/bipupu.notice/broadcast",
                                       data={**data, "content": "hi", "everyone": "1"})
        assert resp.status == 403
    assert await db_rows(admin_client, "SELECT count(*) FROM services") == [(2,)]
    assert await message_count(admin_client) == 0


async def test_editing_saves_the_settings_and_the_command_words(admin_client, alice):
    await create_weather(admin_client)
    resp = await post_form(admin_client, SERVICE, name="Weather now", description="Rain or shine",
                           send_time="06:45", daily_content="Take an umbrella", is_active="1",
                           words_subscribe="下雨, RAIN，YES", words_unsubscribe="NO", words_help="?")
    assert resp.status == 303 and resp.headers["Location"] == SERVICE
    row = (await db_rows(admin_client, "SELECT name, send_time, daily_content, commands FROM services"
                         " WHERE id = 'weather.daily'"))[0]
    assert row[:3] == ("Weather now", "06:45", "Take an umbrella")
    assert row[3] == '{"subscribe":["下雨","RAIN","YES"],"unsubscribe":["NO"],"help":["?"]}'
    assert (await audit_actions(admin_client, "weather.daily"))[-1] == (
        "service.edit", '{"fields":["commands","daily_content","name","send_time"]}')
    reply = await send_card(admin_client, alice, "weather.daily", "rain")  # the new word works at once
    assert await db_rows(admin_client, "SELECT bipupu_id FROM subscriptions WHERE service_id = 'weather.daily'") \
        == [(alice["bipupu_id"],)]
    assert reply["receiver_id"] == "weather.daily"


@pytest.mark.parametrize("fields, words", [
    ({"send_time": "7 am"}, "send_time must be HH:MM"),
    ({"words_subscribe": "YES", "words_help": "yes"}, "cannot mean both"),
    ({"words_help": "x" * 21}, "1 to 20 characters"),
    ({"name": "   "}, "name"),
])
async def test_a_refused_edit_shows_why_and_changes_nothing(admin_client, fields, words):
    await create_weather(admin_client)
    before = await db_rows(admin_client, "SELECT * FROM services WHERE id = 'weather.daily'")
    resp = await post_form(admin_client, SERVICE, **{"name": "W", "description": "D", "send_time": "07:00",
                                                     "is_active": "1", **fields})
    assert resp.status == 422 and words in await resp.text()
    assert await db_rows(admin_client, "SELECT * FROM services WHERE id = 'weather.daily'") == before


async def test_switching_a_service_off_stops_broadcasts_from_the_page(admin_client):
    await create_weather(admin_client)
    await post_form(admin_client, SERVICE, name="Weather", description="D", send_time="07:00")  # box unticked
    assert await db_rows(admin_client, "SELECT is_active FROM services WHERE id = 'weather.daily'") == [(0,)]
    resp = await post_form(admin_client, f"{SERVICE}/broadcast", content="hello")
    assert resp.status == 409 and "switched off" in await resp.text()
    assert await message_count(admin_client) == 0


async def test_broadcast_with_a_pattern_reaches_the_subscribers_socket(admin_client, alice, bob, open_ws):
    await create_weather(admin_client)
    await subscribe(admin_client, bob)
    ws_bob, ws_alice = await open_ws(bob), await open_ws(alice)
    resp = await post_form(admin_client, f"{SERVICE}/broadcast", content="  Storm at 5  ", led_color="#ff8800",
                           effect="blink", font="neon", duration_s="12", vibrate="1", sound="", screensaver="")
    assert resp.status == 303 and resp.headers["Location"] == f"{SERVICE}?sent=1"
    card = await receive_card(ws_bob)
    assert card["sender_id"] == "weather.daily" and card["content"] == "Storm at 5"
    assert card["msg_type"] == "COSMIC_BROADCAST"
    assert card["pattern"] == {"led_color": "#FF8800", "effect": "blink", "font": "neon", "duration_s": 12,
                               "vibrate": True}
    await assert_quiet(ws_alice)  # not a subscriber
    assert (await audit_actions(admin_client, "weather.daily"))[-1] == (
        "service.broadcast", '{"sent":1,"via":"page"}')
    page = await admin_client.get(resp.headers["Location"])
    assert "Broadcast sent to 1 users." in await page.text()


@pytest.mark.parametrize("fields, words", [
    ({"duration_s": "99"}, "duration_s"),
    ({"duration_s": "soon"}, "duration_s"),
    ({"led_color": "red"}, "led_color"),
    ({"effect": "<script>"}, "effect"),
    ({"content": "   "}, "content must be 1 to 500"),
    ({"content": "x" * 501}, "content must be 1 to 500"),
])
async def test_a_refused_broadcast_shows_why_keeps_the_draft_and_sends_nothing(admin_client, bob, fields, words):
    await create_weather(admin_client)
    await subscribe(admin_client, bob)
    before = await message_count(admin_client)
    resp = await post_form(admin_client, f"{SERVICE}/broadcast", **{"content": "Draft <b>kept</b>", **fields})
    assert resp.status == 422
    html = await resp.text()
    assert words in html and "<script>" not in html.split('<section class="card">')[1]
    if "content" not in fields:
        assert "Draft &lt;b&gt;kept&lt;/b&gt;</textarea>" in html
    assert await message_count(admin_client) == before


async def test_a_notice_to_everyone_needs_the_box_ticked(admin_client, alice, bob):
    resp = await post_form(admin_client, "/admin/services/bipupu.notice/broadcast", content="Maintenance at 3")
    assert resp.status == 422 and "tick the box" in await resp.text()
    assert await message_count(admin_client) == 0
    resp = await post_form(admin_client, "/admin/services/bipupu.notice/broadcast", content="Maintenance at 3",
                           everyone="1")
    assert resp.status == 303 and resp.headers["Location"].endswith("?sent=3")  # admin, alice and bob
    assert await db_rows(admin_client, "SELECT receiver_id FROM messages WHERE sender_id = 'bipupu.notice'"
                         " ORDER BY receiver_id") == [("00000001",), (alice["bipupu_id"],), (bob["bipupu_id"],)]


async def test_a_notice_to_everyone_asks_for_the_password_when_the_login_is_old(admin_client, clock, alice):
    clock.advance(ELEVATION_S + 1)
    path = "/admin/services/bipupu.notice/broadcast"
    resp = await post_form(admin_client, path, content="Maintenance at 3", everyone="1")
    assert resp.status == 403
    html = await resp.text()
    assert 'name="confirm_password"' in html and 'value="Maintenance at 3"' in html
    assert await message_count(admin_client) == 0
    token = csrf_of(html)
    resp = await admin_client.post(path, data={"csrf": token, "content": "Maintenance at 3", "everyone": "1",
                                               "confirm_password": "wrong"}, allow_redirects=False)
    assert resp.status == 403 and await message_count(admin_client) == 0
    resp = await admin_client.post(path, data={"csrf": token, "content": "Maintenance at 3", "everyone": "1",
                                               "confirm_password": ADMIN_PASSWORD}, allow_redirects=False)
    assert resp.status == 303 and await message_count(admin_client) == 2
    # A broadcast to one service's subscribers is not dangerous: no password asked, however old the login.
    clock.advance(ELEVATION_S + 1)
    await create_weather(admin_client)
    resp = await post_form(admin_client, f"{SERVICE}/broadcast", content="hi")
    assert resp.status == 303


async def test_the_subscribers_are_listed_and_paged(admin_client, alice, bob):
    await create_weather(admin_client)
    carol = await register(admin_client, "carol")
    for account in (alice, bob, carol):
        await subscribe(admin_client, account)
    html = await (await admin_client.get(SERVICE)).text()
    assert all(f'href="/admin/users/{a["bipupu_id"]}"' in html for a in (alice, bob, carol))
    catalog = admin_client.server.app[keys.services]
    first = await catalog.subscribers("weather.daily", limit=2)
    assert [s["username"] for s in first["subscribers"]] == ["alice", "bob"]
    assert first["next_after"] == bob["bipupu_id"]
    rest = await catalog.subscribers("weather.daily", after=first["next_after"], limit=2)
    assert [s["username"] for s in rest["subscribers"]] == ["carol"] and rest["next_after"] is None
    html = await (await admin_client.get(f"{SERVICE}?after={bob['bipupu_id']}")).text()
    assert "carol" in html and 'href="/admin/users/00000002"' not in html


@pytest.mark.parametrize("path, status", [
    ("/admin/services/no.such", 404),
    ("/admin/services/12345678", 404),
    ("/admin/services/%3Cscript%3E", 404),
    ("/admin/services/cosmic.fortune?after=../../x", 400),
    ("/admin/services/cosmic.fortune?after=%ff%fe", 400),
    ("/admin/services/cosmic.fortune?sent=%3Cb%3E", 200),
])
async def test_odd_paths_get_an_html_page_not_a_500(admin_client, path, status):
    resp = await admin_client.get(path)
    assert resp.status == status
    assert resp.headers["Content-Security-Policy"].startswith("default-src 'none'")
    assert "<b>" not in await resp.text()


async def test_the_page_loads_its_preview_script_from_static(admin_client):
    html = await (await admin_client.get("/admin/services/cosmic.fortune")).text()
    assert '<script src="/static/pattern-preview.js" defer></script>' in html
    assert re.search(r"<script>|\son[a-z]+=", html) is None  # no inline script, no inline handlers
    script = await admin_client.get("/static/pattern-preview.js")
    assert script.status == 200 and "preview" in await script.text()
