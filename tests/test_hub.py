"""bipupu_server.hub: fan-out to bounded per-socket queues, replacement, slow peers, shutdown.

The peer on the other end of each socket is a small in-test Channel (what a WebSocketResponse
offers the hub): it records what it is sent and how it is closed, and can play a stalled phone.
"""

from __future__ import annotations

import asyncio
import json
import time

from bipupu_server.hub import Hub, Pacer, Socket
from bipupu_server.protocol import GOING_AWAY, REPLACED, SIGNED_OUT, TOO_SLOW, frame, message_frame
from tests.conftest import until

ALICE, BOB = "00000002", "00000003"


class Channel:
    """A peer: records sent frames and close codes; `stall_send`/`stall_close` make it hang forever."""

    def __init__(self, *, stall_send: bool = False, stall_close: bool = False):
        self.frames: list[str] = []
        self.closes: list[int] = []
        self.stall_send = stall_send
        self.stall_close = stall_close
        self.sent = asyncio.Event()

    async def send_str(self, data: str) -> None:
        if self.stall_send:
            await asyncio.Event().wait()
        self.frames.append(data)
        self.sent.set()

    async def close(self, *, code: int = 1000, message: bytes = b"") -> bool:
        self.closes.append(code)
        if self.stall_close:
            await asyncio.Event().wait()
        return True

    def messages(self) -> list[dict]:
        return [json.loads(f) for f in self.frames]

    def ids(self) -> list[str]:
        return [m["payload"]["id"] for m in self.messages() if m["type"] == "new_message"]


def card(number: int, receiver: str = BOB) -> dict:
    return {"id": f"0190a000-0000-7000-8000-{number:012d}", "sender_id": ALICE, "receiver_id": receiver,
            "content": f"card {number}", "msg_type": "USER_POSTCARD", "pattern": {},
            "created_at": "2026-09-21T00:00:00Z"}


def live_socket(hub: Hub, bipupu_id: str, session_id: str = "s1", channel: Channel | None = None,
                **kwargs) -> tuple[Socket, Channel]:
    """A socket attached to the hub and started (auth done, nothing to replay)."""
    channel = channel or Channel()
    sock = Socket(channel, bipupu_id, session_id, queue_size=kwargs.pop("queue_size", hub.queue_size), **kwargs)
    hub.attach(sock)
    assert sock.start([], None)
    return sock, channel


async def settle(*channels: Channel, count: int) -> None:
    """Let writer tasks run until every channel holds `count` frames (bounded)."""
    await until(lambda: all(len(c.frames) >= count for c in channels),
                lambda: f"{count} frames on each channel, not {[len(c.frames) for c in channels]}")


async def let_writers_run() -> None:
    """Give every writer task its turns: a Channel never suspends, so one turn sends all that was queued."""
    for _ in range(3):
        await asyncio.sleep(0)


async def finished(*socks: Socket) -> None:
    await asyncio.wait_for(asyncio.gather(*(s.closed.wait() for s in socks)), 2)


async def stop_all(*socks: Socket) -> None:
    for sock in socks:
        await sock.stop()


# publish ----------------------------------------------------------------------------------------

async def test_publish_reaches_every_socket_of_the_user_only():
    hub = Hub()
    phone, phone_ch = live_socket(hub, BOB, "s1")
    tablet, tablet_ch = live_socket(hub, BOB, "s2")
    other, other_ch = live_socket(hub, ALICE, "s3")
    assert hub.publish(BOB, card(1)) == 2
    await settle(phone_ch, tablet_ch, count=1)
    await let_writers_run()
    assert phone_ch.messages() == [{"type": "new_message", "payload": card(1)}]
    assert tablet_ch.frames == phone_ch.frames
    assert other_ch.frames == []
    await stop_all(phone, tablet, other)


async def test_publish_encodes_the_frame_once_for_all_sockets():
    hub = Hub()
    socks = [live_socket(hub, BOB, f"s{i}") for i in range(3)]
    hub.publish(BOB, card(1))
    channels = [ch for _, ch in socks]
    await settle(*channels, count=1)
    first = channels[0].frames[0]
    assert all(ch.frames[0] is first for ch in channels)  # the very same str object, not three encodings
    assert first == message_frame(card(1))
    await stop_all(*(s for s, _ in socks))


