"""Service accounts (SPEC §4 GET /services, §6): the catalogue, commands as cards, admin edits, broadcast now."""

from __future__ import annotations

import re
from pathlib import Path
from datetime import datetime, timezone
from typing import Any

import orjson
import pytest

import bipupu_server
from bipupu_server import keys
from bipupu_server.services.commands import DEFAULT_WORDS
from bipupu_server.store import db as dbmod
from bipupu_server.errors import Conflict, Invalid, NotFound
from bipupu_server.mailbox import check_pattern
from tests.conftest import (ADMIN_PASSWORD, WAIT, assert_error, bearer, db_rows, db_write, login, post_card,
                            register)

ADMIN, ALICE, BOB, CAROL = "00000001", "00000002", "00000003", "00000004"
FORTUNE, NOTICE = "cosmic.fortune", "bipupu.notice"
SERVICE_KEYS = {"id", "name", "description", "subscribed"}
MESSAGE_KEYS = {"id", "sender_id", "receiver_id", "content", "msg_type", "pattern", "created_at"}
SUBSCRIBE_WORDS = ["TD", "订阅", "SUB"]
UNSUBSCRIBE_WORDS = ["退订", "STOP", "UNSUB"]
HELP_WORDS = ["?", "HELP", "帮助"]


# Helpers ----------------------------------------------------------------------------------------

async def subscribers(client, service_id: str = FORTUNE) -> list[str]:
    rows = await db_rows(client, "SELECT bipupu_id FROM subscriptions WHERE service_id = ? ORDER BY bipupu_id",
                         (service_id,))
    return [r[0] for r in rows]


async def deactivate(client, bipupu_id: str) -> None:
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (bipupu_id,))


async def switch_off(client, service_id: str) -> None:
    await db_write(client, "UPDATE services SET is_active = 0 WHERE id = ?", (service_id,))


async def command(client, sender: dict[str, Any], text: str, service_id: str = FORTUNE,
                  **fields: Any) -> dict[str, Any]:
    """Send a command card that must be accepted (201); returns the card."""
    resp = await post_card(client, sender, service_id, text, **fields)
    assert resp.status == 201, await resp.text()
    return await resp.json()


async def mailbox(client, account: dict[str, Any], **query: Any) -> list[dict[str, Any]]:
    resp = await client.get("/messages", params={k: str(v) for k, v in query.items()}, headers=bearer(account))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["messages"]


async def reply_to(client, account: dict[str, Any], card: dict[str, Any]) -> dict[str, Any]:
    """The service's answer to `card`: the newest card in the inbox, which must come right after it."""
    inbox = await mailbox(client, account, direction="all", limit=2)
    reply, mine = inbox
    assert mine == card
    assert reply["id"] > card["id"]
    assert set(reply) == MESSAGE_KEYS
    assert reply["sender_id"] == card["receiver_id"]
    assert reply["receiver_id"] == card["sender_id"]
    assert reply["msg_type"] == "COSMIC_BROADCAST"
    return reply


async def ask(client, account: dict[str, Any], text: str, service_id: str = FORTUNE) -> str:
    """Send a command and return the text of the service's reply."""
    card = await command(client, account, text, service_id)
    return (await reply_to(client, account, card))["content"]


async def services_of(client, account: dict[str, Any]) -> dict[str, dict[str, Any]]:
    resp = await client.get("/services", headers=bearer(account))
    assert resp.status == 200, await resp.text()
    assert resp.content_type == "application/json"
    listing = await resp.json()
    assert isinstance(listing, list)
    for entry in listing:
        assert set(entry) == SERVICE_KEYS
    by_id = {entry["id"]: entry for entry in listing}
    assert len(by_id) == len(listing)
    return by_id


async def subscribed(client, account: dict[str, Any], service_id: str = FORTUNE) -> bool:
    return (await services_of(client, account))[service_id]["subscribed"]


async def next_push(ws) -> dict[str, Any]:
    frame = await ws.receive_json(timeout=WAIT)
    assert frame["type"] == "new_message", frame
    assert set(frame["payload"]) == MESSAGE_KEYS
    return frame["payload"]


