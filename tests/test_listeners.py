"""Listeners of the hub other than sockets (the BLE relay's kind), and Mailbox.since, the one catch-up read.

A listener is a plain callback: `hub.subscribe(bipupu_id, callback)` returns its unsubscribe.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from aiohttp import WSMsgType

from bipupu_server import keys
from bipupu_server.hub import Hub, Socket
from bipupu_server.protocol import GOING_AWAY, REPLACED, SIGNED_OUT
from tests.conftest import WAIT, bearer, receive_card, receive_json, register, send_card, until

ALICE, BOB = "00000002", "00000003"
FORTUNE = "cosmic.fortune"
MESSAGE_KEYS = {"id", "sender_id", "receiver_id", "content", "msg_type", "pattern", "created_at"}


async def befriend(client, owner: dict[str, Any], *others: dict[str, Any]) -> None:
    """Make `others` contacts of owner, so they may send more than a stranger's daily few."""
    for other in others:
        resp = await client.post("/contacts", json={"contact_id": other["bipupu_id"]}, headers=bearer(owner))
        assert resp.status == 201, await resp.text()


async def block(client, blocker: dict[str, Any], blocked: dict[str, Any]) -> None:
    resp = await client.post("/blocks", json={"blocked_id": blocked["bipupu_id"]}, headers=bearer(blocker))
    assert resp.status == 201, await resp.text()


async def delete(client, owner: dict[str, Any], card: dict[str, Any]) -> None:
    resp = await client.delete(f"/messages/{card['id']}", headers=bearer(owner))
    assert resp.status == 204, await resp.text()


async def rest_page(client, account: dict[str, Any], **query: Any) -> dict[str, Any]:
    resp = await client.get("/messages", params={k: str(v) for k, v in query.items()}, headers=bearer(account))
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def replayed(open_ws, account: dict[str, Any], since: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """What /ws replays after `since`: the cards, and the replay_done frame."""
    ws = await open_ws(account, since=since)
    cards = []
    while (data := await receive_json(ws))["type"] == "new_message":
        cards.append(data["payload"])
    assert data["type"] == "replay_done", data
    await ws.close()
    return cards, data


async def assert_alive(ws) -> None:
    await ws.send_json({"type": "ping"})
    assert await receive_json(ws) == {"type": "pong"}


def card(number: int, receiver: str = BOB) -> dict[str, Any]:
    return {"id": f"0190a000-0000-7000-8000-{number:012d}", "sender_id": ALICE, "receiver_id": receiver,
            "content": f"card {number}", "msg_type": "USER_POSTCARD", "pattern": {},
            "created_at": "2026-09-21T00:00:00Z"}


class Peer:
    """The far end of a hub Socket, for the tests without an app: records frames and closes."""

    def __init__(self) -> None:
        self.frames: list[str] = []
        self.closes: list[int] = []

    async def send_str(self, data: str) -> None:
        self.frames.append(data)

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closes.append(code)
        return True


def live_socket(hub: Hub, bipupu_id: str, session_id: str = "s1") -> tuple[Socket, Peer]:
    peer = Peer()
    sock = Socket(peer, bipupu_id, session_id, queue_size=hub.queue_size)
    hub.attach(sock)
    assert sock.start([], None)
    return sock, peer


# Listeners in a running app -------------------------------------------------------------------

async def test_a_listener_gets_each_committed_card_of_its_user_in_id_order(client, alice, bob):
    await befriend(client, bob, alice)
    got: list[dict[str, Any]] = []
    client.server.app[keys.hub].subscribe(BOB, got.append)
    one = await send_card(client, alice, BOB, "one")
    await send_card(client, bob, ALICE, "not bob's inbox")
    rest = await asyncio.gather(*(send_card(client, alice, BOB, f"card {n}") for n in range(8)))
    assert got[0] == one
    assert sorted(got[1:], key=lambda m: m["id"]) == sorted(rest, key=lambda m: m["id"])
    assert [m["id"] for m in got] == sorted(m["id"] for m in got)  # pushed in id order, whatever the send order
    assert all(set(m) == MESSAGE_KEYS for m in got)


async def test_unsubscribe_stops_delivery_and_a_second_call_is_harmless(client, alice, bob):
    got: list[dict[str, Any]] = []
    unsubscribe = client.server.app[keys.hub].subscribe(BOB, got.append)
    first = await send_card(client, alice, BOB, "heard")
    unsubscribe()
    await send_card(client, alice, BOB, "not heard")
    unsubscribe()
    assert got == [first]


async def test_a_listener_and_a_socket_of_the_same_user_both_get_the_card(client, alice, bob, open_ws):
    got: list[dict[str, Any]] = []
    client.server.app[keys.hub].subscribe(BOB, got.append)
    ws = await open_ws(bob)
    sent = await send_card(client, alice, BOB, "to both")
    assert await receive_card(ws) == sent
    assert got == [sent]
    await ws.close()


async def test_a_raising_listener_is_logged_once_and_stops_no_one(client, alice, bob, open_ws, caplog):
    await befriend(client, bob, alice)
    hub = client.server.app[keys.hub]
    calls: list[str] = []

    def broken(message: dict[str, Any]) -> None:
        calls.append(message["id"])
        raise RuntimeError("the relay's bug")

    got: list[dict[str, Any]] = []
    hub.subscribe(BOB, broken)
    hub.subscribe(BOB, got.append)
    ws = await open_ws(bob)
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(3)]
    assert [await receive_card(ws) for _ in sent] == sent
    assert got == sent
    assert calls == [m["id"] for m in sent]  # still listening: a later card may go through
    failures = [r for r in caplog.records if r.name == "bipupu_server.hub" and r.levelno >= logging.WARNING]
    assert len(failures) == 1, failures
    assert failures[0].exc_info is not None  # the one traceback there is
    await ws.close()


