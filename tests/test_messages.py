"""Postcards: sending (validation, receiver rules, silent drops, quotas), the two mailboxes, ids and durability."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import timezone
from typing import Any

import pytest

from bipupu_server import keys
from tests.conftest import (BOB, assert_error, bearer, db_rows, db_write, login, post_card, register, rfc3339,
                            send_card)

ALICE, CAROL = "00000002", "00000004"
MESSAGE_KEYS = {"id", "sender_id", "receiver_id", "content", "msg_type", "pattern", "created_at"}
PAGE_KEYS = {"messages", "has_more"}
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
MISSING = object()


# Helpers ----------------------------------------------------------------------------------------

async def stored_count(client) -> int:
    return (await db_rows(client, "SELECT count(*) FROM messages"))[0][0]


async def mailbox(client, account: dict[str, Any], **query: Any) -> dict[str, Any]:
    resp = await client.get("/messages", params={k: str(v) for k, v in query.items()}, headers=bearer(account))
    assert resp.status == 200, await resp.text()
    page = await resp.json()
    assert set(page) == PAGE_KEYS
    return page


async def ids_in(client, account: dict[str, Any], **query: Any) -> list[str]:
    return [m["id"] for m in (await mailbox(client, account, **query))["messages"]]


async def get_card(client, account: dict[str, Any], message_id: str):
    return await client.get(f"/messages/{message_id}", headers=bearer(account))


async def delete_card(client, account: dict[str, Any], message_id: str):
    return await client.delete(f"/messages/{message_id}", headers=bearer(account))


async def add_contact(client, owner: dict[str, Any], contact_id: str) -> None:
    resp = await client.post("/contacts", json={"contact_id": contact_id}, headers=bearer(owner))
    assert resp.status == 201, await resp.text()


async def block(client, blocker: dict[str, Any], blocked_id: str) -> None:
    resp = await client.post("/blocks", json={"blocked_id": blocked_id}, headers=bearer(blocker))
    assert resp.status == 201, await resp.text()


async def set_privacy(client, account: dict[str, Any], privacy: str) -> None:
    resp = await client.put("/me", json={"privacy": privacy}, headers=bearer(account))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["privacy"] == privacy


def seconds_to_utc_midnight(wall: float) -> float:
    return 86400 - wall % 86400


@pytest.fixture
async def carol(client, alice, bob) -> dict[str, Any]:
    return await register(client, "carol")


# POST /messages: the message object -------------------------------------------------------------

async def test_send_returns_201_with_exactly_the_message_object(client, clock, alice, bob):
    resp = await post_card(client, alice, BOB, "hello bob")
    assert resp.status == 201, await resp.text()
    assert resp.content_type == "application/json"
    card = await resp.json()
    assert set(card) == MESSAGE_KEYS
    assert card == {"id": card["id"], "sender_id": ALICE, "receiver_id": BOB, "content": "hello bob",
                    "msg_type": "USER_POSTCARD", "pattern": {}, "created_at": rfc3339(clock.time())}


async def test_message_id_is_a_canonical_uuid_version_7_carrying_the_time_of_acceptance(client, clock, alice, bob):
    card = await send_card(client, alice)
    parsed = uuid.UUID(card["id"])
    assert parsed.version == 7
    assert parsed.variant == uuid.RFC_4122
    assert str(parsed) == card["id"]
    assert parsed.int >> 80 == int(clock.time() * 1000)


async def test_created_at_is_rfc3339_utc_with_z_from_the_injected_clock(client, clock, alice, bob):
    clock.advance(1234.5)
    card = await send_card(client, alice)
    assert TIMESTAMP.match(card["created_at"]), card["created_at"]
    assert card["created_at"].endswith("Z")
    assert card["created_at"] == rfc3339(clock.time())


async def test_content_is_trimmed_at_both_ends(client, alice, bob):
    card = await send_card(client, alice, BOB, " \t\n  see you at eight \u3000\n")
    assert card["content"] == "see you at eight"
    assert (await mailbox(client, bob))["messages"][0]["content"] == "see you at eight"


async def test_voice_transcript_is_accepted_and_kept_as_its_type(client, alice, bob):
    card = await send_card(client, alice, msg_type="VOICE_TRANSCRIPT")
    assert card["msg_type"] == "VOICE_TRANSCRIPT"
    assert (await mailbox(client, bob))["messages"] == [card]


async def test_explicit_user_postcard_type_is_accepted(client, alice, bob):
    assert (await send_card(client, alice, msg_type="USER_POSTCARD"))["msg_type"] == "USER_POSTCARD"


async def test_a_full_pattern_is_accepted_and_led_color_is_upper_cased(client, alice, bob):
    pattern = {"led_color": "#ff69b4", "effect": "breathe", "font": "handwriting", "screensaver": "stars",
               "duration_s": 12, "vibrate": True, "sound": "chime-2"}
    card = await send_card(client, alice, pattern=pattern)
    assert card["pattern"] == {**pattern, "led_color": "#FF69B4"}
    assert (await mailbox(client, bob))["messages"][0]["pattern"] == {**pattern, "led_color": "#FF69B4"}


async def test_every_documented_effect_and_font_is_accepted(client, alice, bob):
    await add_contact(client, bob, ALICE)  # no stranger quota in the way
    effects = ("steady", "blink", "breathe", "flash", "rainbow")
    fonts = ("default", "neon", "pixel", "serif", "handwriting")
    for effect, font in zip(effects, fonts):
        card = await send_card(client, alice, pattern={"effect": effect, "font": font})
        assert card["pattern"] == {"effect": effect, "font": font}


@pytest.mark.parametrize("fields, expected", [
    pytest.param({"content": "x" * 500}, {"content": "x" * 500}, id="content-500-chars"),
    pytest.param({"content": "  " + "y" * 500 + "  "}, {"content": "y" * 500}, id="content-500-after-trim"),
    pytest.param({"content": "星" * 500}, {"content": "星" * 500}, id="content-500-cjk"),
    pytest.param({"content": "🐧" * 500}, {"content": "🐧" * 500}, id="content-500-emoji"),
    pytest.param({"pattern": {"duration_s": 1}}, {"pattern": {"duration_s": 1}}, id="duration-1"),
    pytest.param({"pattern": {"duration_s": 60}}, {"pattern": {"duration_s": 60}}, id="duration-60"),
    pytest.param({"pattern": {"vibrate": False}}, {"pattern": {"vibrate": False}}, id="vibrate-false"),
    pytest.param({"pattern": {"screensaver": "a" * 32}}, {"pattern": {"screensaver": "a" * 32}}, id="name-32"),
    pytest.param({"pattern": {"led_color": "#000000"}}, {"pattern": {"led_color": "#000000"}}, id="black"),
    pytest.param({"pattern": {}}, {"pattern": {}}, id="empty-pattern"),
    pytest.param({"client_msg_id": "k" * 64}, {}, id="client-msg-id-64"),
    pytest.param({"client_msg_id": "x"}, {}, id="client-msg-id-1"),
])
async def test_boundary_values_are_accepted(client, alice, bob, fields, expected):
    body = {"receiver_id": BOB, "content": "hello", **fields}
    resp = await client.post("/messages", json=body, headers=bearer(alice))
    assert resp.status == 201, await resp.text()
    card = await resp.json()
    assert set(card) == MESSAGE_KEYS
    for name, value in expected.items():
        assert card[name] == value
    assert (await mailbox(client, bob))["messages"] == [card]


# POST /messages: refused bodies -----------------------------------------------------------------

BAD_CARDS = [
    pytest.param({"content": MISSING}, "missing_field", "content", id="content-missing"),
    pytest.param({"receiver_id": MISSING}, "missing_field", "receiver_id", id="receiver-missing"),
    pytest.param({"content": ""}, "invalid_field", "content", id="content-empty"),
    pytest.param({"content": "     "}, "invalid_field", "content", id="content-spaces"),
    pytest.param({"content": " \t\n\r "}, "invalid_field", "content", id="content-whitespace"),
    pytest.param({"content": "x" * 501}, "invalid_field", "content", id="content-501"),
    pytest.param({"content": "星" * 501}, "invalid_field", "content", id="content-501-cjk"),
    pytest.param({"content": 42}, "invalid_field", "content", id="content-number"),
    pytest.param({"content": None}, "invalid_field", "content", id="content-null"),
    pytest.param({"content": ["hi"]}, "invalid_field", "content", id="content-list"),
    pytest.param({"content": {"text": "hi"}}, "invalid_field", "content", id="content-object"),
    pytest.param({"msg_type": "POSTCARD"}, "invalid_field", "msg_type", id="msg-type-unknown"),
    pytest.param({"msg_type": "user_postcard"}, "invalid_field", "msg_type", id="msg-type-lowercase"),
    pytest.param({"msg_type": 1}, "invalid_field", "msg_type", id="msg-type-number"),
    pytest.param({"pattern": "blink"}, "invalid_field", "pattern", id="pattern-string"),
    pytest.param({"pattern": ["blink"]}, "invalid_field", "pattern", id="pattern-list"),
    pytest.param({"pattern": 7}, "invalid_field", "pattern", id="pattern-number"),
    pytest.param({"pattern": {"color": "#FF0000"}}, "unknown_field", "pattern.color", id="pattern-unknown-key"),
    pytest.param({"pattern": {"effect": "blink", "speed": 3}}, "unknown_field", "pattern.speed",
                 id="pattern-unknown-key-after-good"),
    pytest.param({"pattern": {"led_color": "red"}}, "invalid_field", "pattern.led_color", id="color-name"),
    pytest.param({"pattern": {"led_color": "#12345"}}, "invalid_field", "pattern.led_color", id="color-5-digits"),
    pytest.param({"pattern": {"led_color": "#1234567"}}, "invalid_field", "pattern.led_color", id="color-7-digits"),
    pytest.param({"pattern": {"led_color": "#GGGGGG"}}, "invalid_field", "pattern.led_color", id="color-not-hex"),
    pytest.param({"pattern": {"led_color": "FF69B4"}}, "invalid_field", "pattern.led_color", id="color-no-hash"),
    pytest.param({"pattern": {"led_color": 0xFF69B4}}, "invalid_field", "pattern.led_color", id="color-number"),
    pytest.param({"pattern": {"effect": "strobe"}}, "invalid_field", "pattern.effect", id="effect-unknown"),
    pytest.param({"pattern": {"effect": "BLINK"}}, "invalid_field", "pattern.effect", id="effect-upper"),
    pytest.param({"pattern": {"effect": None}}, "invalid_field", "pattern.effect", id="effect-null"),
    pytest.param({"pattern": {"font": "comic"}}, "invalid_field", "pattern.font", id="font-unknown"),
    pytest.param({"pattern": {"font": ["neon"]}}, "invalid_field", "pattern.font", id="font-list"),
    pytest.param({"pattern": {"duration_s": 0}}, "invalid_field", "pattern.duration_s", id="duration-0"),
    pytest.param({"pattern": {"duration_s": 61}}, "invalid_field", "pattern.duration_s", id="duration-61"),
    pytest.param({"pattern": {"duration_s": -5}}, "invalid_field", "pattern.duration_s", id="duration-negative"),
    pytest.param({"pattern": {"duration_s": 1.5}}, "invalid_field", "pattern.duration_s", id="duration-fraction"),
    pytest.param({"pattern": {"duration_s": True}}, "invalid_field", "pattern.duration_s", id="duration-bool"),
    pytest.param({"pattern": {"duration_s": "5"}}, "invalid_field", "pattern.duration_s", id="duration-string"),
    pytest.param({"pattern": {"vibrate": "yes"}}, "invalid_field", "pattern.vibrate", id="vibrate-string"),
    pytest.param({"pattern": {"vibrate": 1}}, "invalid_field", "pattern.vibrate", id="vibrate-number"),
    pytest.param({"pattern": {"screensaver": "Stars"}}, "invalid_field", "pattern.screensaver", id="saver-upper"),
    pytest.param({"pattern": {"screensaver": "star field"}}, "invalid_field", "pattern.screensaver",
                 id="saver-space"),
    pytest.param({"pattern": {"screensaver": ""}}, "invalid_field", "pattern.screensaver", id="saver-empty"),
    pytest.param({"pattern": {"screensaver": "a" * 33}}, "invalid_field", "pattern.screensaver", id="saver-33"),
    pytest.param({"pattern": {"screensaver": 5}}, "invalid_field", "pattern.screensaver", id="saver-number"),
    pytest.param({"pattern": {"sound": "Beep!"}}, "invalid_field", "pattern.sound", id="sound-punctuation"),
    pytest.param({"pattern": {"sound": "../../etc/passwd"}}, "invalid_field", "pattern.sound", id="sound-path"),
    pytest.param({"pattern": {"sound": "s" * 33}}, "invalid_field", "pattern.sound", id="sound-33"),
    pytest.param({"client_msg_id": ""}, "invalid_field", "client_msg_id", id="client-msg-id-empty"),
    pytest.param({"client_msg_id": "k" * 65}, "invalid_field", "client_msg_id", id="client-msg-id-65"),
    pytest.param({"client_msg_id": 12345}, "invalid_field", "client_msg_id", id="client-msg-id-number"),
    pytest.param({"receiver_id": 3}, "invalid_field", "receiver_id", id="receiver-number"),
    pytest.param({"receiver_id": None}, "invalid_field", "receiver_id", id="receiver-null"),
    pytest.param({"receiver_id": [BOB]}, "invalid_field", "receiver_id", id="receiver-list"),
    pytest.param({"subject": "hi"}, "unknown_field", "subject", id="unknown-field"),
    pytest.param({"id": "0190f3a2-7b4c-7d2e-8f00-123456789abc"}, "unknown_field", "id", id="client-chosen-id"),
    pytest.param({"sender_id": "00000001"}, "unknown_field", "sender_id", id="forged-sender"),
    pytest.param({"is_read": False}, "unknown_field", "is_read", id="read-state"),
]


@pytest.mark.parametrize("fields, code, field", BAD_CARDS)
async def test_bad_card_is_refused_with_422_naming_the_field_and_nothing_is_stored(client, alice, bob, fields,
                                                                                  code, field):
    body = {"receiver_id": BOB, "content": "hello", **fields}
    body = {name: value for name, value in body.items() if value is not MISSING}
    resp = await client.post("/messages", json=body, headers=bearer(alice))
    await assert_error(resp, 422, code, field)
    assert (await mailbox(client, bob)) == {"messages": [], "has_more": False}
    assert (await mailbox(client, alice, direction="sent")) == {"messages": [], "has_more": False}
    assert await stored_count(client) == 0


async def test_users_may_not_send_cosmic_broadcast(client, alice, bob):
    resp = await post_card(client, alice, msg_type="COSMIC_BROADCAST")
    await assert_error(resp, 403, "msg_type_not_allowed", "msg_type")
    assert (await mailbox(client, bob))["messages"] == []
    assert (await mailbox(client, alice, direction="sent"))["messages"] == []
    assert await stored_count(client) == 0


@pytest.mark.parametrize("pattern", [
    pytest.param({"screensaver": "a" * 600}, id="one-long-value"),
    pytest.param({f"k{i:03}": "x" * 8 for i in range(40)}, id="many-keys"),
])
async def test_a_pattern_over_512_bytes_is_refused_naming_the_pattern(client, alice, bob, pattern):
    resp = await post_card(client, alice, pattern=pattern)
    error = await assert_error(resp, 422, "unknown_field" if "k000" in pattern else "invalid_field")
    # Only unknown keys or bad values can make a pattern that large; either names the pattern.
    assert error["field"] == "pattern" or error["field"].startswith("pattern."), error
    assert await stored_count(client) == 0


@pytest.mark.parametrize("raw", [
    b"not json", b"[]", b'"hello"', b"", b'{"receiver_id": "00000003",',
    b'{"receiver_id": "00000003", "content": "\\ud800 lone surrogate"}',
])
async def test_a_body_that_is_not_a_json_object_is_400(client, alice, bob, raw):
    resp = await client.post("/messages", data=raw,
                             headers={**bearer(alice), "Content-Type": "application/json"})
    await assert_error(resp, 400, "malformed_json")
    assert await stored_count(client) == 0


async def test_a_body_over_64_kib_is_413_and_nothing_is_stored(client, alice, bob):
    resp = await post_card(client, alice, BOB, "x" * (65 * 1024))
    await assert_error(resp, 413, "payload_too_large")
    assert await stored_count(client) == 0


@pytest.mark.parametrize("method, path", [
    ("POST", "/messages"),
    ("GET", "/messages"),
    ("GET", "/messages/0190f3a2-7b4c-7d2e-8f00-123456789abc"),
    ("DELETE", "/messages/0190f3a2-7b4c-7d2e-8f00-123456789abc"),
])
async def test_every_message_route_needs_a_token(client, method, path):
    resp = await client.request(method, path, json={"receiver_id": BOB, "content": "hi"} if method == "POST" else None)
    await assert_error(resp, 401, "missing_token")


# POST /messages: the receiver -------------------------------------------------------------------

@pytest.mark.parametrize("receiver_id", [
    pytest.param("99999999", id="unknown-8-digits"),
    pytest.param("00000005", id="next-unassigned-id"),
    pytest.param("cosmic.nothing", id="unknown-service"),
    pytest.param("weather.daily", id="other-unknown-service"),
])
async def test_unknown_receiver_is_404_receiver_not_found(client, alice, bob, receiver_id):
    resp = await post_card(client, alice, receiver_id)
    await assert_error(resp, 404, "receiver_not_found")
    assert (await mailbox(client, alice, direction="sent"))["messages"] == []
    assert await stored_count(client) == 0


@pytest.mark.parametrize("receiver_id", [
    pytest.param("1234567", id="7-digits"),
    pytest.param("000000003", id="9-digits"),
    pytest.param("bob", id="username-not-id"),
    pytest.param("0000000a", id="letter"),
    pytest.param("００００００03", id="fullwidth-digits"),
    pytest.param(" 00000003", id="leading-space"),
    pytest.param("00000003\n", id="trailing-newline"),
    pytest.param("", id="empty"),
])
async def test_a_receiver_that_is_no_address_is_422_as_the_document_says(client, alice, bob, receiver_id):
    """Neither a bipupu_id nor a service id: the document's pattern refuses it, and so does the server."""
    resp = await post_card(client, alice, receiver_id)
    await assert_error(resp, 422, "invalid_field", "receiver_id")
    assert await stored_count(client) == 0