async def test_publish_to_a_user_without_sockets_takes_nothing():
    hub = Hub()
    sock, channel = live_socket(hub, ALICE)
    assert hub.publish(BOB, card(1)) == 0
    await let_writers_run()
    assert channel.frames == []
    await sock.stop()


async def test_publish_keeps_id_order_per_socket():
    hub = Hub()
    sock, channel = live_socket(hub, BOB)
    for n in range(1, 21):
        hub.publish(BOB, card(n))
    await settle(channel, count=20)
    assert channel.ids() == [card(n)["id"] for n in range(1, 21)]
    await sock.stop()


# slow peers -------------------------------------------------------------------------------------

async def test_a_socket_with_a_full_queue_is_detached_and_closed_4009_while_others_keep_receiving():
    hub = Hub(queue_size=4)
    stalled, stalled_ch = live_socket(hub, BOB, "s1", Channel(stall_send=True))
    healthy, healthy_ch = live_socket(hub, BOB, "s2")
    taken = []
    for n in range(1, 7):
        taken.append(hub.publish(BOB, card(n)))
        await asyncio.sleep(0)  # writers run: the healthy one drains, the stalled one hangs in send_str
    # the stalled writer holds card 1 in send_str, its queue takes 2..5, card 6 overflows it
    assert taken == [2, 2, 2, 2, 2, 1]
    await finished(stalled)
    assert stalled_ch.closes == [TOO_SLOW]
    assert stalled.close_code == TOO_SLOW
    assert len(hub) == 1
    for n in range(7, 10):
        assert hub.publish(BOB, card(n)) == 1
    await settle(healthy_ch, count=9)
    assert healthy_ch.ids() == [card(n)["id"] for n in range(1, 10)]
    assert healthy_ch.closes == []
    await stop_all(stalled, healthy)


async def test_a_slow_socket_never_delays_publish():
    hub = Hub(queue_size=2)
    stalled, _ = live_socket(hub, BOB, "s1", Channel(stall_send=True))
    started = time.monotonic()
    for n in range(1, 50):
        hub.publish(BOB, card(n))  # synchronous: it cannot wait on a peer at all
    assert time.monotonic() - started < 0.5
    assert len(hub) == 0
    await finished(stalled)
    await stalled.stop()


# replacement ------------------------------------------------------------------------------------

async def test_attach_beyond_max_per_user_closes_the_oldest_with_4008():
    hub = Hub(max_per_user=3)
    socks = [live_socket(hub, BOB, f"s{i}") for i in range(3)]
    alice_sock, alice_ch = live_socket(hub, ALICE, "a1")
    newest, newest_ch = live_socket(hub, BOB, "s3")
    oldest, oldest_ch = socks[0]
    await finished(oldest)
    assert oldest_ch.closes == [REPLACED]
    assert [ch.closes for _, ch in socks[1:]] == [[], []]
    assert alice_ch.closes == [] and newest_ch.closes == []
    assert len(hub) == 4
    assert hub.publish(BOB, card(1)) == 3
    await settle(socks[1][1], socks[2][1], newest_ch, count=1)
    await let_writers_run()
    assert oldest_ch.frames == []
    await stop_all(*(s for s, _ in socks), alice_sock, newest)


# start(): the handshake between replay and live frames ------------------------------------------

async def test_frames_held_before_start_follow_the_first_frames_without_replayed_duplicates():
    hub = Hub()
    channel = Channel()
    sock = Socket(channel, BOB, "s1", queue_size=16)
    hub.attach(sock)
    for n in (1, 2, 3, 4):  # published while the replay was being read from the database
        assert hub.publish(BOB, card(n)) == 1
    await let_writers_run()
    assert channel.frames == []  # nothing goes out before auth_ok
    auth_ok = frame("auth_ok", bipupu_id=BOB, server_time="2026-09-21T00:00:00Z")
    replay = [message_frame(card(n)) for n in (1, 2)]  # the replay already covers 1 and 2
    done = frame("replay_done", count=2, has_more=False)
    assert sock.start([auth_ok, *replay, done], replayed_up_to=card(2)["id"])
    hub.publish(BOB, card(5))
    await settle(channel, count=7)
    await let_writers_run()
    kinds = [m["type"] for m in channel.messages()]
    assert kinds == ["auth_ok", "new_message", "new_message", "replay_done", "new_message", "new_message",
                     "new_message"]
    assert channel.ids() == [card(n)["id"] for n in (1, 2, 3, 4, 5)]
    await sock.stop()


