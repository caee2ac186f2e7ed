"""The admin's Messages and Relay pages through HTTP: filters, paging, escaping, refusals, the relay that is off."""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from bipupu_server import keys
from bipupu_server.records import pattern_parts
from bipupu_server.store.browse import page_sql
from tests.conftest import (BOB, PASSWORD, bearer, csrf_of, db_rows, login, register, send_card,
                            sign_in)

ZONE = "Asia/Shanghai"  # UTC+8 all year: a card at 16:30 UTC is on the next local day
ROW = re.compile(r'<tr id="m-([0-9a-f-]+)">')
NEXT = re.compile(r'<a href="([^"]+)" rel="next">')


@pytest.fixture
async def client(make_client):
    """The test's server with days in a known zone and no sending limits (pages of many cards)."""
    return await make_client(timezone=ZONE, rate_limit=False)


async def page(client, path: str = "/admin/messages", **params: str) -> tuple[int, str]:
    resp = await client.get(path, params=params, allow_redirects=False)
    return resp.status, await resp.text()


def shown(html: str) -> list[str]:
    """The message ids the page lists, in its order."""
    return ROW.findall(html)


def next_link(html: str) -> str | None:
    match = NEXT.search(html)
    return match.group(1).replace("&amp;", "&") if match else None


def local_day(client, ts: float) -> str:
    return datetime.fromtimestamp(ts, client.server.app[keys.zone]).date().isoformat()


# Who may look ----------------------------------------------------------------------------------

async def test_signed_out_browsers_are_sent_to_the_login_page(client):
    for path in ("/admin/messages", "/admin/relay"):
        resp = await client.get(path, allow_redirects=False)
        assert resp.status == 303 and resp.headers["Location"] == "/admin/login", path
    resp = await client.post("/admin/relay/test", data={"csrf": "x"}, allow_redirects=False)
    assert resp.status == 403


async def test_a_bearer_token_opens_neither_page(admin_client):
    token = await login(admin_client, "admin", "admin-password-1")
    for path in ("/admin/messages", "/admin/relay"):
        resp = await admin_client.get(path, headers=bearer(token), allow_redirects=False)
        assert resp.status == 403, path


# Messages: the list and its filters ------------------------------------------------------------

async def test_every_card_is_listed_newest_first_with_links_and_a_dropped_marker(admin_client, alice, bob, clock):
    first = await send_card(admin_client, alice, BOB, "first")
    clock.advance(1)
    second = await send_card(admin_client, bob, alice["bipupu_id"], "second",
                             pattern={"led_color": "#ff8800", "effect": "blink", "duration_s": 3, "font": "neon",
                                      "vibrate": True})
    clock.advance(1)
    resp = await admin_client.post("/blocks", json={"blocked_id": alice["bipupu_id"]}, headers=bearer(bob))
    assert resp.status == 201, await resp.text()
    third = await send_card(admin_client, alice, BOB, "third, dropped")  # accepted for the sender, never delivered
    status, html = await page(admin_client)
    assert status == 200
    assert shown(html) == [third["id"], second["id"], first["id"]]
    assert f'<a href="/admin/users/{alice["bipupu_id"]}">{alice["bipupu_id"]}</a>' in html
    assert f'<a href="/admin/users/{BOB}">{BOB}</a>' in html
    assert "#FF8800 · blink · 3 s · Font neon · vibrate" in html
    rows = html.split('<tr id="m-')
    assert 'class="dropped"' in rows[1] and 'class="dropped"' not in rows[2] + rows[3]
    assert next_link(html) is None


async def test_an_empty_box_says_so(admin_client):
    status, html = await page(admin_client)
    assert status == 200 and "No messages." in html and not shown(html)


async def test_sender_receiver_and_type_each_narrow_the_list(admin_client, alice, bob):
    a_to_b = await send_card(admin_client, alice, BOB, "a to b")
    voice = await send_card(admin_client, alice, BOB, "a to b, spoken", msg_type="VOICE_TRANSCRIPT")
    b_to_a = await send_card(admin_client, bob, alice["bipupu_id"], "b to a")
    help_card = await send_card(admin_client, bob, "cosmic.fortune", "?")  # the service answers with a broadcast
    answers = await db_rows(admin_client, "SELECT id FROM messages WHERE sender_id = 'cosmic.fortune'")
    assert len(answers) == 1
    answer = answers[0][0]
    cases = [
        ({"sender": alice["bipupu_id"]}, [voice["id"], a_to_b["id"]]),
        ({"receiver": alice["bipupu_id"]}, [b_to_a["id"]]),
        ({"sender": BOB, "receiver": "cosmic.fortune"}, [help_card["id"]]),
        ({"sender": "cosmic.fortune"}, [answer]),
        ({"type": "VOICE_TRANSCRIPT"}, [voice["id"]]),
        ({"type": "COSMIC_BROADCAST"}, [answer]),
        ({"sender": alice["bipupu_id"], "type": "USER_POSTCARD"}, [a_to_b["id"]]),
        ({"sender": alice["bipupu_id"], "receiver": alice["bipupu_id"]}, []),
        ({"sender": "  " + alice["bipupu_id"] + " ", "receiver": "", "type": ""}, [voice["id"], a_to_b["id"]]),
    ]
    for params, expected in cases:
        status, html = await page(admin_client, **params)
        assert status == 200, params
        assert shown(html) == expected, params
    # The form shows the filter it answered, for the next change.
    _, html = await page(admin_client, sender=alice["bipupu_id"], type="VOICE_TRANSCRIPT")
    assert f'name="sender" value="{alice["bipupu_id"]}"' in html
    assert '<option value="VOICE_TRANSCRIPT" selected>' in html