async def test_listeners_are_not_sockets_for_the_cap_the_count_or_the_closes(alice_and_bob, open_ws):
    client, alice, bob = alice_and_bob
    hub = client.server.app[keys.hub]
    got: list[dict[str, Any]] = []
    for _ in range(3):
        hub.subscribe(BOB, got.append)
    phone, tablet = await open_ws(bob), await open_ws(bob)  # the cap is 2 sockets: neither is replaced
    await assert_alive(phone)
    await assert_alive(tablet)
    assert hub.sockets_of(BOB) == 2 and len(hub) == 2
    assert hub.close_user(BOB, SIGNED_OUT, "signed out by an admin") == 2
    for ws in (phone, tablet):
        msg = await ws.receive(timeout=WAIT)
        assert msg.type == WSMsgType.CLOSE and msg.data == SIGNED_OUT
        await ws.close()
    sent = await send_card(client, alice, BOB, "still heard")
    assert got == [sent] * 3


@pytest.fixture
async def alice_and_bob(make_client):
    client = await make_client(ws_max_per_user=2)
    return client, await register(client, "alice"), await register(client, "bob")


async def test_a_third_socket_still_replaces_the_oldest_with_listeners_about(alice_and_bob, open_ws):
    client, _, bob = alice_and_bob
    hub = client.server.app[keys.hub]
    hub.subscribe(BOB, lambda message: None)
    oldest, *newer = await open_ws(bob), await open_ws(bob), await open_ws(bob)
    msg = await oldest.receive(timeout=WAIT)
    assert msg.type == WSMsgType.CLOSE and msg.data == REPLACED
    await until(lambda: hub.sockets_of(BOB) == 2, "two sockets left")
    for ws in (oldest, *newer):
        await ws.close()


async def test_a_service_reply_and_a_broadcast_reach_a_listener_as_the_mailbox_shows_them(client, alice):
    got: list[dict[str, Any]] = []
    client.server.app[keys.hub].subscribe(ALICE, got.append)
    await send_card(client, alice, FORTUNE, "TD")
    sent = await client.server.app[keys.broadcaster].broadcast_now(FORTUNE, "meteors tonight", {"effect": "flash"})
    assert sent == 1
    assert [m["msg_type"] for m in got] == ["COSMIC_BROADCAST", "COSMIC_BROADCAST"]
    assert got[1]["content"] == "meteors tonight" and got[1]["pattern"] == {"effect": "flash"}
    assert (await rest_page(client, alice, direction="received"))["messages"] == got[::-1]


# Listeners and the hub alone ------------------------------------------------------------------

async def test_publish_counts_listeners_and_sockets_and_sockets_share_one_frame():
    hub = Hub()
    socks = [live_socket(hub, BOB, f"s{n}") for n in range(2)]
    got: list[dict[str, Any]] = []
    hub.subscribe(BOB, got.append)
    message = card(1)
    assert hub.publish(BOB, message) == 3
    assert got == [message] and got[0] is message  # the dict itself: a listener encodes what it needs
    await until(lambda: all(peer.frames for _, peer in socks), "a frame on each socket")
    assert socks[0][1].frames[0] is socks[1][1].frames[0]  # encoded once for every socket
    assert hub.publish(ALICE, card(2, ALICE)) == 0
    for sock, _ in socks:
        await sock.stop()


async def test_a_listener_gets_each_id_once_and_never_an_older_one():
    hub = Hub()
    got: list[str] = []
    hub.subscribe(BOB, lambda message: got.append(message["id"]))
    for number in (1, 2, 2, 1, 3):
        hub.publish(BOB, card(number))
    assert got == [card(n)["id"] for n in (1, 2, 3)]


async def test_a_listener_unsubscribed_by_another_mid_publish_gets_nothing_more():
    hub = Hub()
    got: list[str] = []
    later: list[Any] = []
    hub.subscribe(BOB, lambda message: later[0]())
    later.append(hub.subscribe(BOB, lambda message: got.append(message["id"])))
    hub.publish(BOB, card(1))
    hub.publish(BOB, card(2))
    assert got == []