async def test_deactivated_receiver_is_404_receiver_not_found(client, alice, bob):
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (BOB,))
    resp = await post_card(client, alice, BOB)
    await assert_error(resp, 404, "receiver_not_found")
    assert (await mailbox(client, alice, direction="all"))["messages"] == []
    assert await stored_count(client) == 0


async def test_deactivated_and_unknown_receivers_get_the_same_answer(client, alice, bob):
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (BOB,))
    deactivated = await (await post_card(client, alice, BOB)).json()
    unknown = await (await post_card(client, alice, "99999999")).json()
    assert deactivated == unknown


async def test_sending_to_yourself_is_422_self_message(client, alice, bob):
    resp = await post_card(client, alice, ALICE)
    await assert_error(resp, 422, "self_message", "receiver_id")
    assert (await mailbox(client, alice, direction="all"))["messages"] == []
    assert await stored_count(client) == 0


async def test_the_admin_account_is_an_ordinary_receiver(client, alice):
    card = await send_card(client, alice, "00000001", "hi admin")
    assert card["receiver_id"] == "00000001"


# client_msg_id idempotency ----------------------------------------------------------------------

async def test_resending_a_client_msg_id_returns_the_original_message_with_200(client, clock, alice, bob):
    first = await send_card(client, alice, BOB, "first try", client_msg_id="card-1",
                            pattern={"effect": "blink", "led_color": "#FF0000"})
    clock.advance(5)
    # The same card again (spaces around the text and the pattern's key order do not make it another).
    resp = await post_card(client, alice, BOB, "  first try ", client_msg_id="card-1",
                           pattern={"led_color": "#FF0000", "effect": "blink"})
    assert resp.status == 200, await resp.text()
    assert await resp.json() == first
    assert await db_rows(client, "SELECT count(*) FROM messages WHERE sender_id = ?", (ALICE,)) == [(1,)]
    inbox = await mailbox(client, bob)
    assert inbox == {"messages": [first], "has_more": False}
    assert await ids_in(client, alice, direction="sent") == [first["id"]]