async def assert_nothing_pushed(ws) -> None:
    """Anything already pushed would be queued before the pong: the pong first proves there was none."""
    await ws.send_json({"type": "ping"})
    assert await ws.receive_json(timeout=WAIT) == {"type": "pong"}


def utc(*args: int) -> float:
    return datetime(*args, tzinfo=timezone.utc).timestamp()


@pytest.fixture
async def carol(client, alice, bob) -> dict[str, Any]:
    return await register(client, "carol")


# GET /services -----------------------------------------------------------------------------------

async def test_services_lists_exactly_the_active_services(client, alice):
    resp = await client.get("/services", headers=bearer(alice))
    assert resp.status == 200
    listing = await resp.json()
    assert sorted(listing, key=lambda s: s["id"]) == [
        {"id": NOTICE, "name": "系统通知", "description": "来自 Bipupu 管理员的公告，发给每一位用户。",
         "subscribed": True},
        {"id": FORTUNE, "name": "宇宙运势",
         "description": "每天一份属于你的运势：宜忌、幸运色和幸运数字，幸运色会点亮你的 pupu。", "subscribed": False},
    ]


async def test_subscribed_follows_the_commands_and_notice_is_always_subscribed(client, alice, bob):
    assert await subscribed(client, alice) is False
    await command(client, alice, "TD")
    assert await subscribed(client, alice) is True
    assert await subscribed(client, bob) is False  # per user
    assert await subscribed(client, alice, NOTICE) is True
    await command(client, alice, "退订")
    assert await subscribed(client, alice) is False
    assert await subscribed(client, alice, NOTICE) is True
    await command(client, bob, "退订", NOTICE)
    assert await subscribed(client, bob, NOTICE) is True


async def test_a_switched_off_service_is_not_listed(client, alice):
    await command(client, alice, "TD")
    await switch_off(client, FORTUNE)
    assert set(await services_of(client, alice)) == {NOTICE}
    await switch_off(client, NOTICE)
    assert await services_of(client, alice) == {}


async def test_services_needs_a_token(client, alice):
    await assert_error(await client.get("/services"), 401, "missing_token")
    await assert_error(await client.get("/services", headers={"Authorization": "Bearer nonsense"}), 401, "invalid_token")


async def test_a_deactivated_account_may_not_list_services(client, alice):
    await deactivate(client, ALICE)
    await assert_error(await client.get("/services", headers=bearer(alice)), 403, "account_deactivated")


# Commands: a card to a service -------------------------------------------------------------------

@pytest.mark.parametrize("word", ["TD", "td", " td ", "Td", "订阅", " 订阅\n", "SUB", "Sub", "sub\t"])
async def test_each_subscribe_word_subscribes(client, alice, bob, word):
    card = await command(client, alice, word)
    assert card == {"id": card["id"], "sender_id": ALICE, "receiver_id": FORTUNE, "content": word.strip(),
                    "msg_type": "USER_POSTCARD", "pattern": {}, "created_at": card["created_at"]}
    assert await subscribers(client) == [ALICE]
    reply = await reply_to(client, alice, card)
    assert "订阅成功" in reply["content"]


@pytest.mark.parametrize("word", ["退订", " 退订 ", "STOP", "stop\n", "Stop", "UNSUB", "unsub", " UnSub "])
async def test_each_unsubscribe_word_unsubscribes(client, alice, bob, word):
    await command(client, alice, "TD")
    await command(client, bob, "TD")
    assert await subscribers(client) == [ALICE, BOB]
    card = await command(client, alice, word)
    assert card["content"] == word.strip()
    assert await subscribers(client) == [BOB]
    reply = await reply_to(client, alice, card)
    assert "已退订" in reply["content"]


@pytest.mark.parametrize("word", ["?", " ? ", "HELP", "help", "Help\n", "帮助", " 帮助 "])
async def test_each_help_word_answers_the_help_and_changes_nothing(client, alice, word):
    card = await command(client, alice, word)
    assert await subscribers(client) == []
    help_text = (await reply_to(client, alice, card))["content"]
    assert "宇宙运势" in help_text
    for named in SUBSCRIBE_WORDS + UNSUBSCRIBE_WORDS + HELP_WORDS:
        assert named in help_text, named
    await command(client, alice, "TD")
    await command(client, alice, word)
    assert await subscribers(client) == [ALICE]  # help does not unsubscribe either


