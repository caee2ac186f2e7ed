"""The BLE relay (SPEC §8, issue 14) end to end: HTTP and WebSocket in, frames on a fake pupu device out.

Bleak's real BleakClient and bleak-retry-connector's establish_connection drive tests/fake_pupu.py,
whose device side parses the chunks, checks the CRC and answers like firmware. Nothing of the relay
or the database is mocked; only the radio is fake. Waits are bounded and event-driven (no sleeps):
the relay's own timeouts are shortened (FAST), since they run on the event loop's clock.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import random
import re
import time
from typing import Any

import pytest

from bipupu_server import keys
from bipupu_server.app import init_app
from bipupu_server.cli import Failure, ble_send, build_parser
from bipupu_server.config import ConfigError, from_environment
from bipupu_server.relay import frames
from bipupu_server.relay.bluetooth import Bluetooth
from bipupu_server.relay.frames import ShowCard, Time
from bipupu_server.relay.link import Timing
from bipupu_server.relay.relay import TEST_SENDER, backoff
from tests.conftest import BOB, bearer, csrf_of, db_rows, receive_card, register, send_card, sign_in, until
from tests.fake_pupu import FakePupu
from tests.processes import FAIL_FAST_S, assert_one_line_failure, run_cli

FAST = Timing(answer_timeout_s=0.2, send_tries=3, busy_delay_s=0.02, busy_max_s=1.0,
              backoff_first_s=0.01, backoff_max_s=0.05)
# The tests of "no Bluetooth here" use the real radio: they need a machine without a D-Bus system bus.
NO_SYSTEM_BUS = not any(os.path.exists(p) for p in ("/run/dbus/system_bus_socket", "/var/run/dbus/system_bus_socket"))
needs_no_bluetooth = pytest.mark.skipif(not NO_SYSTEM_BUS, reason="this machine has a D-Bus system bus: "
                                        "Bluetooth may be there")
CURSOR = "SELECT last_acked_id FROM relay_cursor WHERE owner_id = ?"


def fake_bluetooth(pupu: FakePupu) -> Bluetooth:
    """The radio, with the fake device in reach whenever it is powered on."""
    async def find(target: str):
        assert target in (pupu.name, pupu.address), target
        return pupu.ble_device if pupu.powered else None
    return Bluetooth(find=find, backend=pupu.backend)


@pytest.fixture
def pupu() -> FakePupu:
    return FakePupu()


@pytest.fixture
def relay_server(aiohttp_client, make_config, clock, started_clients):
    """Start a server whose relay drives `pupu` (same data dir each time); BOB, the second user, is the owner."""
    async def start(pupu: FakePupu, timing: Timing = FAST, **overrides: Any):
        config = make_config(ble_device=pupu.name, ble_owner=BOB, **overrides)
        client = await aiohttp_client(init_app(config, clock=clock, bluetooth=fake_bluetooth(pupu), timing=timing))
        started_clients.append(client)
        return client
    return start


async def people(client) -> tuple[dict, dict]:
    alice = await register(client, "alice")
    bob = await register(client, "bob")
    assert bob["bipupu_id"] == BOB
    return alice, bob


def relay_of(client):
    return client.app[keys.relay]


def cards(pupu: FakePupu) -> list[ShowCard]:
    return [f for f in pupu.received if isinstance(f, ShowCard)]


async def stored_cursor(client) -> str | None:
    rows = await db_rows(client, CURSOR, (BOB,))
    return rows[0][0] if rows else None


async def wait_cursor(client, message_id: str) -> None:
    """Until the database holds `message_id` as the newest card the device acknowledged."""
    async def there() -> bool:
        return await stored_cursor(client) == message_id
    await until(there, lambda: f"the stored cursor at {message_id}")


async def wait_state(client, state: str) -> None:
    await until(lambda: relay_of(client).state == state,
                lambda: f"relay state {state} (it is {relay_of(client).state}: {relay_of(client).detail})")


# Connect and show ------------------------------------------------------------------------------

async def test_a_postcard_sent_over_http_arrives_as_correct_frames_on_the_device(relay_server, pupu, clock):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    first = pupu.received[0]
    assert isinstance(first, Time) and first.unix_s == int(clock.time())  # the clock is set on connect
    pattern = {"led_color": "#ff8800", "effect": "breathe", "font": "pixel", "duration_s": 7, "vibrate": True}
    sent = await send_card(client, alice, BOB, "晚安 🌙 see you", pattern=pattern)
    [shown] = await pupu.wait_shown(1)
    assert shown == ShowCard(seq=shown.seq, message_id=sent["id"], msg_type="USER_POSTCARD",
                             sender=alice["bipupu_id"], text="晚安 🌙 see you", led_color="#FF8800",
                             effect="breathe", font="pixel", duration_s=7, vibrate=True)
    # The bytes the device took are exactly the reference encoding, in chunks of the write size.
    frame = frames.encode(shown)
    assert b"".join(pupu.writes).endswith(frame)
    assert all(len(w) <= 20 for w in pupu.writes)
    await wait_cursor(client, sent["id"])


async def test_cards_for_someone_else_do_not_reach_the_device(relay_server, pupu):
    client = await relay_server(pupu)
    alice, bob = await people(client)
    await wait_state(client, "connected")
    await send_card(client, bob, alice["bipupu_id"], "not for the device")
    mine = await send_card(client, alice, BOB, "for bob")
    [shown] = await pupu.wait_shown(1)
    assert shown.message_id == mine["id"] and len(cards(pupu)) == 1


@pytest.mark.parametrize("write_size", [20, 180, 512])
async def test_frames_are_chunked_to_the_characteristic_write_size(relay_server, write_size):
    pupu = FakePupu(write_size=write_size)
    client = await relay_server(pupu, ble_text_bytes=600)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    assert relay_of(client).detail.endswith(f"writes of {write_size} bytes")
    text = "长" * 180 + "!"  # 541 bytes of UTF-8: more than one write even at 512
    before = len(pupu.writes)
    sent = await send_card(client, alice, BOB, text)
    [shown] = await pupu.wait_shown(1)
    assert shown.text == text and shown.message_id == sent["id"] and not shown.truncated
    data = frames.encode(shown)
    card_writes = pupu.writes[before:]
    assert card_writes == [data[i:i + write_size] for i in range(0, len(data), write_size)]
    assert len(card_writes) == math.ceil(len(data) / write_size) >= 2


async def test_text_is_cut_at_a_character_boundary_to_the_device_limit(relay_server, pupu):
    client = await relay_server(pupu, ble_text_bytes=10)
    alice, _bob = await people(client)
    await send_card(client, alice, BOB, "晚安晚安晚安")  # 18 bytes
    [shown] = await pupu.wait_shown(1)
    assert shown.text == "晚安晚" and shown.truncated


# Faults on the link ----------------------------------------------------------------------------

async def test_a_bad_crc_is_nacked_and_the_same_frame_resent(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    pupu.corrupt(1)
    sent = await send_card(client, alice, BOB, "through the noise")
    [shown] = await pupu.wait_shown(1)
    assert shown.message_id == sent["id"]
    await until(lambda: relay_of(client).acked == sent["id"], "the card acknowledged")
    card_frames = [f for f in reversed(relay_of(client).last_frames()) if f["kind"] == "SHOW_CARD"]
    assert card_frames[0]["outcome"] == "bad_crc" and card_frames[-1]["outcome"] == "acknowledged"
    assert card_frames[0]["sequence"] == card_frames[1]["sequence"]  # the same frame again, not a new one
    assert [c.message_id for c in pupu.shown] == [sent["id"]]
    # Mostly the resend is acknowledged at once. When the damaged bytes hold a 0xB7, the device may take it
    # for a frame start and swallow the resend (docs/ble-protocol.md, reassembly step 5); the tries run out
    # and the reconnect that follows resets its buffer. Either way: shown once, on this connection or the next.
    assert {f["outcome"] for f in card_frames[1:-1]} <= {"no_answer"}
    assert pupu.connections == (1 if len(card_frames) <= FAST.send_tries else 2)


async def test_a_lost_ack_times_out_and_the_repeat_is_ignored_by_message_id(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    pupu.stay_silent(1)  # the device shows the card, but its ACK is lost
    sent = await send_card(client, alice, BOB, "once only")
    await until(lambda: relay_of(client).acked == sent["id"], "the card acknowledged")
    assert [c.message_id for c in cards(pupu)] == [sent["id"], sent["id"]]  # sent twice…
    assert [c.message_id for c in pupu.shown] == [sent["id"]]  # …shown once
    outcomes = [f["outcome"] for f in reversed(relay_of(client).last_frames()) if f["kind"] == "SHOW_CARD"]
    assert outcomes == ["no_answer", "acknowledged"]


async def test_no_answer_at_all_gives_the_link_up_and_reconnects(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    pupu.stay_silent(FAST.send_tries)  # every try unanswered: the relay reconnects, then it goes through
    sent = await send_card(client, alice, BOB, "after a reconnect")
    await until(lambda: relay_of(client).acked == sent["id"], "the card acknowledged")
    assert pupu.connections == 2
    assert [c.message_id for c in pupu.shown] == [sent["id"]]


async def test_a_busy_device_is_waited_for_without_using_up_tries(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    pupu.answer_busy(FAST.send_tries + 2)  # more BUSY answers than tries: still no reconnect
    sent = await send_card(client, alice, BOB, "when you are ready")
    [shown] = await pupu.wait_shown(1)
    assert shown.message_id == sent["id"] and pupu.connections == 1


async def test_a_card_the_device_refuses_for_good_is_skipped_and_the_next_shown(relay_server):
    pupu = FakePupu(max_payload=120)  # a small device: a long card is TOO_LONG
    client = await relay_server(pupu, ble_text_bytes=300)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    refused = await send_card(client, alice, BOB, "x" * 200)
    shown = await send_card(client, alice, BOB, "short")
    [card] = await pupu.wait_shown(1)
    assert card.message_id == shown["id"]
    await until(lambda: relay_of(client).acked == shown["id"], "the cursor past both")
    assert relay_of(client).skipped == 1 and relay_of(client).shown == 1
    assert refused["id"] < shown["id"]
    assert any(f["outcome"] == "TOO_LONG" and f["message_id"] == refused["id"]
               for f in relay_of(client).last_frames())


async def test_the_device_dropping_mid_frame_reconnects_and_shows_the_card_once(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    pupu.drop_mid_frame()
    sent = await send_card(client, alice, BOB, "a card long enough to need several chunks of twenty bytes")
    [shown] = await pupu.wait_shown(1)
    assert shown.message_id == sent["id"]
    await until(lambda: relay_of(client).acked == sent["id"], "the card acknowledged")
    assert pupu.connections == 2
    assert [c.message_id for c in pupu.shown] == [sent["id"]]


# Nothing lost, nothing twice ----------------------------------------------------------------------

async def test_three_cards_while_the_device_is_off_show_once_each_in_order(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    first = await send_card(client, alice, BOB, "before")
    await pupu.wait_shown(1)
    pupu.power_off()
    await wait_state(client, "searching")
    missed = [await send_card(client, alice, BOB, f"missed {n}") for n in range(3)]
    assert relay_of(client).waiting == 3
    pupu.power_on()
    await pupu.wait_shown(4)
    await until(lambda: relay_of(client).acked == missed[-1]["id"], "all acknowledged")
    assert [c.message_id for c in pupu.shown] == [first["id"]] + [m["id"] for m in missed]
    assert [c.text for c in pupu.shown[1:]] == ["missed 0", "missed 1", "missed 2"]
    assert len(cards(pupu)) == 4  # no repeat needed, none sent
    await wait_cursor(client, missed[-1]["id"])


async def test_cards_missed_across_a_server_restart_show_once_in_order(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    shown_before = await send_card(client, alice, BOB, "seen")
    await pupu.wait_shown(1)
    await wait_cursor(client, shown_before["id"])
    pupu.power_off()
    await wait_state(client, "searching")
    missed = [await send_card(client, alice, BOB, f"missed {n}") for n in range(3)]
    await client.close()  # the server stops with the three cards unshown
    pupu.power_on()
    restarted = await relay_server(pupu)
    await pupu.wait_shown(4)
    late = await send_card(restarted, alice, BOB, "after the restart")
    await pupu.wait_shown(5)
    assert [c.message_id for c in pupu.shown] == [shown_before["id"], *(m["id"] for m in missed), late["id"]]
    assert len(cards(pupu)) == 5  # the card shown before the restart was not sent again


async def test_catch_up_is_bounded_to_the_newest_n(relay_server, pupu):
    client = await relay_server(pupu, ble_catch_up=2)
    alice, _bob = await people(client)
    pupu.power_off()
    await wait_state(client, "searching")
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(5)]
    pupu.power_on()
    await pupu.wait_shown(2)
    await until(lambda: relay_of(client).acked == sent[-1]["id"], "the newest acknowledged")
    assert [c.message_id for c in pupu.shown] == [sent[3]["id"], sent[4]["id"]]
    assert relay_of(client).skipped == 3


async def test_catch_up_after_a_restart_is_bounded_to_the_newest_n_too(relay_server, pupu):
    client = await relay_server(pupu, ble_catch_up=2)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    pupu.power_off()
    await wait_state(client, "searching")
    sent = [await send_card(client, alice, BOB, f"card {n}") for n in range(4)]
    await client.close()
    pupu.power_on()
    await relay_server(pupu, ble_catch_up=2)
    await pupu.wait_shown(2)
    assert [c.message_id for c in pupu.shown] == [sent[2]["id"], sent[3]["id"]]


@pytest.mark.relay_off
async def test_the_first_start_shows_new_cards_not_the_whole_inbox(make_client, relay_server, pupu):
    plain = await make_client()  # the server ran without a relay before
    alice, _bob = await people(plain)
    old = await send_card(plain, alice, BOB, "from before the relay")
    await plain.close()
    client = await relay_server(pupu)
    await wait_state(client, "connected")
    assert await stored_cursor(client) == old["id"]
    new = await send_card(client, alice, BOB, "new")
    [shown] = await pupu.wait_shown(1)
    assert shown.message_id == new["id"]


async def test_a_card_committed_while_the_relay_reads_its_catch_up_is_shown_once(relay_server, pupu, make_client):
    plain = await make_client()
    alice, _bob = await people(plain)
    await plain.close()
    client = await relay_server(pupu)
    relay = relay_of(client)
    # Before catch-up ends, the hub brings a card the database read will also return: it is shown once.
    sent = await send_card(client, alice, BOB, "raced")
    await pupu.wait_shown(1)
    again = await send_card(client, alice, BOB, "next")
    await pupu.wait_shown(2)
    assert [c.message_id for c in pupu.shown] == [sent["id"], again["id"]]
    await until(lambda: relay.waiting == 0, "the queue empty")


async def test_a_blocked_senders_card_never_reaches_the_device(relay_server, pupu):
    client = await relay_server(pupu)
    alice, bob = await people(client)
    carol = await register(client, "carol")
    await wait_state(client, "connected")
    resp = await client.post("/blocks", json={"blocked_id": alice["bipupu_id"]}, headers=bearer(bob))
    assert resp.status == 201
    await send_card(client, alice, BOB, "you blocked me")  # accepted, silently dropped
    fine = await send_card(client, carol, BOB, "hi from carol")
    [shown] = await pupu.wait_shown(1)
    assert shown.message_id == fine["id"] and len(cards(pupu)) == 1


# BLE never delays HTTP or a push; failures stay inside the relay ------------------------------------

async def test_a_device_that_does_not_answer_delays_no_push_and_no_http_answer(aiohttp_client, make_config, clock,
                                                                                started_clients, pupu, open_ws):
    slow = Timing(answer_timeout_s=30, send_tries=3, backoff_first_s=0.01, backoff_max_s=0.05)
    client = await aiohttp_client(init_app(make_config(ble_device=pupu.name, ble_owner=BOB), clock=clock,
                                           bluetooth=fake_bluetooth(pupu), timing=slow))
    started_clients.append(client)
    alice, bob = await people(client)
    await wait_state(client, "connected")
    ws = await open_ws(bob)
    pupu.stay_silent(10)  # the relay now waits 30 s for each answer
    first = await send_card(client, alice, BOB, "one")
    await pupu.wait_for(lambda: len(cards(pupu)) == 1, what="the card written")
    second = await send_card(client, alice, BOB, "two")  # while the relay waits on the device
    assert (await receive_card(ws))["id"] == first["id"]
    assert (await receive_card(ws))["id"] == second["id"]
    assert (await client.get("/health")).status == 200
    assert relay_of(client).waiting == 2


@needs_no_bluetooth
async def test_without_bluetooth_the_relay_says_unavailable_and_the_server_serves(make_client, caplog):
    caplog.set_level(logging.INFO, logger="bipupu.relay")
    client = await make_client(ble_device="pupu-1", ble_owner=BOB)  # the real radio: this machine has none
    await wait_state(client, "unavailable")
    alice, bob = await people(client)
    await send_card(client, alice, BOB, "still delivered")
    resp = await client.get("/messages", headers=bearer(bob))
    assert resp.status == 200 and len((await resp.json())["messages"]) == 1
    health = await (await client.get("/health")).json()
    assert health["status"] == "ok"
    assert health["relay"]["state"] == "unavailable" and health["relay"]["detail"]
    metrics = await (await client.get("/metrics")).text()
    assert 'bipupu_ble_relay{state="unavailable"} 1.0' in metrics
    assert 'bipupu_ble_relay{state="off"} 0.0' in metrics
    relay_lines = [r for r in caplog.records if r.name == "bipupu.relay"]
    assert [r.levelname for r in relay_lines] == ["WARNING"]  # one clear line, however often it retries
    assert "unavailable" in relay_lines[0].getMessage() and relay_lines[0].exc_info is None


async def test_one_log_line_per_state_change_and_never_a_traceback(relay_server, pupu, caplog):
    caplog.set_level(logging.DEBUG)
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    for _ in range(2):
        pupu.power_off()
        await wait_state(client, "searching")
        # many failed attempts while it is off…
        await until(lambda: relay_of(client).bluetooth is not None and pupu.connections >= 1, "attempts")
        pupu.power_on()
        await wait_state(client, "connected")
    await send_card(client, alice, BOB, "hello")
    await pupu.wait_shown(1)
    lines = [r for r in caplog.records if r.name == "bipupu.relay"]
    states = [r.getMessage().split(":")[0] for r in lines if r.getMessage().startswith("BLE relay")]
    assert states.count("BLE relay connected") == 3
    assert all(r.exc_info is None for r in caplog.records), [r.getMessage() for r in caplog.records if r.exc_info]
    assert all(r.levelno < logging.WARNING for r in lines)  # a device away is expected: not a warning
    messages = [r.getMessage() for r in lines]
    assert all(a != b for a, b in zip(messages, messages[1:]))  # never the same line twice running


async def test_metrics_follow_the_relay_state(relay_server, pupu):
    client = await relay_server(pupu)
    await wait_state(client, "connected")
    metrics = await (await client.get("/metrics")).text()
    assert 'bipupu_ble_relay{state="connected"} 1.0' in metrics and 'bipupu_ble_relay{state="off"} 0.0' in metrics
    pupu.power_off()
    await wait_state(client, "searching")
    metrics = await (await client.get("/metrics")).text()
    assert 'bipupu_ble_relay{state="searching"} 1.0' in metrics and 'state="connected"} 0.0' in metrics
    await until(lambda: "not found" in relay_of(client).detail, "a search that finds nothing")
    health = await (await client.get("/health")).json()
    assert health["status"] == "ok" and health["relay"] == {"state": "searching", "detail": "pupu-1 not found nearby"}


async def test_a_device_that_is_not_a_pupu_is_reported_and_retried(relay_server):
    pupu = FakePupu(service_uuid="0000180d-0000-1000-8000-00805f9b34fb")  # a heart-rate strap, say
    client = await relay_server(pupu)
    await until(lambda: "is it a pupu?" in relay_of(client).detail, "the reason")
    assert relay_of(client).state == "searching"


# The admin relay page and the test card --------------------------------------------------------

async def test_the_admin_relay_page_shows_state_device_frames_and_sends_a_test_card(relay_server, pupu):
    client = await relay_server(pupu)
    alice, _bob = await people(client)
    await wait_state(client, "connected")
    sent = await send_card(client, alice, BOB, "<b>hi</b>")
    await pupu.wait_shown(1)
    await sign_in(client)
    html = await (await client.get("/admin/relay")).text()
    assert 'id="relay-state">connected<' in html and 'id="relay-device">pupu-1<' in html
    assert f'id="relay-owner">{BOB}<' in html and "pupu-1 (AA:BB:CC:DD:EE:01)" in html
    assert sent["id"] in html and "SHOW_CARD" in html and "TIME" in html
    assert re.search(r'<button type="submit" id="relay-test">', html)
    resp = await client.post("/admin/relay/test", data={"csrf": csrf_of(html)}, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/relay?test=queued"
    [_card, test] = await pupu.wait_shown(2)
    assert test.sender == TEST_SENDER and test.msg_type == "COSMIC_BROADCAST" and test.vibrate
    page = await (await client.get(resp.headers["Location"])).text()
    assert 'id="queued"' in page
    rows = await db_rows(client, "SELECT action, target FROM audit_log WHERE action = 'relay.test'")
    assert rows == [("relay.test", test.message_id)]
    assert await db_rows(client, "SELECT count(*) FROM messages") == [(1,)]  # a test card is not stored
    assert await stored_cursor(client) == sent["id"]  # nor does it move the cursor


async def test_a_test_card_while_the_device_is_away_is_refused_and_nothing_queued(relay_server, pupu):
    pupu.power_off()
    client = await relay_server(pupu)
    await wait_state(client, "searching")
    await sign_in(client)
    html = await (await client.get("/admin/relay")).text()
    assert re.search(r'<button type="submit" id="relay-test" disabled>', html)
    resp = await client.post("/admin/relay/test", data={"csrf": csrf_of(html)}, allow_redirects=False)
    assert resp.status == 409
    assert "The device is not connected (searching): no test card was sent." in await resp.text()
    pupu.power_on()
    await wait_state(client, "connected")
    assert not cards(pupu)
    forged = await client.post("/admin/relay/test", data={"csrf": "forged"}, allow_redirects=False)
    assert forged.status == 403
    assert await db_rows(client, "SELECT count(*) FROM audit_log WHERE action = 'relay.test'") == [(0,)]


# Units: backoff and settings ---------------------------------------------------------------------

def test_backoff_doubles_up_to_its_cap_with_jitter():
    timing = Timing(backoff_first_s=2, backoff_max_s=60)
    assert [backoff(n, timing, rng=lambda: 1.0) for n in range(7)] == [2, 4, 8, 16, 32, 60, 60]
    assert [backoff(n, timing, rng=lambda: 0.0) for n in range(3)] == [1, 2, 4]
    rng = random.Random(7).random
    waits = [backoff(10, timing, rng) for _ in range(200)]
    assert all(30 <= w <= 60 for w in waits) and len(set(waits)) > 100
    assert backoff(10_000, timing, rng) <= 60  # no overflow however long the device is away


@pytest.mark.parametrize("env, words", [
    ({"BIPUPU_BLE_DEVICE": "pupu-1"}, "BIPUPU_BLE_OWNER is not"),
    ({"BIPUPU_BLE_OWNER": "00000002"}, "BIPUPU_BLE_DEVICE is not"),
    ({"BIPUPU_BLE_DEVICE": "pupu-1", "BIPUPU_BLE_OWNER": "2"}, "8-digit"),
    ({"BIPUPU_BLE_DEVICE": " ", "BIPUPU_BLE_OWNER": "00000002"}, "name or Bluetooth address"),
    ({"BIPUPU_BLE_SERVICE_UUID": "nus"}, "BIPUPU_BLE_SERVICE_UUID must be a 128-bit UUID"),
    ({"BIPUPU_BLE_NOTIFY_UUID": "6e400003"}, "BIPUPU_BLE_NOTIFY_UUID"),
    ({"BIPUPU_BLE_CATCH_UP": "0"}, "BIPUPU_BLE_CATCH_UP"),
    ({"BIPUPU_BLE_CATCH_UP": "501"}, "BIPUPU_BLE_CATCH_UP"),
    ({"BIPUPU_BLE_TEXT_BYTES": "769"}, "BIPUPU_BLE_TEXT_BYTES"),
])
def test_relay_settings_are_checked_at_start(tmp_path, env, words):
    with pytest.raises(ConfigError, match=words):
        from_environment({"BIPUPU_DATA_DIR": str(tmp_path), **env})


def test_relay_settings_are_read():
    config = from_environment({"BIPUPU_BLE_DEVICE": " AA:BB:CC:DD:EE:01 ", "BIPUPU_BLE_OWNER": "00000002",
                               "BIPUPU_BLE_WRITE_UUID": "6E400002-B5A3-F393-E0A9-E50E24DCCA9F",
                               "BIPUPU_BLE_CATCH_UP": "5", "BIPUPU_BLE_TEXT_BYTES": "64"})
    assert config.ble_device == "AA:BB:CC:DD:EE:01" and config.ble_owner == "00000002"
    assert config.ble_write_uuid == "6e400002-b5a3-f393-e0a9-e50e24dcca9f"
    assert config.ble_service_uuid == "6e400001-b5a3-f393-e0a9-e50e24dcca9e"
    assert (config.ble_catch_up, config.ble_text_bytes) == (5, 64)


# The commands: ble-scan and ble-send ---------------------------------------------------------------

@needs_no_bluetooth
@pytest.mark.parametrize("args", [["ble-scan", "--timeout", "3"], ["ble-send", "hello", "--device", "pupu-1"]])
def test_the_commands_end_with_one_clear_line_when_there_is_no_bluetooth(tmp_path, args):
    started = time.monotonic()
    result = run_cli(tmp_path, *args, timeout=FAIL_FAST_S)
    line = assert_one_line_failure(result, 1)
    assert "no usable Bluetooth" in line
    assert time.monotonic() - started < FAIL_FAST_S


@pytest.mark.parametrize("args, words", [
    (["ble-scan", "--timeout", "0"], "between 1 and 60"),
    (["ble-scan", "--timeout", "soon"], "not a number"),
    (["ble-send"], "text"),
])
def test_the_commands_refuse_bad_arguments_with_one_line(tmp_path, args, words):
    line = assert_one_line_failure(run_cli(tmp_path, *args, timeout=FAIL_FAST_S), 2, "run.py")
    assert words in line


def test_ble_send_needs_a_device(tmp_path):
    line = assert_one_line_failure(run_cli(tmp_path, "ble-send", "hello", timeout=FAIL_FAST_S), 1)
    assert "--device" in line and "BIPUPU_BLE_DEVICE" in line


def send_args(text: str, device: str | None = "pupu-1") -> argparse.Namespace:
    return build_parser().parse_args(["ble-send", text, *(["--device", device] if device else [])])


async def test_ble_send_shows_one_test_card_on_the_device(pupu, capsys, monkeypatch):
    monkeypatch.setenv("BIPUPU_BLE_TEXT_BYTES", "11")
    assert await ble_send(send_args("你好 from the box"), bluetooth=fake_bluetooth(pupu), timing=FAST) == 0
    assert isinstance(pupu.received[0], Time)
    [card] = pupu.shown
    assert card.text == "你好 from" and card.truncated and card.sender == TEST_SENDER
    assert not pupu.connected  # it lets go, so that the server's relay can connect
    assert capsys.readouterr().out == "shown on pupu-1: '你好 from' (cut to the device's limit)\n"


async def test_ble_send_when_the_device_is_away_says_so(pupu):
    pupu.power_off()
    with pytest.raises(Failure, match="pupu-1 not found nearby .*admin relay page"):
        await ble_send(send_args("hello"), bluetooth=fake_bluetooth(pupu), timing=FAST)


async def test_ble_send_when_the_device_refuses_the_card(capsys):
    pupu = FakePupu(max_payload=40)
    with pytest.raises(Failure, match="did not take the card.*TOO_LONG"):
        await ble_send(send_args("a card too long for this small device"), bluetooth=fake_bluetooth(pupu),
                       timing=FAST)
    assert not pupu.shown and not pupu.connected


# Finding the device when it is already connected (so it does not advertise) -------------------------

async def test_a_device_already_connected_is_found_by_name_without_a_scan(monkeypatch):
    """BlueZ's view as bleak-retry-connector caches it: a connected device is taken from there, not a scan."""
    from bleak_retry_connector import bluez

    from bipupu_server.relay import bluetooth

    path = "/org/bluez/hci0/dev_AA_BB_CC_DD_EE_01"
    props = {"Address": "AA:BB:CC:DD:EE:01", "Alias": "pupu-1", "Name": "pupu-1", "Connected": True}
    others = {"/org/bluez/hci0/dev_11_22_33_44_55_66": {"org.bluez.Device1": {
        "Address": "11:22:33:44:55:66", "Alias": "pupu-1", "Name": "pupu-1", "Connected": False}}}

    async def properties():
        return {**others, path: {"org.bluez.Device1": props}}

    async def no_scan(*args, **kwargs):
        raise AssertionError("scanned")

    monkeypatch.setattr(bluez, "_get_properties", properties)
    monkeypatch.setattr(bluetooth.BleakScanner, "find_device_by_name", no_scan)
    device = await bluetooth.find_device("pupu-1")
    assert device.address == "AA:BB:CC:DD:EE:01" and device.details["path"] == path
    assert bluetooth.describe(device) == "pupu-1 (AA:BB:CC:DD:EE:01)"