CHANGED_CARDS = {  # what a reuse of the key changes: each makes it another card, refused
    "receiver": {"receiver_id": CAROL, "content": "for bob"},
    "content": {"receiver_id": BOB, "content": "for bob, edited"},
    "msg_type": {"receiver_id": BOB, "content": "for bob", "msg_type": "VOICE_TRANSCRIPT"},
    "pattern": {"receiver_id": BOB, "content": "for bob", "pattern": {"effect": "rainbow"}},
}


@pytest.mark.parametrize("change", CHANGED_CARDS)
async def test_a_client_msg_id_reused_for_another_card_is_422_and_stores_nothing(client, alice, bob, carol, change):
    first = await send_card(client, alice, BOB, "for bob", client_msg_id="k")
    resp = await client.post("/messages", json={**CHANGED_CARDS[change], "client_msg_id": "k"}, headers=bearer(alice))
    await assert_error(resp, 422, "idempotency_key_reused", field="client_msg_id")
    assert (await mailbox(client, carol))["messages"] == []
    assert (await mailbox(client, bob))["messages"] == [first]
    assert await stored_count(client) == 1


async def test_a_retry_of_a_card_the_sender_deleted_still_answers_the_original(client, alice, bob):
    first = await send_card(client, alice, BOB, "hello", client_msg_id="k")
    assert (await client.delete(f"/messages/{first['id']}", headers=bearer(alice))).status == 204
    resp = await post_card(client, alice, BOB, "hello", client_msg_id="k")  # the key names the send
    assert resp.status == 200, await resp.text()
    assert await resp.json() == first
    assert await ids_in(client, alice, direction="sent") == []  # and it does not come back to the outbox
    assert await stored_count(client) == 1


