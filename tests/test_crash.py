"""Crash safety (SPEC §9, §6): the real `run.py` killed with SIGKILL under load and mid-broadcast."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import time
import uuid
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator

import aiohttp
import pytest

from tests.processes import STOP_TIMEOUT_S, Server, environment

ADMIN_PASSWORD = "admin-password-1"
PASSWORD = "correct horse"
FORTUNE = "cosmic.fortune"
PLACEHOLDER_HASH = "$2b$04$" + "x" * 53  # users inserted by hand never log in


# The server in a subprocess ---------------------------------------------------------------------

def crash_environment(**settings: str) -> dict[str, str]:
    """Cheap bcrypt, no rate limits (the load must not turn into 429s), a known admin."""
    return environment(BIPUPU_RATE_LIMIT="off", BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD, **settings)


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Start run.py on a data dir (waiting for /health unless told not to); all are killed at teardown."""
    started: list[Server] = []

    def start(data_dir: Path, *, wait: bool = True, **settings: str) -> Server:
        server = Server(tmp_path, data_dir, crash_environment(**settings), f"server{len(started)}")
        started.append(server)
        if wait:
            server.wait_ready()
        return server

    yield start
    for server in started:
        server.kill()


def read_only(db_file: Path) -> sqlite3.Connection:
    """A reader that can change nothing; autocommit, so every query sees the latest commit."""
    return sqlite3.connect(f"file:{db_file}?mode=ro", uri=True, isolation_level=None)


def integrity(db_file: Path) -> str:
    with closing(read_only(db_file)) as conn:
        return conn.execute("PRAGMA integrity_check").fetchone()[0]


# 1. Postcards under load, killed mid-flight ---------------------------------------------------

SENDERS = 4
LANES_PER_SENDER = 4  # 16 concurrent senders in all
LOAD_SECONDS = (1.0, 1.5, 2.0)  # one SIGKILL after each: the kill lands at a different point each round
CLIENT_TIMEOUT = aiohttp.ClientTimeout(total=15)
PAGE = 200


@dataclass(frozen=True)
class Card:
    """One attempted POST /messages."""

    sender_id: str
    token: str
    receiver_id: str
    client_msg_id: str
    content: str

    def body(self) -> dict[str, Any]:
        return {"receiver_id": self.receiver_id, "content": self.content, "client_msg_id": self.client_msg_id}


@dataclass
class Round:
    """What the senders saw in one round: cards acknowledged with 201, and the rest."""

    acked: dict[str, Card] = field(default_factory=dict)  # message id -> card
    unacked: list[Card] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    in_flight_at_kill: int = 0