async def test_days_are_local_days_of_the_broadcast_zone_and_to_is_included(client, alice, bob, clock):
    times, ids = [], []
    for content, step in (("monday late", 0), ("tuesday just after midnight", 2 * 3600), ("thursday", 2 * 86400)):
        clock.advance(step)
        account = await login(client, "alice")  # tokens lapse across days: a fresh login each time
        ids.append((await send_card(client, account, BOB, content))["id"])
        times.append(clock.time())
    monday, tuesday, thursday = (local_day(client, t) for t in times)
    assert (monday, tuesday) == ("2026-09-21", "2026-09-22")  # 16:13 UTC on the 21st is already the 22nd here
    assert (await sign_in(client)).status == 303
    cases = [
        ({"from": tuesday, "to": tuesday}, [ids[1]]),
        ({"from": tuesday}, [ids[2], ids[1]]),
        ({"to": monday}, [ids[0]]),
        ({"to": tuesday}, [ids[1], ids[0]]),
        ({"from": "2026-09-23", "to": "2026-09-23"}, []),
        ({"from": thursday, "to": "9999-12-31"}, [ids[2]]),
        ({"from": "1970-01-01", "to": monday}, [ids[0]]),
    ]
    for params, expected in cases:
        status, html = await page(client, **params)
        assert status == 200, (params, html[:300])
        assert shown(html) == expected, params
    _, html = await page(client, **{"from": tuesday, "to": thursday})
    assert f'name="from" value="{tuesday}"' in html and f'name="to" value="{thursday}"' in html
    assert ZONE in html


async def test_pages_of_fifty_go_back_in_time_and_keep_the_filter(admin_client, alice, bob, clock):
    mine = []
    for n in range(53):
        mine.append((await send_card(admin_client, alice, BOB, f"card {n}"))["id"])
        if n % 10 == 0:  # others' cards in between, which the filter must keep out of every page
            await send_card(admin_client, bob, alice["bipupu_id"], f"reply {n}")
            await send_card(admin_client, alice, BOB, f"spoken {n}", msg_type="VOICE_TRANSCRIPT")
        clock.advance(0.001)
    filters = {"sender": alice["bipupu_id"], "type": "USER_POSTCARD"}
    status, html = await page(admin_client, **filters)
    assert status == 200 and shown(html) == mine[::-1][:50]
    link = next_link(html)
    assert link is not None
    parts = urlsplit(link)
    assert parts.path == "/admin/messages"
    assert parse_qs(parts.query) == {"sender": [alice["bipupu_id"]], "type": ["USER_POSTCARD"], "before": [mine[3]]}
    resp = await admin_client.get(link)
    older = await resp.text()
    assert resp.status == 200 and shown(older) == mine[2::-1]
    assert next_link(older) is None
    # Unfiltered, the first page is fifty of everything.
    _, html = await page(admin_client)
    assert len(shown(html)) == 50 and next_link(html) == f"/admin/messages?before={shown(html)[-1]}"


async def test_every_filter_runs_along_an_index_newest_first(client):
    plans = {
        (True, True): "messages_by_pair",
        (True, False): "messages_by_sender",
        (False, True): "messages_by_receiver",
        (False, False): "PRIMARY KEY",
    }
    params = {"sender": "00000002", "receiver": "00000003", "msg_type": None, "low": "", "high": "~", "limit": 51}
    for (sender, receiver), index in plans.items():
        rows = await db_rows(client, "EXPLAIN QUERY PLAN " + page_sql(sender=sender, receiver=receiver), params)
        plan = " / ".join(row[-1] for row in rows)
        assert index in plan and "TEMP B-TREE" not in plan and "SCAN" not in plan, plan


def test_a_pattern_that_is_not_an_object_shows_as_nothing():
    assert pattern_parts("{}") == pattern_parts("[1]") == pattern_parts("not json") == []
    assert [p["value"] for p in pattern_parts('{"effect": "explode", "led_color": "#00FF00"}')] == ["#00FF00"]