async def test_different_senders_use_the_same_client_msg_id_independently(client, alice, bob, carol):
    from_alice = await send_card(client, alice, CAROL, "from alice", client_msg_id="same-key")
    from_bob = await send_card(client, bob, CAROL, "from bob", client_msg_id="same-key")
    assert from_alice["id"] != from_bob["id"]
    assert from_bob["sender_id"] == BOB and from_bob["content"] == "from bob"
    assert await ids_in(client, carol) == [from_bob["id"], from_alice["id"]]


async def test_cards_without_client_msg_id_are_never_deduplicated(client, alice, bob):
    one = await send_card(client, alice, BOB, "same text")
    two = await send_card(client, alice, BOB, "same text")
    assert one["id"] != two["id"]
    assert await ids_in(client, bob) == [two["id"], one["id"]]


async def test_a_resend_returns_the_original_even_once_the_stranger_quota_is_spent(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    sent = [await send_card(client, alice, BOB, f"card {n}", client_msg_id=f"k{n}") for n in range(5)]
    await assert_error(await post_card(client, alice, BOB, "new"), 429, "stranger_quota_exceeded")
    resp = await post_card(client, alice, BOB, "card 2", client_msg_id="k2")  # a retry, not a new card
    assert resp.status == 200, await resp.text()
    assert await resp.json() == sent[2]
    assert await stored_count(client) == 5


async def test_a_resend_returns_the_original_even_after_the_receiver_was_deactivated(client, alice, bob):
    first = await send_card(client, alice, BOB, "hello", client_msg_id="k")
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (BOB,))
    resp = await post_card(client, alice, BOB, "hello", client_msg_id="k")
    assert resp.status == 200, await resp.text()
    assert await resp.json() == first
    assert await stored_count(client) == 1


async def test_concurrent_resends_of_one_client_msg_id_store_a_single_card(client, alice, bob):
    responses = await asyncio.gather(*(post_card(client, alice, BOB, "try", client_msg_id="retry")
                                       for n in range(5)))
    statuses = sorted(r.status for r in responses)
    bodies = [await r.json() for r in responses]
    assert statuses == [200, 200, 200, 200, 201]
    assert len({b["id"] for b in bodies}) == 1
    assert all(b == bodies[0] for b in bodies)
    assert await stored_count(client) == 1
    assert await ids_in(client, bob) == [bodies[0]["id"]]


# Silent drops: blocks and contacts_only ---------------------------------------------------------

async def test_a_card_to_someone_who_blocked_you_is_accepted_but_never_delivered(client, clock, alice, bob):
    await block(client, bob, ALICE)
    resp = await post_card(client, alice, BOB, "are you there?")
    assert resp.status == 201, await resp.text()
    card = await resp.json()
    assert card == {"id": card["id"], "sender_id": ALICE, "receiver_id": BOB, "content": "are you there?",
                    "msg_type": "USER_POSTCARD", "pattern": {}, "created_at": rfc3339(clock.time())}
    assert (await mailbox(client, alice, direction="sent"))["messages"] == [card]
    assert (await mailbox(client, bob)) == {"messages": [], "has_more": False}
    assert (await mailbox(client, bob, direction="all"))["messages"] == []
    assert (await mailbox(client, bob, since="00000000-0000-7000-8000-000000000000"))["messages"] == []
    await assert_error(await get_card(client, bob, card["id"]), 404, "message_not_found")


async def test_dropped_and_delivered_cards_look_the_same_to_the_sender(client, alice, bob, carol):
    await block(client, bob, ALICE)
    dropped = await post_card(client, alice, BOB, "dropped")
    delivered = await post_card(client, alice, CAROL, "delivered")
    assert dropped.status == delivered.status == 201
    assert dropped.content_type == delivered.content_type == "application/json"
    assert set(await dropped.json()) == set(await delivered.json()) == MESSAGE_KEYS
    assert [m["content"] for m in (await mailbox(client, alice, direction="sent"))["messages"]] == [
        "delivered", "dropped"]


async def test_a_block_drops_only_the_blocked_senders_cards(client, alice, bob, carol):
    await block(client, bob, ALICE)
    await send_card(client, alice, BOB, "from alice")
    from_carol = await send_card(client, carol, BOB, "from carol")
    assert await ids_in(client, bob) == [from_carol["id"]]


async def test_a_block_beats_being_a_contact(client, alice, bob):
    await add_contact(client, bob, ALICE)
    await block(client, bob, ALICE)
    await send_card(client, alice, BOB)
    assert (await mailbox(client, bob))["messages"] == []


async def test_unblocking_does_not_resurrect_a_dropped_card_but_lets_new_ones_through(client, alice, bob):
    await block(client, bob, ALICE)
    dropped = await send_card(client, alice, BOB, "while blocked")
    resp = await client.delete(f"/blocks/{ALICE}", headers=bearer(bob))
    assert resp.status == 204, await resp.text()
    assert (await mailbox(client, bob))["messages"] == []
    await assert_error(await get_card(client, bob, dropped["id"]), 404, "message_not_found")
    after = await send_card(client, alice, BOB, "after unblock")
    assert await ids_in(client, bob) == [after["id"]]
    assert await ids_in(client, bob, direction="all") == [after["id"]]


async def test_contacts_only_silently_drops_cards_from_non_contacts(client, alice, bob):
    await set_privacy(client, bob, "contacts_only")
    resp = await post_card(client, alice, BOB, "hi stranger")
    assert resp.status == 201, await resp.text()
    card = await resp.json()
    assert set(card) == MESSAGE_KEYS
    assert (await mailbox(client, alice, direction="sent"))["messages"] == [card]
    assert (await mailbox(client, bob))["messages"] == []


async def test_contacts_only_delivers_once_the_receiver_adds_the_sender(client, alice, bob):
    await set_privacy(client, bob, "contacts_only")
    dropped = await post_card(client, alice, BOB, "before")
    await add_contact(client, bob, ALICE)
    delivered = await post_card(client, alice, BOB, "after")
    assert dropped.status == delivered.status == 201
    dropped_card, delivered_card = await dropped.json(), await delivered.json()
    assert set(dropped_card) == set(delivered_card) == MESSAGE_KEYS
    assert (await mailbox(client, bob))["messages"] == [delivered_card]
    assert await ids_in(client, alice, direction="sent") == [delivered_card["id"], dropped_card["id"]]


async def test_the_sender_adding_the_receiver_does_not_open_a_contacts_only_mailbox(client, alice, bob):
    await set_privacy(client, bob, "contacts_only")
    await add_contact(client, alice, BOB)  # only bob's own contact list counts
    await send_card(client, alice, BOB)
    assert (await mailbox(client, bob))["messages"] == []


async def test_switching_back_to_everyone_does_not_resurrect_dropped_cards(client, alice, bob):
    await set_privacy(client, bob, "contacts_only")
    await send_card(client, alice, BOB, "dropped")
    await set_privacy(client, bob, "everyone")
    delivered = await send_card(client, alice, BOB, "delivered")
    assert await ids_in(client, bob) == [delivered["id"]]


# Rate limits and the stranger quota -------------------------------------------------------------

async def test_a_sender_may_send_a_burst_of_30_then_gets_429_rate_limited(make_client, clock):
    client = await make_client()
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await add_contact(client, bob, ALICE)  # keeps the stranger quota out of the way
    burst = await asyncio.gather(*(post_card(client, alice, BOB, f"card {n}") for n in range(30)))
    assert [r.status for r in burst] == [201] * 30
    resp = await post_card(client, alice, BOB, "one too many")
    await assert_error(resp, 429, "rate_limited")
    assert resp.headers["Retry-After"] == "2"
    assert len(await ids_in(client, bob, limit=200)) == 30
    assert await stored_count(client) == 30
    clock.advance(2)
    after = await send_card(client, alice, BOB, "after two seconds")
    await assert_error(await post_card(client, alice, BOB), 429, "rate_limited")
    assert (await ids_in(client, bob, limit=200))[0] == after["id"]
    assert await stored_count(client) == 31