async def test_a_command_is_stored_in_the_outbox_and_answered_in_the_inbox_and_live(client, alice, bob, open_ws):
    async with await open_ws(alice) as ws_alice, await open_ws(bob) as ws_bob:
        resp = await post_card(client, alice, FORTUNE, "  TD  ")
        assert resp.status == 201
        card = await resp.json()
        assert set(card) == MESSAGE_KEYS
        assert (card["sender_id"], card["receiver_id"], card["content"]) == (ALICE, FORTUNE, "TD")
        pushed = await next_push(ws_alice)
        await assert_nothing_pushed(ws_alice)  # only the reply is pushed, not the user's own card
        await assert_nothing_pushed(ws_bob)
    assert await mailbox(client, alice, direction="sent") == [card]
    received = await mailbox(client, alice)
    assert received == [pushed]
    reply = await reply_to(client, alice, card)
    assert reply == pushed
    assert reply["sender_id"] == FORTUNE and reply["receiver_id"] == ALICE
    assert reply["msg_type"] == "COSMIC_BROADCAST"
    assert isinstance(reply["pattern"], dict)
    assert orjson.loads(check_pattern(reply["pattern"])) == reply["pattern"]
    assert await mailbox(client, alice, peer=FORTUNE, direction="all") == [reply, card]
    assert await mailbox(client, bob, direction="all") == []


async def test_a_voice_transcript_to_a_service_is_a_command_too(client, alice):
    card = await command(client, alice, " 订阅 ", msg_type="VOICE_TRANSCRIPT")
    assert (card["msg_type"], card["content"]) == ("VOICE_TRANSCRIPT", "订阅")
    assert await subscribers(client) == [ALICE]
    assert "订阅成功" in (await reply_to(client, alice, card))["content"]


async def test_a_user_may_not_send_a_cosmic_broadcast_to_a_service(client, alice):
    resp = await post_card(client, alice, FORTUNE, "TD", msg_type="COSMIC_BROADCAST")
    await assert_error(resp, 403, "msg_type_not_allowed", "msg_type")
    assert await subscribers(client) == []
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]


async def test_unknown_text_gets_the_help(client, alice):
    card = await command(client, alice, "hello")
    assert card["content"] == "hello"
    help_text = (await reply_to(client, alice, card))["content"]
    for named in SUBSCRIBE_WORDS + UNSUBSCRIBE_WORDS + HELP_WORDS:
        assert named in help_text, named
    assert help_text == await ask(client, alice, "?")
    assert await subscribers(client) == []
    # A command word inside a longer text is not the command.
    assert await ask(client, alice, "TD please") == help_text
    assert await subscribers(client) == []


async def test_subscribing_twice_says_already_subscribed_and_keeps_one_row(client, alice):
    first = await ask(client, alice, "TD")
    second = await ask(client, alice, "订阅")
    assert "订阅成功" in first
    assert "已经订阅" in second
    assert second != first
    rows = await db_rows(client, "SELECT service_id, bipupu_id FROM subscriptions")
    assert rows == [(FORTUNE, ALICE)]


async def test_unsubscribing_when_not_subscribed_says_so(client, alice):
    text = await ask(client, alice, "STOP")
    assert "还没有订阅" in text
    assert "TD" in text  # it tells how to subscribe
    assert await subscribers(client) == []
    await command(client, alice, "TD")
    assert "已退订" in await ask(client, alice, "STOP")
    assert "还没有订阅" in await ask(client, alice, "UNSUB")
    assert await subscribers(client) == []


async def test_resubscribing_after_unsubscribing_works(client, alice):
    await command(client, alice, "TD")
    await command(client, alice, "退订")
    assert "订阅成功" in await ask(client, alice, "SUB")
    assert await subscribers(client) == [ALICE]


# When the first fortune comes --------------------------------------------------------------------

async def test_subscribing_before_the_send_time_gets_the_first_fortune_today(make_client, clock):
    clock.set_wall(utc(2026, 11, 19, 7, 30))
    client = await make_client(timezone="UTC")
    await client.server.app[keys.services].update(FORTUNE, send_time="08:00")
    alice = await register(client, "alice")
    text = await ask(client, alice, "TD")
    assert "11月19日 08:00" in text
    assert "11月20日" not in text