async def test_a_listener_may_unsubscribe_itself_while_it_is_called():
    hub = Hub()
    got: list[str] = []
    unsubscribe: list[Any] = []

    def once(message: dict[str, Any]) -> None:
        got.append(message["id"])
        unsubscribe[0]()

    unsubscribe.append(hub.subscribe(BOB, once))
    hub.publish(BOB, card(1))
    hub.publish(BOB, card(2))
    assert got == [card(1)["id"]]


async def test_closing_sockets_leaves_listeners_listening():
    hub = Hub()
    got: list[str] = []
    unsubscribe = hub.subscribe(BOB, lambda message: got.append(message["id"]))
    sock, peer = live_socket(hub, BOB, "bob-phone")
    assert hub.close_sessions(["bob-phone"], SIGNED_OUT, "signed out") == 1
    assert hub.close_user(BOB, SIGNED_OUT, "deactivated") == 0
    await asyncio.wait_for(hub.close_all(), WAIT)
    assert peer.closes == [SIGNED_OUT]
    assert len(hub) == 0 and hub.sockets_of(BOB) == 0
    assert hub.publish(BOB, card(1)) == 1
    unsubscribe()  # its owner's own cleanup, after the hub's
    assert hub.publish(BOB, card(2)) == 0
    assert got == [card(1)["id"]]
    await sock.stop()


async def test_close_all_with_only_listeners_closes_nothing():
    hub = Hub()
    hub.subscribe(BOB, lambda message: None)
    sock, peer = live_socket(hub, ALICE)
    await asyncio.wait_for(hub.close_all(), WAIT)
    assert peer.closes == [GOING_AWAY]
    await sock.stop()


# Mailbox.since: the one catch-up read ---------------------------------------------------------

@pytest.fixture
async def carol(client, alice, bob) -> dict[str, Any]:
    return await register(client, "carol")


async def test_since_is_what_the_websocket_replays(client, alice, bob, carol, open_ws):
    await befriend(client, bob, alice, carol)
    start = await send_card(client, alice, BOB, "start")
    cards = [await send_card(client, sender, BOB, f"card {n}") for n, sender in enumerate([alice, carol] * 3)]
    await send_card(client, bob, ALICE, "bob's own card")
    await send_card(client, alice, carol["bipupu_id"], "carol's card")
    replay, done = await replayed(open_ws, bob, start["id"])
    assert replay == cards
    assert done == {"type": "replay_done", "count": len(cards), "has_more": False}
    assert await client.server.app[keys.mailbox].since(BOB, start["id"]) == replay


async def test_since_none_starts_at_the_first_card_and_limit_cuts_it(client, alice, bob):
    await befriend(client, bob, alice)
    cards = [await send_card(client, alice, BOB, f"card {n}") for n in range(5)]
    mailbox = client.server.app[keys.mailbox]
    assert await mailbox.since(BOB, None) == cards
    assert await mailbox.since(BOB, None, 2) == cards[:2]
    assert await mailbox.since(BOB, cards[1]["id"], 2) == cards[2:4]
    assert await mailbox.since(BOB, cards[-1]["id"]) == []
    newest_first = (await rest_page(client, bob))["messages"]
    assert newest_first == cards[::-1]


async def test_since_leaves_out_a_blocked_senders_dropped_card_and_deleted_cards(client, alice, bob, carol,
                                                                                  open_ws):
    await befriend(client, bob, carol)
    start = await send_card(client, carol, BOB, "start")
    deleted = await send_card(client, carol, BOB, "deleted")
    await block(client, bob, alice)
    dropped = await send_card(client, alice, BOB, "blocked")  # 201, as if delivered
    kept = await send_card(client, carol, BOB, "kept")
    await delete(client, bob, deleted)
    mailbox = client.server.app[keys.mailbox]
    assert await mailbox.since(BOB, start["id"]) == [kept]
    assert await mailbox.since(BOB, None) == [start, kept]
    assert await mailbox.since(ALICE, None, direction="sent") == [dropped]  # its sender still sees it sent
    assert (await replayed(open_ws, bob, start["id"]))[0] == [kept]


async def test_since_and_the_rest_since_page_are_one_read(client, alice, bob, carol):
    await befriend(client, bob, alice, carol)
    await befriend(client, alice, bob)
    start = await send_card(client, alice, BOB, "start")
    for n in range(3):
        await send_card(client, alice, BOB, f"from alice {n}")
        await send_card(client, carol, BOB, f"from carol {n}", msg_type="VOICE_TRANSCRIPT")
        await send_card(client, bob, ALICE, f"to alice {n}")
    mailbox = client.server.app[keys.mailbox]
    for query in ({}, {"limit": 2}, {"direction": "sent"}, {"direction": "all", "limit": 4},
                  {"peer": carol["bipupu_id"]}, {"msg_type": "VOICE_TRANSCRIPT"},
                  {"direction": "all", "peer": ALICE, "limit": 3}):
        limit = query.get("limit", 50)
        filters = {k: v for k, v in query.items() if k != "limit"}
        views = await mailbox.since(BOB, start["id"], limit + 1, **filters)
        page = await rest_page(client, bob, since=start["id"], **query)
        assert page == {"messages": views[:limit], "has_more": len(views) > limit}, query
        assert page["messages"], query