async def test_the_send_bucket_refills_one_card_every_two_seconds(make_client, clock):
    client = await make_client()
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await add_contact(client, bob, ALICE)
    for r in await asyncio.gather(*(post_card(client, alice, BOB, f"card {n}") for n in range(30))):
        assert r.status == 201
    await assert_error(await post_card(client, alice, BOB), 429, "rate_limited")
    clock.advance(1)
    resp = await post_card(client, alice, BOB)
    await assert_error(resp, 429, "rate_limited")
    assert resp.headers["Retry-After"] == "1"
    clock.advance(1)
    await send_card(client, alice, BOB, "after the refill")
    await assert_error(await post_card(client, alice, BOB), 429, "rate_limited")
    assert await stored_count(client) == 31


async def test_the_send_rate_limit_is_per_sender(make_client, clock):
    client = await make_client()
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await add_contact(client, bob, ALICE)
    await add_contact(client, alice, BOB)
    for r in await asyncio.gather(*(post_card(client, alice, BOB, f"card {n}") for n in range(30))):
        assert r.status == 201
    await assert_error(await post_card(client, alice, BOB), 429, "rate_limited")
    await send_card(client, bob, ALICE, "bob still may")


async def test_refused_cards_do_not_spend_the_send_bucket(make_client, clock):
    client = await make_client()
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await add_contact(client, bob, ALICE)
    for _ in range(5):
        await assert_error(await post_card(client, alice, BOB, ""), 422, "invalid_field", "content")
    for r in await asyncio.gather(*(post_card(client, alice, BOB, f"card {n}") for n in range(30))):
        assert r.status == 201
    await assert_error(await post_card(client, alice, BOB), 429, "rate_limited")


async def test_a_stranger_may_send_the_same_receiver_five_cards_a_day(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(5)]
    resp = await post_card(client, alice, BOB, "sixth")
    await assert_error(resp, 429, "stranger_quota_exceeded")
    assert resp.headers["Retry-After"] == str(int(seconds_to_utc_midnight(clock.time())))
    assert await ids_in(client, bob) == [c["id"] for c in reversed(sent)]
    assert await stored_count(client) == 5