def test_names_and_addresses_are_told_apart():
    from bipupu_server.relay.bluetooth import is_address

    assert is_address("AA:BB:CC:DD:EE:01") and is_address("aa:bb:cc:dd:ee:01")
    assert is_address("6E400001-B5A3-F393-E0A9-E50E24DCCA9E")  # macOS names devices by UUID
    assert not is_address("pupu-1") and not is_address("AA:BB:CC:DD:EE") and not is_address("AA:BB:CC:DD:EE:01 ")


async def test_ble_scan_lists_name_address_and_rssi_strongest_first(monkeypatch, capsys):
    """Bleak's scanner is the one thing replaced here: what it found, as it returns it."""
    from bleak.backends.device import BLEDevice
    from bleak.backends.scanner import AdvertisementData

    from bipupu_server.cli import ble_scan
    from bipupu_server.relay import bluetooth

    def seen(address: str, name: str | None, local_name: str | None, rssi: int):
        adv = AdvertisementData(local_name=local_name, manufacturer_data={}, service_data={}, service_uuids=[],
                                tx_power=None, rssi=rssi, platform_data=())
        return address, (BLEDevice(address, name, {}), adv)

    async def discover(timeout: float, return_adv: bool):
        assert return_adv and timeout == 3
        return dict([seen("11:22:33:44:55:66", None, None, -90), seen("AA:BB:CC:DD:EE:01", "pupu-1", "pupu-1", -48),
                     seen("AA:BB:CC:DD:EE:02", None, "pupu-living-room", -61)])

    monkeypatch.setattr(bluetooth.BleakScanner, "discover", discover)
    assert await ble_scan(3) == 0
    assert capsys.readouterr().out.splitlines() == [
        "NAME              ADDRESS            RSSI",
        "pupu-1            AA:BB:CC:DD:EE:01  -48",
        "pupu-living-room  AA:BB:CC:DD:EE:02  -61",
        "?                 11:22:33:44:55:66  -90",
    ]

    async def nothing(timeout: float, return_adv: bool):
        return {}

    monkeypatch.setattr(bluetooth.BleakScanner, "discover", nothing)
    assert await ble_scan(3) == 0
    assert capsys.readouterr().out == "no Bluetooth LE device advertised within 3 s\n"


async def test_a_bug_in_one_attempt_is_logged_with_its_traceback_and_the_relay_carries_on(aiohttp_client, make_config,
                                                                                          clock, started_clients, pupu,
                                                                                          caplog):
    calls = []

    async def find(target: str):
        calls.append(target)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return pupu.ble_device

    client = await aiohttp_client(init_app(make_config(ble_device=pupu.name, ble_owner=BOB), clock=clock,
                                           bluetooth=Bluetooth(find=find, backend=pupu.backend), timing=FAST))
    started_clients.append(client)
    await wait_state(client, "connected")
    [error] = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert error.exc_info is not None and "unexpected error" in error.getMessage()