def headers(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def register(api: aiohttp.ClientSession, base: str, username: str) -> dict[str, Any]:
    async with api.post(base + "/auth/register", json={"username": username, "password": PASSWORD}) as resp:
        assert resp.status == 201, await resp.text()
        return await resp.json()


async def post_card(api: aiohttp.ClientSession, base: str, card: Card) -> tuple[int, dict[str, Any]]:
    async with api.post(base + "/messages", json=card.body(), headers=headers(card.token)) as resp:
        return resp.status, await resp.json()


async def load_then_kill(server: Server, senders: list[dict[str, Any]], receiver_id: str, round_no: int,
                         load_s: float) -> Round:
    """16 lanes post cards as fast as they can; after `load_s` the server gets SIGKILL mid-flight."""
    outcome = Round()
    in_flight: set[str] = set()
    killed = False

    async def lane(api: aiohttp.ClientSession, sender: dict[str, Any], lane_no: int) -> None:
        n = 0
        while not killed:
            cmid = f"r{round_no}-{sender['bipupu_id']}-{lane_no}-{n}"
            n += 1
            card = Card(sender["bipupu_id"], sender["access_token"], receiver_id, cmid, f"card {cmid}")
            in_flight.add(cmid)
            try:
                status, body = await post_card(api, server.url, card)
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                outcome.unacked.append(card)
                if not killed:
                    outcome.unexpected.append(f"{cmid}: {exc!r} while the server was up")
                continue
            finally:
                in_flight.discard(cmid)
            if status == 201:
                assert (body["sender_id"], body["receiver_id"], body["content"]) == (
                    card.sender_id, receiver_id, card.content), body
                outcome.acked[body["id"]] = card
            else:
                outcome.unacked.append(card)
                outcome.unexpected.append(f"{cmid}: {status} {body}")

    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as api:
        lanes = [asyncio.create_task(lane(api, sender, k)) for sender in senders for k in range(LANES_PER_SENDER)]
        await asyncio.sleep(load_s)  # real time: the real process is under load this long before the kill
        assert server.proc.poll() is None, f"server died under load:\n{server.stderr}"
        outcome.in_flight_at_kill = len(in_flight)
        server.proc.send_signal(signal.SIGKILL)  # no await between the count and the kill
        killed = True
        await asyncio.gather(*lanes)
    server.kill()  # reaps it
    assert not outcome.unexpected, outcome.unexpected[:10]
    return outcome


async def since_pages(api: aiohttp.ClientSession, base: str, token: str, since: str) -> list[str]:
    """Every id of the caller's inbox after `since`, in the order the catch-up pages give them."""
    ids: list[str] = []
    while True:
        async with api.get(base + "/messages", params={"since": since, "limit": str(PAGE)},
                           headers=headers(token)) as resp:
            assert resp.status == 200, await resp.text()
            page = await resp.json()
        ids += [m["id"] for m in page["messages"]]
        if not page["has_more"]:
            return ids
        assert page["messages"], page
        since = page["messages"][-1]["id"]


async def check_acknowledged(api: aiohttp.ClientSession, server: Server, db_file: Path, receiver: dict[str, Any],
                             anchor: str, acked: dict[str, Card]) -> None:
    """After a restart: every acknowledged card is stored as sent, once, and in the `since` catch-up."""
    assert integrity(db_file) == "ok"
    with closing(read_only(db_file)) as conn:
        stored = {row[0]: row[1:] for row in conn.execute(
            "SELECT id, sender_id, receiver_id, content, client_msg_id FROM messages"
            " WHERE receiver_id = ? AND in_inbox = 1 AND id > ?", (receiver["bipupu_id"], anchor))}
        repeated = conn.execute(
            "SELECT sender_id, client_msg_id, count(*) FROM messages WHERE client_msg_id IS NOT NULL"
            " GROUP BY sender_id, client_msg_id HAVING count(*) > 1").fetchall()
    lost = sorted(set(acked) - set(stored))
    assert not lost, f"{len(lost)} of {len(acked)} acknowledged cards are not in the database, e.g. {lost[:5]}"
    wrong = [(mid, stored[mid]) for mid, card in acked.items()
             if stored[mid] != (card.sender_id, card.receiver_id, card.content, card.client_msg_id)]
    assert not wrong, wrong[:5]
    assert not repeated, repeated[:5]

    listed = await since_pages(api, server.url, receiver["access_token"], anchor)
    assert len(listed) == len(set(listed)), "the since catch-up repeats ids"
    assert listed == sorted(listed), "the since catch-up is not oldest first"
    assert set(listed) == set(stored), (len(listed), len(stored))


async def resend(api: aiohttp.ClientSession, server: Server, db_file: Path, cards: list[Card],
                 acked: dict[str, Card]) -> tuple[int, int]:
    """Re-send unacknowledged cards with their client_msg_id; returns (found committed, found lost)."""
    committed = lost = 0
    with closing(read_only(db_file)) as conn:
        def rows(card: Card) -> list[tuple[str, str]]:
            return conn.execute("SELECT id, content FROM messages WHERE sender_id = ? AND client_msg_id = ?",
                                (card.sender_id, card.client_msg_id)).fetchall()

        for card in cards:
            before = rows(card)
            assert len(before) <= 1, before
            status, body = await post_card(api, server.url, card)
            if before:  # committed before the kill, though its 201 never arrived: the original, once
                committed += 1
                assert status == 200, (card.client_msg_id, status, body)
                assert (body["id"], body["content"]) == before[0], (body, before)
            else:  # lost with the kill: stored now
                lost += 1
                assert status == 201, (card.client_msg_id, status, body)
            assert rows(card) == [(body["id"], card.content)]
            acked[body["id"]] = card
    return committed, lost


async def test_acknowledged_cards_survive_sigkill_under_load(start_server, tmp_path):
    data = tmp_path / "data"
    db_file = data / "bipupu.db"
    server = start_server(data)
    async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as api:
        receiver = await register(api, server.url, "receiver")
        senders = [await register(api, server.url, f"sender_{i}") for i in range(SENDERS)]
        first = Card(senders[0]["bipupu_id"], senders[0]["access_token"], receiver["bipupu_id"], "anchor", "anchor")
        status, body = await post_card(api, server.url, first)
        assert status == 201, body
        anchor = body["id"]  # from before the first kill: the catch-up of every round starts here

    acked: dict[str, Card] = {}
    rounds: list[tuple[Round, int, int]] = []
    for round_no, load_s in enumerate(LOAD_SECONDS):
        outcome = await load_then_kill(server, senders, receiver["bipupu_id"], round_no, load_s)
        assert outcome.acked, "no card was acknowledged before the kill"
        acked.update(outcome.acked)
        server = start_server(data)  # same data dir, after SIGKILL: SQLite recovers the WAL
        async with aiohttp.ClientSession(timeout=CLIENT_TIMEOUT) as api:
            await check_acknowledged(api, server, db_file, receiver, anchor, acked)
            committed, lost = await resend(api, server, db_file, outcome.unacked, acked)
            await check_acknowledged(api, server, db_file, receiver, anchor, acked)
        rounds.append((outcome, committed, lost))

    assert server.stop() == 0
    assert integrity(db_file) == "ok"
    print(f"\ncrash under load: {len(LOAD_SECONDS)} SIGKILLs, {len(acked)} acknowledged cards checked, none lost"
          f" or repeated; per kill: acknowledged {[len(r.acked) for r, _, _ in rounds]},"
          f" in flight at the kill {[r.in_flight_at_kill for r, _, _ in rounds]},"
          f" unacknowledged {[len(r.unacked) for r, _, _ in rounds]}"
          f" (re-sent: committed before the kill {[c for _, c, _ in rounds]}, lost {[n for _, _, n in rounds]})")


# 2. SIGKILL in the middle of a daily fan-out --------------------------------------------------

SUBSCRIBERS = 30_000
KILL_AFTER = SUBSCRIBERS // 4  # deliveries seen on disk before the kill is sent
FAN_OUT_TIMEOUT_S = 30.0


def populate_subscribers(db_file: Path, count: int) -> list[str]:
    """`count` users subscribed to cosmic.fortune long ago, due at 00:00 UTC, nothing sent today."""
    ids = [f"{n:08d}" for n in range(2, count + 2)]  # 00000001 is the admin
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    with closing(sqlite3.connect(db_file)) as conn, conn:
        assert conn.execute("SELECT max(bipupu_id) FROM users").fetchone()[0] == "00000001"
        conn.executemany(
            "INSERT INTO users (id, bipupu_id, username, username_key, password_hash, nickname, created_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?)",
            [(str(uuid.uuid4()), b, f"fan_{b}", f"fan_{b}", PLACEHOLDER_HASH, f"fan {b}", now) for b in ids])
        conn.execute("UPDATE counters SET value = ? WHERE name = 'bipupu_id'", (count + 1,))
        conn.executemany("INSERT INTO subscriptions (service_id, bipupu_id, created_at) VALUES (?, ?, ?)",
                         [(FORTUNE, b, "2020-01-01T00:00:00Z") for b in ids])
        conn.execute("UPDATE services SET send_time = '00:00' WHERE id = ?", (FORTUNE,))
        # The first start already ran today's (empty) broadcast: forget it, so the next start sends it.
        conn.execute("DELETE FROM broadcast_runs")
        assert conn.execute("SELECT count(*) FROM daily_deliveries").fetchone()[0] == 0
        assert conn.execute("SELECT count(*) FROM messages WHERE sender_id = ?", (FORTUNE,)).fetchone()[0] == 0
    return ids


def deliveries(db_file: Path, day: str) -> int:
    with closing(read_only(db_file)) as conn:
        return conn.execute("SELECT count(*) FROM daily_deliveries WHERE service_id = ? AND day = ?",
                            (FORTUNE, day)).fetchone()[0]


def fortunes_stored(db_file: Path) -> int:
    with closing(read_only(db_file)) as conn:
        return conn.execute("SELECT count(*) FROM messages WHERE sender_id = ?", (FORTUNE,)).fetchone()[0]


def wait_until(server: Server, what: str, done: Callable[[], bool], timeout: float = FAN_OUT_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            pytest.fail(f"server exited with {server.proc.returncode} while waiting for {what}:\n{server.stderr}")
        try:
            if done():
                return
        except sqlite3.OperationalError:  # the database is not there yet, or busy recovering
            pass
        time.sleep(0.005)  # another process's progress: only polling its files on the real clock shows it
    pytest.fail(f"no {what} within {timeout} s:\n{server.stderr}")


def fortunes_state(db_file: Path, day: str) -> dict[str, Any]:
    """Today's fortunes as stored: per receiver, per delivery row, and whether the day's run finished."""
    with closing(read_only(db_file)) as conn:
        per_receiver = dict(conn.execute(
            "SELECT receiver_id, count(*) FROM messages WHERE sender_id = ? AND msg_type = 'COSMIC_BROADCAST'"
            " GROUP BY receiver_id", (FORTUNE,)).fetchall())
        rows = conn.execute("SELECT bipupu_id, message_id FROM daily_deliveries WHERE service_id = ? AND day = ?",
                            (FORTUNE, day)).fetchall()
        matching = conn.execute(
            "SELECT count(*) FROM daily_deliveries d JOIN messages m ON m.id = d.message_id"
            " WHERE d.service_id = ? AND d.day = ? AND m.receiver_id = d.bipupu_id AND m.sender_id = d.service_id"
            " AND m.msg_type = 'COSMIC_BROADCAST'", (FORTUNE, day)).fetchone()[0]
        other_days = conn.execute("SELECT count(*) FROM daily_deliveries WHERE day != ?", (day,)).fetchone()[0]
        runs = conn.execute("SELECT service_id, day, sent FROM broadcast_runs").fetchall()
    return {"per_receiver": per_receiver, "deliveries": rows, "matching": matching, "other_days": other_days,
            "runs": runs}


def assert_exactly_one_each(state: dict[str, Any], subscribers: list[str]) -> None:
    per_receiver, rows = state["per_receiver"], state["deliveries"]
    missing = [b for b in subscribers if b not in per_receiver]
    repeated = {b: n for b, n in per_receiver.items() if n != 1}
    strangers = set(per_receiver) - set(subscribers)
    assert not missing, f"{len(missing)} subscribers got no fortune today, e.g. {missing[:5]}"
    assert not repeated, f"{len(repeated)} subscribers got several fortunes today, e.g. {list(repeated.items())[:5]}"
    assert not strangers, sorted(strangers)[:5]
    assert len(rows) == len(subscribers) and {b for b, _ in rows} == set(subscribers), len(rows)
    assert state["matching"] == len(subscribers), "a delivery row names a message that is not that fortune"
    assert state["other_days"] == 0


def test_sigkill_mid_fan_out_then_restart_sends_each_subscriber_exactly_one_fortune(start_server, tmp_path):
    data = tmp_path / "data"
    db_file = data / "bipupu.db"
    utc = {"BIPUPU_TIMEZONE": "UTC"}  # send time 00:00 UTC: always passed today
    to_midnight = 86400 - time.time() % 86400
    if to_midnight < 20:  # the whole test must see one UTC day: run.py reads the real wall clock
        time.sleep(to_midnight + 1)
    assert start_server(data, **utc).stop() == 0  # creates the schema and the admin
    day = datetime.now(timezone.utc).date().isoformat()
    subscribers = populate_subscribers(db_file, SUBSCRIBERS)

    server = start_server(data, wait=False, **utc)  # the start-up tick begins the fan-out
    # Triggered by the messages, not the delivery rows: a delivery recorded apart from its message
    # would leave the kill a window between the two.
    wait_until(server, "fan-out progress", lambda: fortunes_stored(db_file) >= KILL_AFTER)
    server.kill()
    sent_before = deliveries(db_file, day)
    assert sent_before < SUBSCRIBERS, "the fan-out finished before the kill: raise SUBSCRIBERS"
    assert "daily broadcast of" not in server.stderr
    before = fortunes_state(db_file, day)
    assert sum(before["per_receiver"].values()) == sent_before == before["matching"], \
        "deliveries and fortunes on disk disagree after the kill (a batch is not one transaction)"
    assert before["runs"] == []

    server = start_server(data, **utc)  # resumes the day with the subscribers still missing
    wait_until(server, "finished broadcast run", lambda: fortunes_state(db_file, day)["runs"] != [])
    assert server.stop() == 0
    after = fortunes_state(db_file, day)
    assert_exactly_one_each(after, subscribers)
    assert [(s, d) for s, d, _ in after["runs"]] == [(FORTUNE, day)]
    sent_after = len(after["deliveries"]) - sent_before
    assert f"daily broadcast of {FORTUNE} for {day}: {sent_after} sent" in server.stderr, server.stderr

    server = start_server(data, **utc)  # the day is done: nothing more goes out
    time.sleep(1.0)  # the start-up tick runs before /health answers; give a late one time to misbehave
    assert server.stop() == 0
    assert fortunes_state(db_file, day) == after
    assert "daily broadcast of" not in server.stderr
    assert integrity(db_file) == "ok"
    print(f"\ncrash mid fan-out: {SUBSCRIBERS} subscribers, {sent_before} fortunes on disk at SIGKILL,"
          f" {sent_after} sent after the restart, 0 after a further restart; each subscriber has exactly one")