async def test_subscribing_after_the_send_time_gets_the_first_fortune_tomorrow(make_client, clock):
    clock.set_wall(utc(2026, 11, 19, 9, 0))
    client = await make_client(timezone="UTC")
    await client.server.app[keys.services].update(FORTUNE, send_time="08:00")
    alice = await register(client, "alice")
    text = await ask(client, alice, "TD")
    assert "11月20日 08:00" in text
    assert "11月19日" not in text


async def test_the_first_fortune_is_told_in_the_broadcast_zone(make_client, clock):
    clock.set_wall(utc(2026, 11, 19, 1, 0))  # 09:00 in Shanghai: today's 08:00 there has passed
    client = await make_client(timezone="Asia/Shanghai")
    await client.server.app[keys.services].update(FORTUNE, send_time="08:00")
    alice = await register(client, "alice")
    text = await ask(client, alice, "TD")
    assert "11月20日 08:00" in text
    assert "11月19日" not in text


async def test_the_day_of_the_first_fortune_is_the_day_in_the_broadcast_zone(make_client, clock):
    clock.set_wall(utc(2026, 11, 20, 3, 0))  # still 11-19, 22:00, in New York: its 23:00 is to come
    client = await make_client(timezone="America/New_York")
    await client.server.app[keys.services].update(FORTUNE, send_time="23:00")
    alice = await register(client, "alice")
    text = await ask(client, alice, "TD")
    assert "11月19日 23:00" in text
    assert "11月20日" not in text


async def test_subscribing_at_end_of_month_rolls_to_the_next_month(make_client, clock):
    clock.set_wall(utc(2026, 12, 31, 23, 0))
    client = await make_client(timezone="UTC")
    await client.server.app[keys.services].update(FORTUNE, send_time="22:30")
    alice = await register(client, "alice")
    assert "1月1日 22:30" in await ask(client, alice, "TD")


# bipupu.notice -----------------------------------------------------------------------------------

@pytest.mark.parametrize("word", ["TD", "订阅", "sub", "退订", "STOP", " unsub "])
async def test_notice_subscribe_and_unsubscribe_answer_that_it_reaches_everyone(client, alice, word):
    card = await command(client, alice, word, NOTICE)
    assert card["receiver_id"] == NOTICE and card["content"] == word.strip()
    reply = await reply_to(client, alice, card)
    assert reply["sender_id"] == NOTICE
    assert "每一位用户" in reply["content"]
    assert "订阅成功" not in reply["content"] and "已退订" not in reply["content"]
    assert await subscribers(client, NOTICE) == []
    assert await db_rows(client, "SELECT count(*) FROM subscriptions") == [(0,)]
    assert await subscribed(client, alice, NOTICE) is True


async def test_notice_help_describes_it(client, alice):
    text = await ask(client, alice, "帮助", NOTICE)
    assert "系统通知" in text
    assert "每一位用户" in text
    assert "无需订阅" in text
    assert text == await ask(client, alice, "what is this", NOTICE)
    assert await subscribers(client, NOTICE) == []


# Receivers, idempotency, limits ------------------------------------------------------------------

@pytest.mark.parametrize("receiver_id", ["weather.daily", "cosmic.fortunes", "bipupu.notice.x"])
async def test_a_card_to_an_unknown_service_is_404(client, alice, receiver_id):
    await assert_error(await post_card(client, alice, receiver_id, "TD"), 404, "receiver_not_found", "receiver_id")
    assert await mailbox(client, alice, direction="all") == []
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]


async def test_a_card_to_a_switched_off_service_is_404_and_runs_nothing(client, alice):
    await switch_off(client, FORTUNE)
    await assert_error(await post_card(client, alice, FORTUNE, "TD"), 404, "receiver_not_found", "receiver_id")
    assert await subscribers(client) == []
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]
    await switch_off(client, NOTICE)
    await assert_error(await post_card(client, alice, NOTICE, "?"), 404, "receiver_not_found", "receiver_id")


