"""WebSocket /ws (SPEC §5): authentication, live pushes, replay with since, heartbeat, limits, closing."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import re
import socket
import struct
import time
from contextlib import suppress
from typing import Any

import pytest
from aiohttp import WSMsgType

from bipupu_server import keys
from tests.conftest import (PASSWORD, WAIT, assert_error, assert_quiet, bearer, connect_with, db_write, login,
                            receive_card, receive_json, register, rfc3339, send_card, until)

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")


def tampered(token: str) -> str:
    """The token with one character of its signature changed (not the unused last bits)."""
    flipped = "A" if token[-10] != "A" else "B"
    return f"{token[:-10]}{flipped}{token[-9:]}"


async def befriend(client, owner: dict[str, Any], *others: dict[str, Any]) -> None:
    """Make `others` trusted contacts of owner (no stranger quota, allowed under contacts_only)."""
    for other in others:
        resp = await client.post("/contacts", json={"contact_id": other["bipupu_id"]}, headers=bearer(owner))
        assert resp.status == 201, await resp.text()


async def assert_closed(ws, code: int) -> None:
    """The server closes this socket with `code` (and nothing else arrives first)."""
    msg = await ws.receive(timeout=WAIT)
    assert msg.type == WSMsgType.CLOSE, (msg.type, msg.data)
    assert msg.data == code, (msg.data, msg.extra)
    assert ws.close_code == code


async def assert_alive(ws) -> None:
    await ws.send_json({"type": "ping"})
    assert await receive_json(ws) == {"type": "pong"}


async def expect_auth_ok(ws, account: dict[str, Any], clock) -> None:
    assert await receive_json(ws) == {"type": "auth_ok", "bipupu_id": account["bipupu_id"],
                                      "server_time": rfc3339(clock.time())}


async def close_all(*sockets) -> None:
    for ws in sockets:
        await ws.close()


@pytest.fixture
async def carol(client, alice, bob) -> dict[str, Any]:
    return await register(client, "carol")


# Authentication ---------------------------------------------------------------------------------

async def test_auth_with_the_authorization_header(client, clock, alice):
    ws = await client.ws_connect("/ws", headers=bearer(alice))
    data = await receive_json(ws)
    assert data == {"type": "auth_ok", "bipupu_id": "00000002", "server_time": rfc3339(clock.time())}
    assert TIMESTAMP.match(data["server_time"])
    await assert_alive(ws)
    await ws.close()


async def test_auth_with_the_token_query_parameter(client, clock, alice):
    ws = await client.ws_connect("/ws", params={"token": alice["access_token"]})
    await expect_auth_ok(ws, alice, clock)
    await assert_alive(ws)
    await ws.close()


async def test_auth_with_a_first_auth_frame(client, clock, alice, bob):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": bob["access_token"]})
    data = await receive_json(ws)
    assert data == {"type": "auth_ok", "bipupu_id": "00000003", "server_time": rfc3339(clock.time())}
    await assert_alive(ws)
    await ws.close()


async def test_server_time_follows_the_injected_clock(client, clock, alice):
    clock.advance(1234.9)
    ws = await client.ws_connect("/ws", headers=bearer(alice))
    await expect_auth_ok(ws, alice, clock)
    await ws.close()


async def test_auth_binds_the_socket_to_the_token_owner(client, alice, bob, open_ws):
    ws = await open_ws(bob, frame=True)
    sent = await send_card(client, alice, bob["bipupu_id"], "to bob")
    assert await receive_card(ws) == sent
    await ws.close()


@pytest.mark.parametrize("how", ["header", "query", "frame"])
async def test_a_refresh_token_is_refused_with_4001(client, alice, how):
    ws = await connect_with(client, alice["refresh_token"], how)
    await assert_closed(ws, 4001)


@pytest.mark.parametrize("how", ["header", "query", "frame"])
async def test_a_tampered_token_is_refused_with_4001(client, alice, how):
    ws = await connect_with(client, tampered(alice["access_token"]), how)
    await assert_closed(ws, 4001)


@pytest.mark.parametrize("how", ["header", "query", "frame"])
async def test_an_expired_token_is_refused_with_4001(client, clock, alice, how):
    clock.advance(3601)
    ws = await connect_with(client, alice["access_token"], how)
    await assert_closed(ws, 4001)


@pytest.mark.parametrize("how", ["header", "query", "frame"])
async def test_a_token_of_a_signed_out_session_is_refused_with_4003(client, alice, how):
    # SPEC §5: signed out means "do not retry with it" (4003), not "refresh and retry" (4001).
    resp = await client.post("/auth/logout", headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    ws = await connect_with(client, alice["access_token"], how)
    await assert_closed(ws, 4003)


@pytest.mark.parametrize("header", ["Basic YWxpY2U6cGFzc3dvcmQ=", "Bearer", "Bearer    ", "Token abc"])
async def test_a_malformed_authorization_header_is_refused_with_4001(client, alice, header):
    ws = await client.ws_connect("/ws", headers={"Authorization": header})
    await assert_closed(ws, 4001)


async def test_no_auth_frame_in_time_is_closed_with_4001(make_client):
    client = await make_client(ws_auth_timeout_s=0.2)
    ws = await client.ws_connect("/ws")
    started = time.monotonic()
    await assert_closed(ws, 4001)
    assert 0.15 <= time.monotonic() - started < 1.5


@pytest.mark.parametrize("first", [
    {"type": "ping"},
    {"type": "auth"},
    {"type": "auth", "token": 42},
    {"token": "abc"},
    ["auth"],
])
async def test_a_first_frame_that_is_not_an_auth_frame_is_closed_with_4001(client, alice, first):
    ws = await client.ws_connect("/ws")
    await ws.send_json(first)
    await assert_closed(ws, 4001)


@pytest.mark.parametrize("first", ["not json", b'{"type":"auth"}'])
async def test_a_first_frame_that_is_not_json_text_is_closed_with_4001(client, alice, first):
    ws = await client.ws_connect("/ws")
    await (ws.send_str(first) if isinstance(first, str) else ws.send_bytes(first))
    await assert_closed(ws, 4001)


@pytest.mark.parametrize("how", ["header", "query", "frame"])
async def test_a_deactivated_account_is_refused_with_4003(client, alice, how):
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (alice["bipupu_id"],))
    ws = await connect_with(client, alice["access_token"], how)
    await assert_closed(ws, 4003)


async def test_a_plain_get_without_upgrade_is_400_in_the_error_shape(client, alice):
    resp = await client.get("/ws", headers=bearer(alice))
    await assert_error(resp, 400, "websocket_required")


# Live pushes and replay -------------------------------------------------------------------------

async def test_alice_and_bob_exchange_cards_live_then_bob_catches_up_without_gap_or_duplicate(client, clock,
                                                                                                alice, bob, open_ws):
    await befriend(client, alice, bob)
    await befriend(client, bob, alice)
    alice_ws, bob_ws = await open_ws(alice), await open_ws(bob)

    to_bob = await send_card(client, alice, bob["bipupu_id"], "hello bob")
    assert await receive_card(bob_ws) == to_bob
    to_alice = await send_card(client, bob, alice["bipupu_id"], "hello alice")
    assert await receive_card(alice_ws) == to_alice
    await assert_quiet(bob_ws)  # nobody is pushed their own card
    await assert_quiet(alice_ws)

    await bob_ws.close()
    missed = [await send_card(client, alice, bob["bipupu_id"], f"while you were away {n}") for n in range(3)]
    assert [m["id"] for m in missed] == sorted(m["id"] for m in missed)

    bob_ws = await client.ws_connect("/ws")
    await bob_ws.send_json({"type": "auth", "token": bob["access_token"], "since": to_bob["id"]})
    await expect_auth_ok(bob_ws, bob, clock)
    assert [await receive_card(bob_ws) for _ in range(3)] == missed
    assert await receive_json(bob_ws) == {"type": "replay_done", "count": 3, "has_more": False}

    live = await send_card(client, alice, bob["bipupu_id"], "right after you came back")
    assert await receive_card(bob_ws) == live
    await assert_quiet(bob_ws)  # exactly once
    await close_all(alice_ws, bob_ws)


def replay_done_and_card(frames: list[dict[str, Any]], message_id: str) -> bool:
    """The frames hold replay_done and the card (before it when replayed, after it when live)."""
    return (any(f["type"] == "replay_done" for f in frames)
            and any(f["type"] == "new_message" and f["payload"]["id"] == message_id for f in frames))


async def test_a_card_sent_while_bob_reconnects_arrives_exactly_once(client, clock, alice, bob, monkeypatch):
    await befriend(client, bob, alice)
    seen = await send_card(client, alice, bob["bipupu_id"], "seen")
    missed = [await send_card(client, alice, bob["bipupu_id"], f"missed {n}") for n in range(2)]
    db = client.server.app[keys.db]
    write, reached = db.write, {}

    async def write_and_tell(job):
        reached["queued"].set()  # the card is on its way to the writer
        try:
            return await write(job)
        finally:
            reached["written"].set()  # on disk (or refused): its sender publishes next

    monkeypatch.setattr(db, "write", write_and_tell)
    # The auth frame goes out at each step of the card's way: it lands in the replay or in the live stream.
    for moment in ("sending", "queued", "written", "answered"):
        reached.update(queued=asyncio.Event(), written=asyncio.Event(), answered=asyncio.Event())
        bob_ws = await client.ws_connect("/ws")

        async def authenticate() -> None:
            if moment in reached:
                await asyncio.wait_for(reached[moment].wait(), WAIT)
            await bob_ws.send_json({"type": "auth", "token": bob["access_token"], "since": seen["id"]})

        async def send() -> dict[str, Any]:
            card = await send_card(client, alice, bob["bipupu_id"], "racing")
            reached["answered"].set()
            return card

        _, racing = await asyncio.gather(authenticate(), send())
        await expect_auth_ok(bob_ws, bob, clock)
        frames: list[dict[str, Any]] = []
        while not replay_done_and_card(frames, racing["id"]):
            frames.append(await receive_json(bob_ws))
            assert len(frames) <= len(missed) + 2, frames
        done = [f for f in frames if f["type"] == "replay_done"]
        assert len(done) == 1 and done[0]["has_more"] is False, frames
        cards = [f["payload"] for f in frames if f["type"] == "new_message"]
        assert cards == [*missed, racing]
        assert done[0]["count"] == frames.index(done[0])  # replayed frames are exactly those before it
        await assert_quiet(bob_ws)
        await bob_ws.close()
        missed.append(racing)


async def test_a_card_replayed_before_its_sender_publishes_it_arrives_once(client, clock, alice, bob, monkeypatch,
                                                                           open_ws):
    """Forces the ordering of the race: commit, the replay reads it, the socket starts, then the sender publishes."""
    await befriend(client, bob, alice)
    seen = await send_card(client, alice, bob["bipupu_id"], "seen")
    db = client.server.app[keys.db]
    committed, go_on = asyncio.Event(), asyncio.Event()
    write = db.write

    async def write_then_hold_the_racing_card(job):
        result = await write(job)
        if isinstance(result, tuple) and len(result) == 3 and result[1].get("content") == "racing":
            committed.set()  # on disk: any read from here sees it
            await go_on.wait()  # the sender's continuation, publish included, waits here
        return result

    monkeypatch.setattr(db, "write", write_then_hold_the_racing_card)
    sending = asyncio.create_task(send_card(client, alice, bob["bipupu_id"], "racing"))
    await asyncio.wait_for(committed.wait(), WAIT)
    bob_ws = await open_ws(bob, since=seen["id"])
    racing = await receive_card(bob_ws)
    assert racing["content"] == "racing"
    assert await receive_json(bob_ws) == {"type": "replay_done", "count": 1, "has_more": False}
    go_on.set()  # the socket has started: now the sender publishes
    assert (await asyncio.wait_for(sending, WAIT)) == racing
    await assert_quiet(bob_ws)
    await assert_alive(bob_ws)
    await bob_ws.close()


async def test_since_in_the_query_with_header_auth_replays(client, clock, alice, bob):
    first = await send_card(client, alice, bob["bipupu_id"], "one")
    second = await send_card(client, alice, bob["bipupu_id"], "two")
    ws = await client.ws_connect("/ws", headers=bearer(bob), params={"since": first["id"]})
    await expect_auth_ok(ws, bob, clock)
    assert await receive_card(ws) == second
    assert await receive_json(ws) == {"type": "replay_done", "count": 1, "has_more": False}
    await assert_quiet(ws)
    await ws.close()


async def test_since_the_newest_card_replays_nothing(client, clock, alice, bob, open_ws):
    newest = await send_card(client, alice, bob["bipupu_id"], "one")
    ws = await open_ws(bob, since=newest["id"])
    assert await receive_json(ws) == {"type": "replay_done", "count": 0, "has_more": False}
    await ws.close()


async def test_without_since_nothing_is_replayed(client, alice, bob, open_ws):
    await send_card(client, alice, bob["bipupu_id"], "old news")
    ws = await open_ws(bob)
    await assert_quiet(ws)
    await ws.close()


async def test_replay_leaves_out_cards_of_others_and_deleted_ones(client, clock, alice, bob, carol, open_ws):
    await befriend(client, bob, alice, carol)
    start = await send_card(client, alice, bob["bipupu_id"], "start")
    deleted = await send_card(client, alice, bob["bipupu_id"], "deleted")
    await send_card(client, bob, alice["bipupu_id"], "bob's own card")
    await send_card(client, alice, carol["bipupu_id"], "carol's card")
    kept = await send_card(client, carol, bob["bipupu_id"], "kept")
    resp = await client.delete(f"/messages/{deleted['id']}", headers=bearer(bob))
    assert resp.status == 204
    ws = await open_ws(bob, since=start["id"])
    assert await receive_card(ws) == kept
    assert await receive_json(ws) == {"type": "replay_done", "count": 1, "has_more": False}
    await ws.close()


async def test_since_a_card_deleted_meanwhile_still_replays_what_came_after(client, clock, alice, bob, open_ws):
    seen = await send_card(client, alice, bob["bipupu_id"], "seen, then deleted")
    later = await send_card(client, alice, bob["bipupu_id"], "later")
    resp = await client.delete(f"/messages/{seen['id']}", headers=bearer(bob))
    assert resp.status == 204
    ws = await open_ws(bob, since=seen["id"])
    assert await receive_card(ws) == later
    assert await receive_json(ws) == {"type": "replay_done", "count": 1, "has_more": False}
    await ws.close()


@pytest.mark.parametrize("since", ["nope", "0190a000-0000-7000-8000-00000000000",
                                   "0190a000-0000-7000-8000-00000000000g", "x" * 36])
async def test_a_since_that_is_not_a_message_id_is_closed_with_4001(client, alice, bob, since):
    ws = await client.ws_connect("/ws", headers=bearer(bob), params={"since": since})
    await assert_closed(ws, 4001)
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": bob["access_token"], "since": since})
    await assert_closed(ws, 4001)


@pytest.mark.parametrize("since", [42, ["0190a000-0000-7000-8000-000000000000"], {"id": "x"}])
async def test_a_since_that_is_not_a_string_is_closed_with_4001(client, alice, bob, since):
    ws = await client.ws_connect("/ws")
    await ws.send_json({"type": "auth", "token": bob["access_token"], "since": since})
    await assert_closed(ws, 4001)


async def test_more_than_500_missed_replays_500_and_says_has_more(make_client, clock, open_ws):
    client = await make_client(rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    seen = await send_card(client, alice, bob["bipupu_id"], "seen")
    ids = []
    for chunk in range(0, 501, 60):
        sent = await asyncio.gather(*(send_card(client, alice, bob["bipupu_id"], f"card {n}")
                                      for n in range(chunk, min(chunk + 60, 501))))
        ids += [m["id"] for m in sent]
    ids.sort()
    assert len(set(ids)) == 501

    ws = await open_ws(bob, since=seen["id"])
    replayed = [(await receive_card(ws))["id"] for _ in range(500)]
    assert replayed == ids[:500]
    assert await receive_json(ws) == {"type": "replay_done", "count": 500, "has_more": True}
    await assert_quiet(ws)
    await ws.close()

    ws = await open_ws(bob, since=replayed[-1])  # the next page, as a client would
    assert (await receive_card(ws))["id"] == ids[500]
    assert await receive_json(ws) == {"type": "replay_done", "count": 1, "has_more": False}
    await ws.close()


async def test_two_devices_of_one_user_both_receive_each_card(client, alice, bob, open_ws):
    phone = await open_ws(bob)
    tablet = await open_ws(await login(client, "bob"), frame=True)
    for n in range(3):
        sent = await send_card(client, alice, bob["bipupu_id"], f"card {n}")
        assert await receive_card(phone) == sent
        assert await receive_card(tablet) == sent
    await close_all(phone, tablet)


async def test_cards_sent_concurrently_are_pushed_in_id_order(client, alice, bob, carol, open_ws):
    await befriend(client, bob, alice, carol)
    ws = await open_ws(bob)
    sent = await asyncio.gather(*(send_card(client, sender, bob["bipupu_id"], f"card {n}")
                                  for n in range(12) for sender in (alice, carol)))
    pushed = [await receive_card(ws) for _ in range(len(sent))]
    assert [m["id"] for m in pushed] == sorted(m["id"] for m in sent)
    assert sorted(pushed, key=lambda m: m["id"]) == sorted(sent, key=lambda m: m["id"])
    await assert_quiet(ws)
    await ws.close()


async def test_a_blocked_senders_card_is_accepted_but_never_pushed(client, alice, bob, carol, open_ws):
    resp = await client.post("/blocks", json={"blocked_id": alice["bipupu_id"]}, headers=bearer(bob))
    assert resp.status == 201, await resp.text()
    ws = await open_ws(bob)
    await send_card(client, alice, bob["bipupu_id"], "you blocked me")  # 201, as if delivered
    await assert_quiet(ws)
    from_carol = await send_card(client, carol, bob["bipupu_id"], "not blocked")
    assert await receive_card(ws) == from_carol
    await assert_quiet(ws)
    await ws.close()


async def test_after_unblocking_cards_are_pushed_again(client, alice, bob, open_ws):
    resp = await client.post("/blocks", json={"blocked_id": alice["bipupu_id"]}, headers=bearer(bob))
    assert resp.status == 201
    ws = await open_ws(bob)
    await send_card(client, alice, bob["bipupu_id"], "blocked")
    await assert_quiet(ws)
    resp = await client.delete(f"/blocks/{alice['bipupu_id']}", headers=bearer(bob))
    assert resp.status == 204
    sent = await send_card(client, alice, bob["bipupu_id"], "unblocked")
    assert await receive_card(ws) == sent
    await ws.close()


async def test_contacts_only_pushes_only_cards_from_contacts(client, alice, bob, carol, open_ws):
    resp = await client.put("/me", json={"privacy": "contacts_only"}, headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    await befriend(client, bob, carol)
    ws = await open_ws(bob)
    await send_card(client, alice, bob["bipupu_id"], "from a stranger")  # 201, as if delivered
    await assert_quiet(ws)
    from_carol = await send_card(client, carol, bob["bipupu_id"], "from a contact")
    assert await receive_card(ws) == from_carol
    await assert_quiet(ws)
    await ws.close()


async def test_a_dropped_card_is_not_replayed_either(client, clock, alice, bob, carol, open_ws):
    resp = await client.post("/blocks", json={"blocked_id": alice["bipupu_id"]}, headers=bearer(bob))
    assert resp.status == 201
    start = await send_card(client, carol, bob["bipupu_id"], "start")
    await send_card(client, alice, bob["bipupu_id"], "blocked")
    ws = await open_ws(bob, since=start["id"])
    assert await receive_json(ws) == {"type": "replay_done", "count": 0, "has_more": False}
    await ws.close()


# Frames from the client -------------------------------------------------------------------------

async def test_ping_gets_pong(client, alice, open_ws):
    ws = await open_ws(alice)
    for _ in range(3):
        await ws.send_json({"type": "ping"})
        assert await receive_json(ws) == {"type": "pong"}
    await ws.close()


@pytest.mark.parametrize("text", ["{not json", "", "[1, 2", "{'type': 'ping'}", "null", "42",
                                  '"ping"', '["ping"]'])
async def test_bad_json_text_gets_an_error_frame_and_the_socket_stays_up(client, alice, text, open_ws):
    ws = await open_ws(alice)
    await ws.send_str(text)
    error = await receive_json(ws)
    assert error["type"] == "error" and error["code"] == "bad_json", error
    assert set(error) == {"type", "code", "message"} and isinstance(error["message"], str) and error["message"]
    await assert_alive(ws)
    await ws.close()


async def test_a_binary_frame_gets_bad_json_and_the_socket_stays_up(client, alice, open_ws):
    ws = await open_ws(alice)
    await ws.send_bytes(b'{"type":"ping"}')
    error = await receive_json(ws)
    assert error["type"] == "error" and error["code"] == "bad_json", error
    await assert_alive(ws)
    await ws.close()


@pytest.mark.parametrize("frame", [{"type": "dance"}, {"type": "PING"}, {"type": None}, {"no_type": True},
                                   {"type": "new_message", "payload": {}}])
async def test_an_unknown_type_gets_an_error_frame_and_the_socket_stays_up(client, alice, frame, open_ws):
    ws = await open_ws(alice)
    await ws.send_json(frame)
    error = await receive_json(ws)
    assert error["type"] == "error" and error["code"] == "unknown_type", error
    assert isinstance(error["message"], str) and error["message"]
    await assert_alive(ws)
    await ws.close()


@pytest.mark.parametrize("opener", ["header", "frame"])
async def test_a_second_auth_frame_gets_already_authenticated(client, alice, bob, opener, open_ws):
    ws = await (open_ws(alice) if opener == "header" else open_ws(alice, frame=True))
    await ws.send_json({"type": "auth", "token": bob["access_token"]})  # cannot switch to another account
    error = await receive_json(ws)
    assert error["type"] == "error" and error["code"] == "already_authenticated", error
    await assert_alive(ws)
    sent = await send_card(client, bob, alice["bipupu_id"], "still alice's socket")
    assert await receive_card(ws) == sent
    await ws.close()


async def test_a_frame_over_64_kib_closes_with_1009(client, alice, open_ws):
    ws = await open_ws(alice)
    await ws.send_str(json.dumps({"type": "ping", "pad": "x" * (64 * 1024)}))
    await assert_closed(ws, 1009)


def ping_of(size: int) -> str:
    """A ping frame of exactly `size` bytes."""
    text = json.dumps({"type": "ping", "pad": "x" * (size - len(json.dumps({"type": "ping", "pad": ""})))})
    assert len(text.encode()) == size
    return text


async def test_a_frame_one_byte_over_64_kib_closes_with_1009(client, alice, open_ws):
    ws = await open_ws(alice)
    await ws.send_str(ping_of(64 * 1024 + 1))
    await assert_closed(ws, 1009)


@pytest.mark.parametrize("size", [64 * 1024 - 1, 64 * 1024])
async def test_a_frame_of_up_to_64_kib_is_fine(client, alice, size, open_ws):
    ws = await open_ws(alice)
    await ws.send_str(ping_of(size))  # SPEC §5: only frames *over* 64 KiB are too big
    assert await receive_json(ws) == {"type": "pong"}
    await ws.close()


# Idle, limits, sign-out, shutdown ---------------------------------------------------------------

async def test_a_silent_socket_is_closed_when_idle(make_client, open_ws):
    client = await make_client(ws_idle_timeout_s=0.3)
    alice = await register(client, "alice")
    ws = await open_ws(alice)
    started = time.monotonic()
    await assert_closed(ws, 1000)
    assert 0.25 <= time.monotonic() - started < 1.5


async def test_a_socket_that_pings_is_not_idle(make_client, open_ws):
    client = await make_client(ws_idle_timeout_s=0.3)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    ws = await open_ws(bob)
    started = time.monotonic()
    # Real time: the idle sweep runs on the real clock (a socket's silence is real), so only it can show this.
    while time.monotonic() - started < 0.7:
        await asyncio.sleep(0.1)
        await assert_alive(ws)
    sent = await send_card(client, alice, bob["bipupu_id"], "still here?")
    assert await receive_card(ws) == sent
    await ws.close()


async def test_a_sixth_socket_replaces_the_oldest_with_4008(client, alice, bob, open_ws):
    sockets = [await open_ws(bob) for _ in range(5)]
    other_user = await open_ws(alice)
    sixth = await open_ws(await login(client, "bob"), frame=True)
    await assert_closed(sockets[0], 4008)
    sent = await send_card(client, alice, bob["bipupu_id"], "to all five")
    for ws in [*sockets[1:], sixth]:
        assert await receive_card(ws) == sent
    await assert_alive(other_user)
    await close_all(*sockets[1:], sixth, other_user)


async def test_logout_all_closes_every_socket_of_the_user_with_4003(client, alice, bob, open_ws):
    second = await login(client, "alice")
    phone, tablet, tablet2 = await open_ws(alice), await open_ws(second), await open_ws(second)
    bobs = await open_ws(bob)
    resp = await client.post("/auth/logout", json={"all": True}, headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    for ws in (phone, tablet, tablet2):
        await assert_closed(ws, 4003)
    await assert_alive(bobs)
    signed_in_again = await login(client, "alice")
    sent = await send_card(client, signed_in_again, bob["bipupu_id"], "bob is still connected")
    assert await receive_card(bobs) == sent
    await bobs.close()


async def test_plain_logout_closes_only_that_sessions_sockets(client, alice, bob, open_ws):
    second = await login(client, "alice")
    first_a, first_b, other = await open_ws(alice), await open_ws(alice), await open_ws(second)
    resp = await client.post("/auth/logout", headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    await assert_closed(first_a, 4003)
    await assert_closed(first_b, 4003)
    await assert_alive(other)
    sent = await send_card(client, bob, alice["bipupu_id"], "to the session still signed in")
    assert await receive_card(other) == sent
    await other.close()


async def test_logout_with_a_refresh_token_closes_that_sessions_sockets(client, alice, bob, open_ws):
    second = await login(client, "alice")
    first, other = await open_ws(alice), await open_ws(second)
    resp = await client.post("/auth/logout", json={"refresh_token": alice["refresh_token"]})
    assert resp.status == 204, await resp.text()
    await assert_closed(first, 4003)
    await assert_alive(other)
    await other.close()


async def test_password_change_closes_the_other_sessions_sockets_but_not_its_own(client, alice, bob, open_ws):
    second = await login(client, "alice")
    own, elsewhere = await open_ws(alice), await open_ws(second)
    bobs = await open_ws(bob)
    resp = await client.put("/me/password", json={"old_password": PASSWORD, "new_password": "a new horse"},
                            headers=bearer(alice))
    assert resp.status == 204, await resp.text()
    await assert_closed(elsewhere, 4003)
    await assert_alive(own)
    await assert_alive(bobs)
    sent = await send_card(client, bob, alice["bipupu_id"], "to the session that changed it")
    assert await receive_card(own) == sent
    await close_all(own, bobs)


async def test_server_shutdown_closes_open_sockets_with_1001(client, alice, bob, open_ws):
    sockets = [await open_ws(alice), await open_ws(alice), await open_ws(bob, frame=True)]
    closings = [asyncio.create_task(assert_closed(ws, 1001)) for ws in sockets]  # the phones keep reading
    started = time.monotonic()
    # client.close() would close these sockets from the client side first: stop only the server
    await asyncio.wait_for(client.server.close(), 5)
    await asyncio.gather(*closings)
    assert time.monotonic() - started < 1.5  # a polite close handshake, not the hub's abort after a timeout


async def test_server_shutdown_also_closes_a_socket_still_waiting_for_its_auth_frame_with_1001(make_client):
    client = await make_client(ws_auth_timeout_s=1.0)
    ws = await client.ws_connect("/ws")
    closing_ws = asyncio.create_task(assert_closed(ws, 1001))
    hub = client.server.app[keys.hub]
    await until(lambda: len(hub.waiting) == 1, "the handler waiting for the auth frame")
    started = time.monotonic()
    await asyncio.wait_for(client.server.close(), 5)
    await closing_ws
    assert time.monotonic() - started < 0.9  # told at once, not left to run out its auth timeout


# Slow readers -----------------------------------------------------------------------------------

async def raw_websocket(client, account: dict[str, Any]) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A hand-made WebSocket client with a tiny receive buffer, so it can stop reading for real."""
    host, port = client.server.host, client.server.port
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (host, port)), WAIT)
    reader, writer = await asyncio.open_connection(sock=sock, limit=1024)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write((f"GET /ws HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: Bearer {account['access_token']}\r\n\r\n").encode())
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), WAIT)
    status, *lines = head.decode("latin-1").split("\r\n")
    assert status.startswith("HTTP/1.1 101"), status
    headers = {name.strip().lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest())
    assert headers["sec-websocket-accept"] == accept.decode(), headers
    opcode, payload = await read_frame(reader)
    assert opcode == 0x1 and json.loads(payload)["type"] == "auth_ok", payload
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unfragmented server frame (servers never mask)."""
    first, second = await asyncio.wait_for(reader.readexactly(2), WAIT)
    assert first & 0x80 and not second & 0x80, (first, second)
    length = second & 0x7F
    if length == 126:
        (length,) = struct.unpack("!H", await asyncio.wait_for(reader.readexactly(2), WAIT))
    elif length == 127:
        (length,) = struct.unpack("!Q", await asyncio.wait_for(reader.readexactly(8), WAIT))
    return first & 0x0F, await asyncio.wait_for(reader.readexactly(length), WAIT)


def big_message(number: int, receiver: str) -> dict[str, Any]:
    return {"id": f"0190a000-0000-7000-8000-{number:012d}", "sender_id": "00000002", "receiver_id": receiver,
            "content": f"{number} " + "x" * 60_000, "msg_type": "USER_POSTCARD", "pattern": {},
            "created_at": "2026-09-21T00:00:00Z"}


async def test_a_socket_that_stops_reading_is_closed_4009_and_never_slows_the_others(make_client, open_ws):
    client = await make_client(ws_queue_size=8)
    bob = await register(client, "bob")
    hub = client.server.app[keys.hub]
    reading = await open_ws(bob)
    raw_reader, raw_writer = await raw_websocket(client, await login(client, "bob"))
    try:
        assert len(hub) == 2
        published = 0
        deadline = time.monotonic() + 10
        while len(hub) == 2:
            assert published < 2000 and time.monotonic() < deadline, "the stalled socket was never closed"
            hub.publish(bob["bipupu_id"], big_message(published, bob["bipupu_id"]))
            await asyncio.sleep(0)
            # the reading client keeps up: it has every frame, in order, before the next one is published
            assert (await receive_card(reading))["id"] == big_message(published, "")["id"]
            published += 1
        assert published > 8  # it was the bounded queue that filled, not an early accident
        assert len(hub) == 1  # the stalled socket is detached; the reading one is still there

        # The stalled client starts reading again: what it got is a gap-free prefix, then a 4009 close.
        got = []
        while True:
            opcode, payload = await read_frame(raw_reader)
            if opcode == 0x8:
                break
            assert opcode == 0x1
            got.append(json.loads(payload)["payload"]["id"])
        assert struct.unpack("!H", payload[:2])[0] == 4009, payload
        assert got == [big_message(n, "")["id"] for n in range(len(got))]
        assert len(got) < published
        raw_writer.write(bytes([0x88, 0x82]) + b"\0\0\0\0" + struct.pack("!H", 1000))  # masked close reply

        after = big_message(published, bob["bipupu_id"])
        assert hub.publish(bob["bipupu_id"], after) == 1
        assert await receive_card(reading) == after
    finally:
        raw_writer.close()
        with suppress(ConnectionError):
            await raw_writer.wait_closed()
        await reading.close()


async def test_a_socket_is_closed_with_1013_when_the_database_is_unavailable(client, alice):
    """Upgraded sockets cannot get an HTTP 503: the close code says to come back later."""
    await client.server.app[keys.db].close()
    ws = await client.ws_connect("/ws", headers=bearer(alice))
    msg = await ws.receive(timeout=WAIT)
    assert msg.type == WSMsgType.CLOSE
    assert ws.close_code == 1013
    await ws.close()


async def _closed_with(ws, clock) -> int | None:
    """Let the session check run (it sleeps on the test clock), then read the close code."""
    clock.advance(31)
    msg = await ws.receive(timeout=WAIT)
    assert msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED), msg
    return ws.close_code


async def test_sockets_of_an_account_deactivated_elsewhere_are_closed_with_4003(client, clock, alice, bob, open_ws):
    mine, theirs = await open_ws(alice), await open_ws(bob)
    await db_write(client, "UPDATE users SET is_active = 0 WHERE bipupu_id = ?", (alice["bipupu_id"],))
    assert await _closed_with(mine, clock) == 4003
    await theirs.send_json({"type": "ping"})
    assert (await theirs.receive_json(timeout=WAIT))["type"] == "pong"  # bob's socket is untouched
    await theirs.close()


async def test_sockets_of_a_session_revoked_by_another_process_are_closed_with_4003(client, clock, alice, open_ws):
    """What `run.py reset-password` does from its own process: the sessions are revoked in the database."""
    ws = await open_ws(alice)
    await db_write(client, "UPDATE sessions SET revoked_at = '2026-01-01T00:00:00Z'")
    assert await _closed_with(ws, clock) == 4003