async def test_a_replayed_card_published_after_start_is_not_sent_again():
    # The ordering of the race: the card commits, the replay reads it, start() ends the held
    # phase, and only then does its sender publish it.
    hub = Hub()
    channel = Channel()
    sock = Socket(channel, BOB, "s1", queue_size=16)
    hub.attach(sock)
    assert sock.start([message_frame(card(1)), message_frame(card(2))], replayed_up_to=card(2)["id"])
    assert hub.publish(BOB, card(2)) == 1  # taken (the socket is fine), but already on its way
    assert hub.publish(BOB, card(3)) == 1
    assert hub.publish(BOB, card(3)) == 1  # published twice: still sent once
    await settle(channel, count=3)
    await let_writers_run()
    assert channel.ids() == [card(n)["id"] for n in (1, 2, 3)]
    await sock.stop()


async def test_without_since_every_held_frame_is_delivered_after_auth_ok():
    hub = Hub()
    channel = Channel()
    sock = Socket(channel, BOB, "s1", queue_size=16)
    hub.attach(sock)
    hub.publish(BOB, card(1))
    hub.publish(BOB, card(2))
    assert sock.start([frame("auth_ok", bipupu_id=BOB, server_time="2026-09-21T00:00:00Z")], None)
    await settle(channel, count=3)
    assert [m["type"] for m in channel.messages()] == ["auth_ok", "new_message", "new_message"]
    assert channel.ids() == [card(1)["id"], card(2)["id"]]
    await sock.stop()


async def test_too_many_frames_held_before_start_detach_the_socket_4009():
    hub = Hub(queue_size=3)
    channel = Channel()
    sock = Socket(channel, BOB, "s1", queue_size=3)
    hub.attach(sock)
    assert [hub.publish(BOB, card(n)) for n in range(1, 5)] == [1, 1, 1, 0]
    await finished(sock)
    assert channel.closes == [TOO_SLOW]
    assert len(hub) == 0
    await sock.stop()


# closing ----------------------------------------------------------------------------------------

async def test_close_sessions_closes_only_those_sessions():
    hub = Hub()
    a1, a1_ch = live_socket(hub, ALICE, "alice-phone")
    a1b, a1b_ch = live_socket(hub, ALICE, "alice-phone")
    a2, a2_ch = live_socket(hub, ALICE, "alice-tablet")
    b1, b1_ch = live_socket(hub, BOB, "bob-phone")
    assert hub.close_sessions(["alice-phone", "no-such-session"], SIGNED_OUT, "signed out") == 2
    await finished(a1, a1b)
    assert a1_ch.closes == [SIGNED_OUT] and a1b_ch.closes == [SIGNED_OUT]
    assert a2_ch.closes == [] and b1_ch.closes == []
    assert len(hub) == 2
    assert hub.publish(ALICE, card(1, ALICE)) == 1
    await settle(a2_ch, count=1)
    assert a1_ch.frames == [] and a1b_ch.frames == []
    await stop_all(a1, a1b, a2, b1)


async def test_close_user_closes_every_socket_of_that_user():
    hub = Hub()
    a1, a1_ch = live_socket(hub, ALICE, "x")
    a2, a2_ch = live_socket(hub, ALICE, "y")
    b1, b1_ch = live_socket(hub, BOB, "z")
    assert hub.close_user(ALICE, SIGNED_OUT, "deactivated") == 2
    await finished(a1, a2)
    assert a1_ch.closes == [SIGNED_OUT] and a2_ch.closes == [SIGNED_OUT] and b1_ch.closes == []
    assert len(hub) == 1
    await stop_all(a1, a2, b1)


async def test_a_socket_is_closed_only_once():
    hub = Hub()
    sock, channel = live_socket(hub, BOB)
    sock.close(SIGNED_OUT, "signed out")
    sock.close(REPLACED, "replaced")
    await finished(sock)
    assert channel.closes == [SIGNED_OUT]
    assert sock.close_code == SIGNED_OUT
    await sock.stop()