async def test_a_repeated_client_msg_id_returns_the_original_command_and_does_not_run_it_again(client, alice, open_ws):
    resp = await post_card(client, alice, FORTUNE, "TD", client_msg_id="cmd-1")
    assert resp.status == 201
    card = await resp.json()
    await command(client, alice, "退订")
    assert await subscribers(client) == []
    async with await open_ws(alice) as ws:
        again = await post_card(client, alice, FORTUNE, "TD", client_msg_id="cmd-1")
        assert again.status == 200
        assert await again.json() == card
        await assert_nothing_pushed(ws)  # no second reply
    assert await subscribers(client) == []  # the subscribe did not run again
    sent = await mailbox(client, alice, direction="sent")
    assert [m["content"] for m in sent] == ["退订", "TD"]
    assert len(await mailbox(client, alice)) == 2  # one reply per command, none for the repeat


async def test_commands_count_against_the_send_limit_but_not_the_stranger_quota(client, alice, bob):
    for _ in range(30):  # far beyond the 5 cards a day a stranger may send one receiver
        await command(client, alice, "TD")
    resp = await post_card(client, alice, FORTUNE, "TD")
    await assert_error(resp, 429, "rate_limited")
    assert int(resp.headers["Retry-After"]) >= 1
    # The same bucket serves cards to people.
    await assert_error(await post_card(client, alice, BOB, "hi"), 429, "rate_limited")
    assert len(await mailbox(client, alice, direction="sent", limit=200)) == 30
    assert len(await mailbox(client, alice, limit=200)) == 30
    assert await subscribers(client) == [ALICE]
    # Another sender has a bucket of its own.
    await command(client, bob, "TD")
    assert await subscribers(client) == [ALICE, BOB]


async def test_commands_then_cards_share_the_burst(client, alice, bob):
    for _ in range(26):
        await command(client, alice, "?")
    for _ in range(4):
        resp = await post_card(client, alice, BOB, "hi")
        assert resp.status == 201, await resp.text()
    await assert_error(await post_card(client, alice, FORTUNE, "TD"), 429, "rate_limited")
    assert await subscribers(client) == []


# Admin edits -------------------------------------------------------------------------------------

async def test_admin_edited_commands_change_the_words_that_work(client, alice):
    services = client.server.app[keys.services]
    await services.update(FORTUNE, commands={"subscribe": ["订", "TD"], "unsubscribe": ["不要了"], "help": ["说明"]})
    assert "订阅成功" in await ask(client, alice, "订")
    assert await subscribers(client) == [ALICE]
    help_text = await ask(client, alice, "退订")  # removed: now only asks for help
    assert await subscribers(client) == [ALICE]
    assert "不要了" in help_text and "说明" in help_text and "订" in help_text
    assert "STOP" not in help_text and "UNSUB" not in help_text
    assert help_text == await ask(client, alice, "说明")
    assert "已退订" in await ask(client, alice, "不要了")
    assert await subscribers(client) == []
    assert await ask(client, alice, "SUB") == help_text
    assert await subscribers(client) == []
    assert "订阅成功" in await ask(client, alice, " td ")
    assert await subscribers(client) == [ALICE]


@pytest.mark.parametrize("commands", [
    {"subscribe": ["TD"], "unsubscribe": ["td"], "help": ["?"]},
    {"subscribe": ["TD"], "unsubscribe": ["STOP"], "help": [" stop "]},
    {"subscribe": ["订阅", "SUB"], "unsubscribe": ["退订"], "help": ["sub"]},
])
async def test_a_word_in_two_lists_is_refused(client, alice, commands):
    services = client.server.app[keys.services]
    before = await db_rows(client, "SELECT commands FROM services WHERE id = ?", (FORTUNE,))
    with pytest.raises(Invalid) as caught:
        await services.update(FORTUNE, commands=commands)
    assert caught.value.status == 422
    assert caught.value.field in {"commands.subscribe", "commands.unsubscribe", "commands.help"}
    assert await db_rows(client, "SELECT commands FROM services WHERE id = ?", (FORTUNE,)) == before
    assert "订阅成功" in await ask(client, alice, "TD")