# Messages: hostile and broken input ------------------------------------------------------------

async def test_card_text_is_escaped(admin_client, alice, bob):
    await send_card(admin_client, alice, BOB, "<script>alert(1)</script>")
    status, html = await page(admin_client)
    assert status == 200
    assert "<script>alert(1)</script>" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


@pytest.mark.parametrize("query", [
    "sender=alice",
    "sender=1234567",
    "sender=%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%90%EF%BC%92",  # full-width digits
    "sender=%3Cscript%3Ealert(1)%3C/script%3E",
    "receiver=../../etc/passwd",
    "receiver=Cosmic.Fortune",
    "type=POSTCARD",
    "type=user_postcard",
    "from=2026-13-40",
    "to=2026-02-30",
    "from=20260921",
    "from=1969-12-31",
    "from=2026-09-22&to=2026-09-21",
    "before=../../etc",
    "before=0199A3B0-0000-7000-8000-000000000000",
    "sender=%ff%fe",
    "from=%ff%fe",
    "before=%ff%fe",
    "sender=%00",
    "sender=" + "1" * 4000,
    "receiver=a." + "b" * 4000,
    "before=" + "a" * 4000,
])
async def test_bad_filters_get_a_400_page_not_a_crash(admin_client, query):
    resp = await admin_client.get(f"/admin/messages?{query}", allow_redirects=False)
    html = await resp.text()
    assert resp.status == 400, (query, html[:300])
    assert resp.content_type == "text/html"
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "<script" not in html
    assert '<section class="card narrow">' in html  # the admin error page, in the admin layout


async def test_a_bad_filter_says_what_is_wrong(admin_client):
    for params, words in (({"sender": "alice"}, "The sender must be a bipupu_id"),
                          ({"type": "x"}, "The type must be USER_POSTCARD"),
                          ({"from": "2026-13-40"}, "A day is written YYYY-MM-DD"),
                          ({"from": "2026-09-22", "to": "2026-09-21"}, "The first day is after the last."),
                          ({"before": "x"}, "before must be a message id")):
        status, html = await page(admin_client, **params)
        assert status == 400 and words in html, params


# Relay -----------------------------------------------------------------------------------------

@pytest.mark.relay_off
async def test_the_relay_page_says_the_relay_is_off(admin_client):
    status, html = await page(admin_client, "/admin/relay")
    assert status == 200
    assert 'id="relay-state">off<' in html and 'id="relay-device">none<' in html
    assert "BIPUPU_BLE_DEVICE" in html and "BIPUPU_BLE_OWNER" in html
    for column in ("When", "Frame", "Message id", "Sequence", "Bytes", "Outcome"):
        assert f"<th>{column}</th>" in html, column
    assert "No frames sent yet." in html
    assert re.search(r'<button type="submit" id="relay-test" disabled>', html)
    assert 'action="/admin/relay/test"' in html


@pytest.mark.relay_off
async def test_a_test_card_while_the_relay_is_off_is_refused_and_changes_nothing(admin_client):
    before = await db_rows(admin_client, "SELECT count(*) FROM audit_log")
    token = csrf_of(await (await admin_client.get("/admin/relay")).text())
    resp = await admin_client.post("/admin/relay/test", data={"csrf": token}, allow_redirects=False)
    html = await resp.text()
    assert resp.status == 409
    assert "The relay is off: no test card was sent." in html and 'id="relay-state">off<' in html
    assert "script-src 'self'" in resp.headers["Content-Security-Policy"]
    assert await db_rows(admin_client, "SELECT count(*) FROM audit_log") == before
    assert await db_rows(admin_client, "SELECT count(*) FROM messages") == [(0,)]


async def test_a_test_card_without_or_with_a_forged_csrf_token_is_refused(admin_client):
    for data in ({}, {"csrf": "0" * 40}, {"csrf": "forged"}):
        resp = await admin_client.post("/admin/relay/test", data=data, allow_redirects=False)
        assert resp.status == 403, data
    other = await register(admin_client, "carol", PASSWORD)  # a token of the JSON API is no form token either
    resp = await admin_client.post("/admin/relay/test", data={"csrf": other["access_token"]}, allow_redirects=False)
    assert resp.status == 403


# Both pages in Chinese ------------------------------------------------------------------------

@pytest.mark.relay_off
async def test_both_pages_answer_in_chinese(admin_client):
    for path, word in (("/admin/messages", "用户"), ("/admin/relay", "关闭")):
        resp = await admin_client.get(path, headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
        assert resp.status == 200 and resp.headers["Content-Language"] == "zh", path
        assert word in await resp.text(), path
    resp = await admin_client.get("/admin/messages", params={"type": "x"}, headers={"Accept-Language": "zh-CN"})
    assert resp.status == 400 and resp.headers["Content-Language"] == "zh"