async def test_close_all_closes_everything_with_1001():
    hub = Hub()
    socks = [live_socket(hub, ALICE, "a"), live_socket(hub, BOB, "b"), live_socket(hub, BOB, "c")]
    await asyncio.wait_for(hub.close_all(), 2)
    assert [ch.closes for _, ch in socks] == [[GOING_AWAY]] * 3
    assert all(s.closed.is_set() for s, _ in socks)
    assert len(hub) == 0
    assert hub.publish(BOB, card(1)) == 0
    await stop_all(*(s for s, _ in socks))


async def test_close_all_empties_the_hub_even_when_a_peer_hangs_in_close():
    hub = Hub()
    aborted = []
    hanging, hanging_ch = live_socket(hub, BOB, "b", Channel(stall_close=True), abort=lambda: aborted.append(True))
    polite, polite_ch = live_socket(hub, ALICE, "a")
    started = time.monotonic()
    await asyncio.wait_for(hub.close_all(), 5)  # bounded by the hub's own close timeout, not by the peer
    assert time.monotonic() - started < 4
    assert hanging_ch.closes == [GOING_AWAY] and polite_ch.closes == [GOING_AWAY]
    assert aborted == [True]  # the connection that would not close politely was dropped
    assert hanging.closed.is_set() and polite.closed.is_set()
    assert len(hub) == 0
    await stop_all(hanging, polite)


async def test_the_idle_sweep_closes_only_the_silent_sockets_with_1000_and_detaches_them():
    hub = Hub()
    silent, silent_channel = live_socket(hub, BOB, "s1")
    chatty, chatty_channel = live_socket(hub, BOB, "s2")
    other, _ = live_socket(hub, ALICE, "s3")
    now = time.monotonic()
    silent.last_seen = now - 91
    chatty.last_seen = now - 5
    other.last_seen = now - 89
    assert hub.close_idle(now - 90) == 1
    await finished(silent)
    assert silent_channel.closes == [1000] and chatty_channel.closes == []
    assert hub.sockets_of(BOB) == 1 and hub.sockets_of(ALICE) == 1
    assert hub.publish(BOB, card(1)) == 1  # the live one still gets its cards
    await settle(chatty_channel, count=1)
    assert hub.close_idle(now - 90) == 0  # nothing twice


async def test_an_idle_socket_holds_no_writer_task_and_a_new_frame_starts_one_in_order():
    hub = Hub()
    sock, channel = live_socket(hub, BOB)
    await let_writers_run()
    assert sock._writer is None or sock._writer.done()
    for n in range(1, 4):
        hub.publish(BOB, card(n))
    await settle(channel, count=3)
    assert channel.ids() == [card(n)["id"] for n in range(1, 4)]
    assert sock._writer.done()  # gone again once all is sent
    hub.publish(BOB, card(4))
    await settle(channel, count=4)
    assert channel.ids()[-1] == card(4)["id"]


async def test_a_broadcasts_writers_start_a_slice_per_loop_turn_and_a_reply_does_not_wait_in_line():
    hub = Hub(max_per_user=10)
    hub.pacer = Pacer(per_turn=2)
    socks = []
    for n in range(6):
        channel = Channel()
        sock = Socket(channel, BOB, f"s{n}", queue_size=16, pacer=hub.pacer)
        hub.attach(sock)
        assert sock.start([], None)
        socks.append((sock, channel))
    await let_writers_run()
    assert hub.publish(BOB, card(1)) == 6  # all six queued at once, in order
    assert len(hub.pacer) == 6
    socks[5][0].send('{"type":"pong"}')  # the last in line answers a ping: its writer starts now
    reached = []
    for _ in range(4):
        await asyncio.sleep(0)
        reached.append(sum(1 for _, c in socks if c.ids()))
    assert reached[0] <= 3  # one slice of 2, plus the socket that replied
    assert socks[5][1].ids() == [card(1)["id"]]
    assert socks[5][1].messages()[-1] == {"type": "pong"}  # after its push: one writer, FIFO
    await settle(*(c for _, c in socks), count=1)
    assert all(c.ids() == [card(1)["id"]] for _, c in socks) and len(hub.pacer) == 0
    hub.publish(BOB, card(2))
    await settle(*(c for _, c in socks[:5]), count=2)
    assert all(c.ids() == [card(1)["id"], card(2)["id"]] for _, c in socks)