@pytest.mark.parametrize("send_time", ["24:00", "7:00", "noon", "08:60", "08:00:00", "", None, 800])
async def test_a_bad_send_time_is_refused(client, send_time):
    services = client.server.app[keys.services]
    with pytest.raises(Invalid) as caught:
        await services.update(FORTUNE, send_time=send_time)
    assert caught.value.field == "send_time"
    assert await db_rows(client, "SELECT send_time FROM services WHERE id = ?", (FORTUNE,)) == [("00:00",)]
    with pytest.raises(Invalid) as caught:
        await services.create("weather.daily", "天气", "每天的天气", send_time=send_time)
    assert caught.value.field == "send_time"
    assert await db_rows(client, "SELECT count(*) FROM services") == [(2,)]


async def test_a_good_send_time_is_stored(client):
    updated = await client.server.app[keys.services].update(FORTUNE, send_time="23:59")
    assert updated["send_time"] == "23:59"
    assert await db_rows(client, "SELECT send_time FROM services WHERE id = ?", (FORTUNE,)) == [("23:59",)]


async def test_a_created_service_is_listed_and_answers_commands(client, alice, bob):
    services = client.server.app[keys.services]
    created = await services.create("weather.daily", "天气", "每天早上的天气预报", send_time="07:00")
    assert created["id"] == "weather.daily"
    listing = await services_of(client, alice)
    assert listing["weather.daily"] == {"id": "weather.daily", "name": "天气", "description": "每天早上的天气预报",
                                        "subscribed": False}
    assert set(listing) == {FORTUNE, NOTICE, "weather.daily"}
    card = await command(client, alice, "TD", "weather.daily")
    reply = await reply_to(client, alice, card)
    assert reply["sender_id"] == "weather.daily"
    assert "订阅成功" in reply["content"] and "天气" in reply["content"]
    assert await subscribers(client, "weather.daily") == [ALICE]
    assert await subscribers(client, FORTUNE) == []
    assert await subscribed(client, alice, "weather.daily") is True
    assert await subscribed(client, bob, "weather.daily") is False
    assert "天气" in await ask(client, bob, "help", "weather.daily")


async def test_a_created_service_with_its_own_words(client, alice):
    services = client.server.app[keys.services]
    await services.create("weather.daily", "天气", "天气预报",
                          commands={"subscribe": ["关注"], "unsubscribe": ["取关"], "help": ["怎么用"]})
    assert "订阅成功" in await ask(client, alice, "关注", "weather.daily")
    assert await subscribers(client, "weather.daily") == [ALICE]
    await ask(client, alice, "TD", "weather.daily")  # not one of its words: help
    assert "已退订" in await ask(client, alice, "取关", "weather.daily")
    assert await subscribers(client, "weather.daily") == []


async def test_creating_a_duplicate_service_is_a_conflict(client):
    services = client.server.app[keys.services]
    await services.create("weather.daily", "天气", "天气预报")
    for service_id in ("weather.daily", FORTUNE, NOTICE):
        with pytest.raises(Conflict) as caught:
            await services.create(service_id, "另一个", "重复的")
        assert caught.value.status == 409
        assert caught.value.field == "id"
    rows = await db_rows(client, "SELECT id, name FROM services ORDER BY id")
    assert rows == [(NOTICE, "系统通知"), (FORTUNE, "宇宙运势"), ("weather.daily", "天气")]


@pytest.mark.parametrize("service_id", ["Weather", "weather", "12345678", "a..b", "Weather.Daily", ".weather",
                                        "weather.", "weather daily.x", "1weather.daily", "weather.2day", "", None,
                                        12345678, "w." + "a" * 64])
async def test_a_bad_service_id_is_refused(client, alice, service_id):
    services = client.server.app[keys.services]
    with pytest.raises(Invalid) as caught:
        await services.create(service_id, "天气", "天气预报")
    assert caught.value.field == "id"
    assert await db_rows(client, "SELECT count(*) FROM services") == [(2,)]
    assert set(await services_of(client, alice)) == {FORTUNE, NOTICE}


async def test_updating_an_unknown_service_is_not_found(client):
    services = client.server.app[keys.services]
    with pytest.raises(NotFound) as caught:
        await services.update("weather.daily", name="天气")
    assert caught.value.status == 404
    assert await db_rows(client, "SELECT count(*) FROM services") == [(2,)]


async def test_renaming_a_service_shows_in_the_listing(client, alice):
    await client.server.app[keys.services].update(FORTUNE, name="星运", description="新的描述")
    entry = (await services_of(client, alice))[FORTUNE]
    assert (entry["name"], entry["description"]) == ("星运", "新的描述")
    assert "星运" in await ask(client, alice, "?")