async def test_the_stranger_quota_is_per_receiver(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    carol = await register(client, "carol")
    for n in range(5):
        await send_card(client, alice, BOB, f"card {n}")
    await assert_error(await post_card(client, alice, BOB), 429, "stranger_quota_exceeded")
    to_carol = await send_card(client, alice, CAROL, "carol is someone else")
    assert await ids_in(client, carol) == [to_carol["id"]]
    await send_card(client, carol, BOB, "and carol has her own quota for bob")


async def test_the_stranger_quota_stops_once_the_receiver_adds_the_sender(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    for n in range(5):
        await send_card(client, alice, BOB, f"card {n}")
    await assert_error(await post_card(client, alice, BOB), 429, "stranger_quota_exceeded")
    await add_contact(client, bob, ALICE)
    for n in range(5):
        await send_card(client, alice, BOB, f"as a contact {n}")
    assert len(await ids_in(client, bob)) == 10


async def test_cards_sent_as_a_contact_do_not_count_once_the_contact_is_removed(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await add_contact(client, bob, ALICE)
    for n in range(7):
        await send_card(client, alice, BOB, f"as a contact {n}")
    resp = await client.delete(f"/contacts/{ALICE}", headers=bearer(bob))
    assert resp.status == 204
    for n in range(5):  # a stranger again: five a day, however many came before as a contact
        await send_card(client, alice, BOB, f"as a stranger {n}")
    await assert_error(await post_card(client, alice, BOB), 429, "stranger_quota_exceeded")
    assert len(await ids_in(client, bob)) == 12


async def test_a_blocked_sender_meets_the_stranger_quota_like_anyone_else(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    await block(client, bob, ALICE)
    for n in range(5):
        await send_card(client, alice, BOB, f"card {n}")
    await assert_error(await post_card(client, alice, BOB), 429, "stranger_quota_exceeded")


async def test_the_stranger_quota_starts_again_after_midnight(make_client, clock):
    client = await make_client(timezone="UTC")
    alice, bob = await register(client, "alice"), await register(client, "bob")
    for n in range(5):
        await send_card(client, alice, BOB, f"card {n}")
    to_midnight = seconds_to_utc_midnight(clock.time())
    clock.advance(to_midnight - 1)  # 23:59:59 the same day
    alice = await login(client, "alice")  # the first access token has expired by now
    resp = await post_card(client, alice, BOB)
    await assert_error(resp, 429, "stranger_quota_exceeded")
    assert resp.headers["Retry-After"] == "1"
    clock.advance(2)  # 00:00:01 the next day
    new_day = [await send_card(client, alice, BOB, f"new day {n}") for n in range(5)]
    await assert_error(await post_card(client, alice, BOB), 429, "stranger_quota_exceeded")
    inbox = await ids_in(client, await login(client, "bob"))
    assert len(inbox) == 10
    assert inbox[:5] == [c["id"] for c in reversed(new_day)]


async def test_the_stranger_day_follows_the_configured_timezone(make_client, clock):
    client = await make_client(timezone="Asia/Shanghai")  # UTC+8: midnight there is 16:00 UTC
    alice, bob = await register(client, "alice"), await register(client, "bob")
    for n in range(5):
        await send_card(client, alice, BOB, f"card {n}")
    to_midnight = seconds_to_utc_midnight(clock.time() + 8 * 3600)
    resp = await post_card(client, alice, BOB)
    await assert_error(resp, 429, "stranger_quota_exceeded")
    assert resp.headers["Retry-After"] == str(int(to_midnight))
    clock.advance(to_midnight + 1)
    alice = await login(client, "alice")
    await send_card(client, alice, BOB, "a new day in Shanghai")


async def test_with_rate_limit_off_neither_the_burst_nor_the_stranger_quota_applies(make_client, clock):
    client = await make_client(rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    responses = await asyncio.gather(*(post_card(client, alice, BOB, f"card {n}") for n in range(40)))
    assert [r.status for r in responses] == [201] * 40
    await send_card(client, alice, BOB, "and one more")
    assert len(await ids_in(client, bob, limit=200)) == 41


# GET /messages ----------------------------------------------------------------------------------

async def test_the_mailbox_defaults_to_received_cards_newest_first(client, alice, bob, carol):
    first = await send_card(client, alice, BOB, "one")
    await send_card(client, bob, ALICE, "bob's own card")
    second = await send_card(client, carol, BOB, "two")
    third = await send_card(client, alice, BOB, "three")
    page = await mailbox(client, bob)
    assert page == {"messages": [third, second, first], "has_more": False}
    for message in page["messages"]:
        assert set(message) == MESSAGE_KEYS


async def test_direction_sent_and_all(client, alice, bob):
    a1 = await send_card(client, alice, BOB, "a1")
    b1 = await send_card(client, bob, ALICE, "b1")
    a2 = await send_card(client, alice, BOB, "a2")
    assert await ids_in(client, alice, direction="received") == [b1["id"]]
    assert await ids_in(client, alice, direction="sent") == [a2["id"], a1["id"]]
    assert (await mailbox(client, alice, direction="all")) == {"messages": [a2, b1, a1], "has_more": False}
    assert await ids_in(client, bob, direction="all") == [a2["id"], b1["id"], a1["id"]]


async def test_limit_defaults_to_50_and_allows_up_to_200(make_client, clock):
    client = await make_client(rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    for r in await asyncio.gather(*(post_card(client, alice, BOB, f"card {n}") for n in range(51))):
        assert r.status == 201
    everything = await mailbox(client, bob, limit=200)
    assert len(everything["messages"]) == 51 and everything["has_more"] is False
    default = await mailbox(client, bob)
    assert len(default["messages"]) == 50 and default["has_more"] is True
    assert default["messages"] == everything["messages"][:50]
    assert [m["id"] for m in everything["messages"]] == sorted((m["id"] for m in everything["messages"]),
                                                               reverse=True)
    assert (await mailbox(client, bob, limit=51))["has_more"] is False
    assert (await mailbox(client, bob, limit=1))["messages"] == everything["messages"][:1]


BAD_QUERIES = [
    pytest.param("limit=201", "limit", id="limit-201"),
    pytest.param("limit=0", "limit", id="limit-0"),
    pytest.param("limit=-1", "limit", id="limit-negative"),
    pytest.param("limit=x", "limit", id="limit-word"),
    pytest.param("limit=1.5", "limit", id="limit-fraction"),
    pytest.param("limit=", "limit", id="limit-empty"),
    pytest.param("limit=1&limit=2", "limit", id="limit-twice"),
    pytest.param("limit=+5", "limit", id="limit-plus-sign"),
    pytest.param("limit=%205", "limit", id="limit-leading-space"),
    pytest.param("limit=%D9%A5", "limit", id="limit-arabic-digit"),
    pytest.param("direction=", "direction", id="direction-empty"),
    pytest.param("direction=inbox", "direction", id="direction-unknown"),
    pytest.param("direction=SENT", "direction", id="direction-upper"),
    pytest.param("msg_type=POSTCARD", "msg_type", id="msg-type-unknown"),
    pytest.param("peer=bob", "peer", id="peer-username"),
    pytest.param("peer=1234", "peer", id="peer-short"),
    pytest.param("before=latest", "before", id="before-word"),
    pytest.param("before=0190F3A2-7B4C-7D2E-8F00-123456789ABC", "before", id="before-upper"),
    pytest.param("before=0190f3a27b4c7d2e8f00123456789abc", "before", id="before-no-dashes"),
    pytest.param("since=00000002", "since", id="since-bipupu-id"),
    pytest.param("since=", "since", id="since-empty"),
]


@pytest.mark.parametrize("query, field", BAD_QUERIES)
async def test_a_bad_mailbox_query_is_422_naming_the_parameter(client, alice, bob, query, field):
    await send_card(client, alice, BOB)
    resp = await client.get(f"/messages?{query}", headers=bearer(bob))
    await assert_error(resp, 422, "invalid_field", field)


async def test_before_and_since_together_give_the_cards_between_oldest_first(client, alice, bob):
    cards = [await send_card(client, alice, BOB, f"card {i}") for i in range(5)]
    resp = await client.get("/messages", params={"before": cards[4]["id"], "since": cards[0]["id"]},
                            headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    page = await resp.json()
    assert [m["content"] for m in page["messages"]] == ["card 1", "card 2", "card 3"]
    assert page["has_more"] is False
    resp = await client.get("/messages", params={"before": cards[4]["id"], "since": cards[0]["id"], "limit": "2"},
                            headers=bearer(bob))
    page = await resp.json()
    assert [m["content"] for m in page["messages"]] == ["card 1", "card 2"] and page["has_more"] is True


@pytest.mark.parametrize("name", ["page", "offset", "sort", "LIMIT"])
async def test_an_unknown_query_parameter_is_422_unknown_field(client, alice, bob, name):
    resp = await client.get("/messages", params={name: "1"}, headers=bearer(bob))
    await assert_error(resp, 422, "unknown_field", name)


async def test_before_pages_back_without_overlap_or_gap(client, alice, bob):
    await add_contact(client, bob, ALICE)
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(7)]
    newest_first = [c["id"] for c in reversed(sent)]
    page1 = await mailbox(client, bob, limit=3)
    assert [m["id"] for m in page1["messages"]] == newest_first[0:3] and page1["has_more"] is True
    page2 = await mailbox(client, bob, limit=3, before=page1["messages"][-1]["id"])
    assert [m["id"] for m in page2["messages"]] == newest_first[3:6] and page2["has_more"] is True
    page3 = await mailbox(client, bob, limit=3, before=page2["messages"][-1]["id"])
    assert [m["id"] for m in page3["messages"]] == newest_first[6:7] and page3["has_more"] is False
    assert page1["messages"] + page2["messages"] + page3["messages"] == list(reversed(sent))
    last = await mailbox(client, bob, limit=3, before=sent[0]["id"])
    assert last == {"messages": [], "has_more": False}


async def test_has_more_is_false_when_the_last_page_is_exactly_full(client, alice, bob):
    await add_contact(client, bob, ALICE)
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(6)]
    page = await mailbox(client, bob, limit=3, before=sent[3]["id"])
    assert [m["id"] for m in page["messages"]] == [sent[2]["id"], sent[1]["id"], sent[0]["id"]]
    assert page["has_more"] is False
    assert (await mailbox(client, bob, limit=6))["has_more"] is False
    assert (await mailbox(client, bob, limit=5))["has_more"] is True


async def test_since_returns_newer_cards_oldest_first(client, alice, bob):
    await add_contact(client, bob, ALICE)
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(7)]
    page = await mailbox(client, bob, since=sent[1]["id"], limit=3)
    assert page == {"messages": sent[2:5], "has_more": True}
    page = await mailbox(client, bob, since=page["messages"][-1]["id"], limit=3)
    assert page == {"messages": sent[5:7], "has_more": False}
    assert await mailbox(client, bob, since=sent[-1]["id"]) == {"messages": [], "has_more": False}
    assert (await mailbox(client, bob, since=sent[0]["id"]))["messages"] == sent[1:]


async def test_since_still_works_after_the_since_card_was_deleted(client, alice, bob):
    await add_contact(client, bob, ALICE)
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(5)]
    resp = await delete_card(client, bob, sent[2]["id"])
    assert resp.status == 204
    assert await mailbox(client, bob, since=sent[2]["id"]) == {"messages": sent[3:], "has_more": False}
    assert await mailbox(client, bob, before=sent[2]["id"]) == {"messages": [sent[1], sent[0]], "has_more": False}


async def test_since_an_id_the_caller_never_saw_is_a_plain_cursor(client, alice, bob, carol):
    other = await send_card(client, alice, CAROL, "not bob's")
    mine = await send_card(client, alice, BOB, "bob's")
    assert await ids_in(client, bob, since=other["id"]) == [mine["id"]]
    assert await ids_in(client, bob, since="00000000-0000-7000-8000-000000000000") == [mine["id"]]
    assert await ids_in(client, bob, since="ffffffff-ffff-7fff-bfff-ffffffffffff") == []


async def test_msg_type_filter(client, alice, bob):
    postcard1 = await send_card(client, alice, BOB, "p1")
    voice = await send_card(client, alice, BOB, "v1", msg_type="VOICE_TRANSCRIPT")
    postcard2 = await send_card(client, alice, BOB, "p2")
    assert await ids_in(client, bob, msg_type="USER_POSTCARD") == [postcard2["id"], postcard1["id"]]
    assert await ids_in(client, bob, msg_type="VOICE_TRANSCRIPT") == [voice["id"]]
    assert await ids_in(client, bob, msg_type="COSMIC_BROADCAST") == []
    assert await ids_in(client, alice, direction="sent", msg_type="VOICE_TRANSCRIPT") == [voice["id"]]
    assert await ids_in(client, alice, msg_type="VOICE_TRANSCRIPT") == []  # alice received nothing


async def test_peer_filter_in_each_direction(client, alice, bob, carol):
    bob_to_alice = await send_card(client, bob, ALICE, "b→a")
    carol_to_alice = await send_card(client, carol, ALICE, "c→a")
    alice_to_bob = await send_card(client, alice, BOB, "a→b")
    alice_to_carol = await send_card(client, alice, CAROL, "a→c")
    await send_card(client, bob, CAROL, "b→c")
    assert await ids_in(client, alice, peer=BOB) == [bob_to_alice["id"]]
    assert await ids_in(client, alice, peer=CAROL) == [carol_to_alice["id"]]
    assert await ids_in(client, alice, direction="sent", peer=BOB) == [alice_to_bob["id"]]
    assert await ids_in(client, alice, direction="sent", peer=CAROL) == [alice_to_carol["id"]]
    assert await ids_in(client, alice, direction="all", peer=BOB) == [alice_to_bob["id"], bob_to_alice["id"]]
    assert await ids_in(client, alice, direction="all", peer=CAROL) == [alice_to_carol["id"], carol_to_alice["id"]]
    assert await ids_in(client, alice, direction="all", peer="cosmic.fortune") == []
    assert await ids_in(client, alice, direction="all", peer="99999999") == []


async def test_filters_combine_with_paging(client, alice, bob, carol):
    await add_contact(client, bob, ALICE)
    from_alice = [await send_card(client, alice, BOB, f"a{n}", msg_type="VOICE_TRANSCRIPT") for n in range(4)]
    await send_card(client, carol, BOB, "c", msg_type="VOICE_TRANSCRIPT")
    await send_card(client, alice, BOB, "postcard")
    page = await mailbox(client, bob, peer=ALICE, msg_type="VOICE_TRANSCRIPT", limit=2)
    assert page == {"messages": [from_alice[3], from_alice[2]], "has_more": True}
    page = await mailbox(client, bob, peer=ALICE, msg_type="VOICE_TRANSCRIPT", limit=2,
                         before=from_alice[2]["id"])
    assert page == {"messages": [from_alice[1], from_alice[0]], "has_more": False}


async def test_a_new_user_has_an_empty_mailbox(client, alice):
    for direction in ("received", "sent", "all"):
        assert await mailbox(client, alice, direction=direction) == {"messages": [], "has_more": False}


# GET /messages/{id} -----------------------------------------------------------------------------

async def test_the_receiver_and_the_sender_can_read_a_card(client, alice, bob):
    card = await send_card(client, alice, BOB, "read me", pattern={"led_color": "#00ff00"})
    for reader in (bob, alice):
        resp = await get_card(client, reader, card["id"])
        assert resp.status == 200, await resp.text()
        assert await resp.json() == card


async def test_a_third_user_cannot_read_a_card(client, alice, bob, carol):
    card = await send_card(client, alice, BOB)
    await assert_error(await get_card(client, carol, card["id"]), 404, "message_not_found")


@pytest.mark.parametrize("message_id", [
    "nope",
    "00000000-0000-0000-0000-000000000000",
    "0190f3a2-7b4c-7d2e-8f00-123456789abc",
    "' OR '1'='1",
])
async def test_an_unknown_or_malformed_message_id_is_404(client, alice, bob, message_id):
    await send_card(client, alice, BOB)
    await assert_error(await get_card(client, bob, message_id), 404, "message_not_found")
    await assert_error(await delete_card(client, bob, message_id), 404, "message_not_found")


async def test_an_upper_cased_message_id_is_not_the_same_card(client, alice, bob):
    card = await send_card(client, alice, BOB)
    await assert_error(await get_card(client, bob, card["id"].upper()), 404, "message_not_found")


async def test_a_dropped_card_is_visible_to_its_sender_only(client, alice, bob):
    await block(client, bob, ALICE)
    card = await send_card(client, alice, BOB)
    resp = await get_card(client, alice, card["id"])
    assert resp.status == 200 and await resp.json() == card
    await assert_error(await get_card(client, bob, card["id"]), 404, "message_not_found")
    await assert_error(await delete_card(client, bob, card["id"]), 404, "message_not_found")
    assert (await get_card(client, alice, card["id"])).status == 200


# DELETE /messages/{id} --------------------------------------------------------------------------

async def test_the_receiver_deleting_a_card_keeps_it_in_the_senders_outbox(client, alice, bob):
    card = await send_card(client, alice, BOB)
    resp = await delete_card(client, bob, card["id"])
    assert resp.status == 204
    assert await resp.read() == b""
    assert (await mailbox(client, bob))["messages"] == []
    await assert_error(await get_card(client, bob, card["id"]), 404, "message_not_found")
    assert (await mailbox(client, alice, direction="sent"))["messages"] == [card]
    assert await (await get_card(client, alice, card["id"])).json() == card


async def test_the_sender_deleting_a_card_keeps_it_in_the_receivers_inbox(client, alice, bob):
    card = await send_card(client, alice, BOB)
    assert (await delete_card(client, alice, card["id"])).status == 204
    assert (await mailbox(client, alice, direction="all"))["messages"] == []
    await assert_error(await get_card(client, alice, card["id"]), 404, "message_not_found")
    assert (await mailbox(client, bob))["messages"] == [card]
    assert await (await get_card(client, bob, card["id"])).json() == card


async def test_deleting_removes_only_that_card(client, alice, bob):
    keep1 = await send_card(client, alice, BOB, "keep 1")
    gone = await send_card(client, alice, BOB, "gone")
    keep2 = await send_card(client, alice, BOB, "keep 2")
    assert (await delete_card(client, bob, gone["id"])).status == 204
    assert await ids_in(client, bob) == [keep2["id"], keep1["id"]]


async def test_deleting_twice_is_404(client, alice, bob):
    card = await send_card(client, alice, BOB)
    assert (await delete_card(client, bob, card["id"])).status == 204
    await assert_error(await delete_card(client, bob, card["id"]), 404, "message_not_found")
    assert (await mailbox(client, alice, direction="sent"))["messages"] == [card]


async def test_both_sides_deleting_empties_both_mailboxes(client, alice, bob):
    card = await send_card(client, alice, BOB)
    assert (await delete_card(client, bob, card["id"])).status == 204
    assert (await delete_card(client, alice, card["id"])).status == 204
    for account in (alice, bob):
        assert (await mailbox(client, account, direction="all"))["messages"] == []
        await assert_error(await get_card(client, account, card["id"]), 404, "message_not_found")


async def test_a_third_user_cannot_delete_a_card_and_nothing_changes(client, alice, bob, carol):
    card = await send_card(client, alice, BOB)
    await assert_error(await delete_card(client, carol, card["id"]), 404, "message_not_found")
    assert (await mailbox(client, bob))["messages"] == [card]
    assert (await mailbox(client, alice, direction="sent"))["messages"] == [card]
    assert await db_rows(client, "SELECT in_inbox, in_outbox FROM messages WHERE id = ?", (card["id"],)) == [(1, 1)]


# Ordering and ids -------------------------------------------------------------------------------

async def test_ids_sort_in_the_order_the_cards_were_accepted(client, clock, alice, bob):
    await add_contact(client, bob, ALICE)
    accepted = []
    for n in range(20):
        accepted.append((await send_card(client, alice, BOB, f"card {n}"))["id"])
        if n % 3 == 0:
            clock.advance(0.0004)  # some in the same millisecond, some not
    assert accepted == sorted(accepted)
    assert len(set(accepted)) == 20
    assert await ids_in(client, bob) == list(reversed(accepted))


async def test_ids_keep_increasing_when_the_wall_clock_jumps_back_an_hour(client, clock, alice, bob):
    await add_contact(client, bob, ALICE)
    before = [(await send_card(client, alice, BOB, f"before {n}"))["id"] for n in range(3)]
    clock.set_wall(clock.wall - 3600)
    after = [(await send_card(client, alice, BOB, f"after {n}"))["id"] for n in range(3)]
    assert before + after == sorted(before + after)
    assert min(after) > max(before)
    assert await ids_in(client, bob) == list(reversed(before + after))
    assert await ids_in(client, bob, since=before[-1]) == after


async def test_ids_after_a_restart_with_the_clock_set_back_a_day_sort_after_all_existing(
        client, make_client, clock, alice, bob):
    await add_contact(client, bob, ALICE)
    old = [(await send_card(client, alice, BOB, f"old {n}"))["id"] for n in range(3)]
    await client.close()
    clock.set_wall(clock.wall - 86400)  # a box without an RTC boots with a stale clock
    restarted = await make_client()
    new = [(await send_card(restarted, alice, BOB, f"new {n}"))["id"] for n in range(3)]
    assert min(new) > max(old)
    assert old + new == sorted(old + new)
    assert await ids_in(restarted, bob) == list(reversed(old + new))
    assert await ids_in(restarted, bob, since=old[-1]) == new


# Concurrency, durability ------------------------------------------------------------------------

async def test_fifty_concurrent_sends_are_stored_once_each_in_id_order_with_group_commit(make_client, clock):
    client = await make_client(rate_limit=False)
    senders = [await register(client, f"sender{n}") for n in range(5)]  # 00000002..00000006
    receivers = [await register(client, f"receiver{n}") for n in range(2)]  # 00000007, 00000008
    receiver_ids = ["00000007", "00000008"]
    database = client.server.app[keys.db]
    commits_before = database.commits
    jobs = [post_card(client, senders[n % 5], receiver_ids[n % 2], f"card {n}") for n in range(50)]
    responses = await asyncio.gather(*jobs)
    assert [r.status for r in responses] == [201] * 50
    cards = [await r.json() for r in responses]
    assert database.commits - commits_before < 50
    assert [c["content"] for c in cards] == [f"card {n}" for n in range(50)]
    assert len({c["id"] for c in cards}) == 50
    rows = await db_rows(client, "SELECT id, content FROM messages")
    assert sorted(rows) == sorted((c["id"], c["content"]) for c in cards)
    for receiver, receiver_id in zip(receivers, receiver_ids):
        expected = sorted((c["id"] for c in cards if c["receiver_id"] == receiver_id), reverse=True)
        assert len(expected) == 25
        assert await ids_in(client, receiver, limit=200) == expected
        assert await ids_in(client, receiver, since=min(expected)) == sorted(expected)[1:]
    for n, sender in enumerate(senders):
        mine = sorted((c["id"] for c in cards if c["sender_id"] == f"0000000{n + 2}"), reverse=True)
        assert await ids_in(client, sender, direction="sent", limit=200) == mine


async def test_a_201_card_is_already_committed_to_the_database_file(client, clock, alice, bob):
    card = await send_card(client, alice, BOB, "on disk", msg_type="VOICE_TRANSCRIPT",
                           pattern={"led_color": "#abcdef", "vibrate": True})
    rows = await db_rows(client, "SELECT id, sender_id, receiver_id, content, msg_type, pattern, created_at"
                           " FROM messages WHERE id = ?", (card["id"],))
    assert len(rows) == 1
    row = rows[0]
    assert row[:5] == (card["id"], ALICE, BOB, "on disk", "VOICE_TRANSCRIPT")
    assert json.loads(row[5]) == {"led_color": "#ABCDEF", "vibrate": True}
    assert row[6] == rfc3339(clock.time())


@pytest.mark.parametrize("content, stored", [
    pytest.param("'; DROP TABLE messages; --", "'; DROP TABLE messages; --", id="sql-injection"),
    pytest.param("Robert'); DELETE FROM users WHERE ('1'='1", "Robert'); DELETE FROM users WHERE ('1'='1",
                 id="sql-delete"),
    pytest.param('quote " backslash \\ wildcards %_ ? :me', 'quote " backslash \\ wildcards %_ ? :me', id="meta"),
    pytest.param("nul\u0000inside", "nul\u0000inside", id="nul"),
    pytest.param("\u0000", "\u0000", id="only-nul"),
    pytest.param("tab\tinside", "tab\tinside", id="tab"),
    pytest.param("\tleading and trailing tabs\t", "leading and trailing tabs", id="tabs-trimmed"),
    pytest.param("line\nbreak\r\nend", "line\nbreak\r\nend", id="newlines"),
    pytest.param("bell\x07 escape\x1b[31m", "bell\x07 escape\x1b[31m", id="control-chars"),
    pytest.param("emoji 🐧💌👩‍👩‍👧 🇨🇳", "emoji 🐧💌👩‍👩‍👧 🇨🇳", id="emoji"),
    pytest.param("مرحبا بالعالم — שלום", "مرحبا بالعالم — שלום", id="rtl"),
    pytest.param("\u202eevil override\u202c", "\u202eevil override\u202c", id="rtl-override"),
    pytest.param("<script>alert(1)</script>", "<script>alert(1)</script>", id="html"),
    pytest.param("  星语者 的明信片  ", "星语者 的明信片", id="cjk-trimmed"),
])
async def test_content_is_stored_and_returned_verbatim_after_trimming(client, alice, bob, content, stored):
    card = await send_card(client, alice, BOB, content)
    assert card["content"] == stored
    assert (await mailbox(client, bob))["messages"] == [card]
    assert await (await get_card(client, bob, card["id"])).json() == card
    assert await db_rows(client, "SELECT content FROM messages WHERE id = ?", (card["id"],)) == [(stored,)]
    assert await db_rows(client, "SELECT count(*) FROM users") == [(3,)]


@pytest.mark.parametrize("duration", [1.0, 60.0, 30])
async def test_a_whole_duration_written_as_a_float_is_the_integer_json_schema_says_it_is(client, alice, bob, duration):
    # JSON Schema 2020-12 reads 1.0 as an integer; the document says "integer", so the server agrees.
    card = await send_card(client, alice, BOB, "timed", pattern={"duration_s": duration})
    assert card["pattern"]["duration_s"] == int(duration) and type(card["pattern"]["duration_s"]) is int


@pytest.mark.parametrize("duration", [1.5, 0.0, 61.0, True, "5", float("nan")])
async def test_a_duration_that_is_no_whole_number_of_1_to_60_is_refused(client, alice, bob, duration):
    body = {"receiver_id": BOB, "content": "timed", "pattern": {"duration_s": duration}}
    raw = json.dumps(body, allow_nan=True)
    resp = await client.post("/messages", data=raw, headers={**bearer(alice), "Content-Type": "application/json"})
    assert resp.status in (400, 422), await resp.text()
    assert await stored_count(client) == 0