# Broadcast now -----------------------------------------------------------------------------------

async def broadcasts(client, content: str) -> list[tuple[str, str, str]]:
    """(sender, receiver, pattern) of every stored COSMIC_BROADCAST with this content."""
    return await db_rows(
        client, "SELECT sender_id, receiver_id, pattern FROM messages WHERE msg_type = 'COSMIC_BROADCAST'"
                " AND content = ? ORDER BY receiver_id", (content,))


async def test_broadcast_now_reaches_the_subscribers_only(client, alice, bob, carol, open_ws):
    broadcaster = client.server.app[keys.broadcaster]
    await command(client, alice, "TD")
    await command(client, carol, "TD")
    await deactivate(client, CAROL)
    pattern = {"led_color": "#FFAA00", "effect": "flash", "font": "neon", "duration_s": 5}
    async with await open_ws(alice) as ws_alice, await open_ws(bob) as ws_bob:
        count = await broadcaster.broadcast_now(FORTUNE, "今晚有流星雨，记得抬头看。", pattern)
        assert count == 1
        pushed = await next_push(ws_alice)
        await assert_nothing_pushed(ws_alice)
        await assert_nothing_pushed(ws_bob)
    assert pushed["sender_id"] == FORTUNE and pushed["receiver_id"] == ALICE
    assert pushed["msg_type"] == "COSMIC_BROADCAST"
    assert pushed["content"] == "今晚有流星雨，记得抬头看。"
    assert pushed["pattern"] == pattern
    assert (await mailbox(client, alice, limit=1)) == [pushed]
    assert [m for m in await mailbox(client, alice) if m["content"] == pushed["content"]] == [pushed]
    assert await mailbox(client, bob) == []
    assert [(s, r) for s, r, _ in await broadcasts(client, "今晚有流星雨，记得抬头看。")] == [(FORTUNE, ALICE)]


async def test_broadcast_now_to_an_empty_audience_sends_nothing(client, alice):
    assert await client.server.app[keys.broadcaster].broadcast_now(FORTUNE, "nobody listens") == 0
    assert await broadcasts(client, "nobody listens") == []


async def test_notice_broadcast_reaches_every_active_user_and_no_deactivated_one(client, alice, bob, carol, open_ws):
    broadcaster = client.server.app[keys.broadcaster]
    await command(client, alice, "TD")  # a fortune subscription does not matter to a notice
    await deactivate(client, BOB)
    admin = await login(client, "admin", ADMIN_PASSWORD)
    async with await open_ws(alice) as ws_alice, await open_ws(admin) as ws_admin, await open_ws(carol) as ws_carol:
        count = await broadcaster.broadcast_now(NOTICE, "  今晚 23:00 维护十分钟  ")
        assert count == 3
        for ws, who in ((ws_alice, ALICE), (ws_admin, ADMIN), (ws_carol, CAROL)):
            pushed = await next_push(ws)
            assert (pushed["sender_id"], pushed["receiver_id"]) == (NOTICE, who)
            assert pushed["content"] == "今晚 23:00 维护十分钟"
            assert pushed["msg_type"] == "COSMIC_BROADCAST"
            assert pushed["pattern"] == {}
            await assert_nothing_pushed(ws)
    assert [(s, r) for s, r, _ in await broadcasts(client, "今晚 23:00 维护十分钟")] == [
        (NOTICE, ADMIN), (NOTICE, ALICE), (NOTICE, CAROL)]
    notices = [m for m in await mailbox(client, admin) if m["sender_id"] == NOTICE]
    assert [m["content"] for m in notices] == ["今晚 23:00 维护十分钟"]


@pytest.mark.parametrize(("content", "pattern", "field"), [
    ("", None, "content"),
    ("   \n ", None, "content"),
    ("星" * 501, None, "content"),
    (None, None, "content"),
    ("hello", {"effect": "disco"}, "pattern.effect"),
    ("hello", {"led_color": "red"}, "pattern.led_color"),
    ("hello", {"duration_s": 0}, "pattern.duration_s"),
    ("hello", {"sparkle": True}, "pattern.sparkle"),
    ("hello", ["breathe"], "pattern"),
])
async def test_broadcast_now_validates_content_and_pattern(client, alice, content, pattern, field):
    await command(client, alice, "TD")
    before = await db_rows(client, "SELECT count(*) FROM messages")
    broadcaster = client.server.app[keys.broadcaster]
    for service_id in (FORTUNE, NOTICE):
        with pytest.raises(Invalid) as caught:
            await broadcaster.broadcast_now(service_id, content, pattern)
        assert caught.value.status == 422
        assert caught.value.field == field
    assert await db_rows(client, "SELECT count(*) FROM messages") == before


async def test_broadcast_now_from_an_unknown_service_is_not_found(client, alice):
    broadcaster = client.server.app[keys.broadcaster]
    for service_id in ("weather.daily", "nonsense", ALICE):
        with pytest.raises(NotFound) as caught:
            await broadcaster.broadcast_now(service_id, "hello")
        assert caught.value.status == 404
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(0,)]


async def test_broadcast_now_from_a_switched_off_service_sends_nothing(client, alice):
    await command(client, alice, "TD")
    await switch_off(client, FORTUNE)
    with pytest.raises(Conflict) as inactive:  # errors.CODES: service_inactive is a 409
        await client.server.app[keys.broadcaster].broadcast_now(FORTUNE, "hello")
    assert inactive.value.code == "service_inactive"
    assert await broadcasts(client, "hello") == []


async def test_broadcast_now_from_a_created_service_reaches_its_subscribers(client, alice, bob):
    await client.server.app[keys.services].create("weather.daily", "天气", "天气预报")
    await command(client, bob, "SUB", "weather.daily")
    await command(client, alice, "SUB")
    assert await client.server.app[keys.broadcaster].broadcast_now("weather.daily", "明天有雨") == 1
    assert [(s, r) for s, r, _ in await broadcasts(client, "明天有雨")] == [("weather.daily", BOB)]


async def test_broadcaster_last_records_the_latest_broadcast(client, alice, bob):
    broadcaster = client.server.app[keys.broadcaster]
    await command(client, alice, "TD")
    assert await broadcaster.broadcast_now(FORTUNE, "first") == 1
    assert (broadcaster.last.service_id, broadcaster.last.sent) == (FORTUNE, 1)
    assert broadcaster.last.duration_s >= 0
    assert await broadcaster.broadcast_now(NOTICE, "second") == 3
    last = broadcaster.last
    assert (last.service_id, last.sent) == (NOTICE, 3)
    assert isinstance(last.duration_s, float) and last.duration_s >= 0


# The default words: one declaration, and the SQL seeds say the same ------------------------------

def test_the_default_words_are_the_documented_ones():
    assert DEFAULT_WORDS == {"subscribe": SUBSCRIBE_WORDS, "unsubscribe": UNSUBSCRIBE_WORDS, "help": HELP_WORDS}


async def test_built_in_services_and_new_ones_start_with_the_same_words(client):
    await client.server.app[keys.services].create("weather.daily", "天气", "天气预报")
    rows = await db_rows(client, "SELECT id, commands FROM services ORDER BY id")
    assert {service_id for service_id, _ in rows} == {FORTUNE, NOTICE, "weather.daily"}
    assert all(orjson.loads(commands) == DEFAULT_WORDS for _, commands in rows), rows


def test_every_seed_of_command_words_in_sql_is_the_default():
    """schema.sql and migrations/*.sql seed services as SQL text: each copy of the words must be DEFAULT_WORDS."""
    package = Path(bipupu_server.__file__).parent
    files = [package / "schema.sql", *sorted((package / "migrations").glob("*.sql"))]
    assert len(files) - 1 == dbmod.SCHEMA_VERSION  # every migration file is read
    by_file = {file.name: re.findall(r"'(\{\"subscribe\".*?\})'", file.read_text(encoding="utf-8")) for file in files}
    assert len(by_file["schema.sql"]) == 2, "the built-in services' seeds were not found in schema.sql"
    assert sum(map(len, by_file.values())) >= 4, f"the seeds of migration 0003 were not found: {by_file}"
    seeds = [seed for found in by_file.values() for seed in found]
    assert all(orjson.loads(seed) == DEFAULT_WORDS for seed in seeds), seeds
