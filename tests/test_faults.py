"""Faults the server must ride out: a long write lock, a full disk, read-only files, failed batches, shutdown mid-work.

Every fault is real: another connection holding SQLite's write lock, a small tmpfs filled to the last
byte, `chattr +i` on the database files, a read-only bind mount, SIGTERM to run.py. Faults that need
root (mount, chattr) are skipped where the machine does not allow them.
"""

from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import closing, suppress
from http.client import HTTPException
from itertools import islice
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from bipupu_server import keys
from bipupu_server.store.db import BUSY_TIMEOUT_MS
from tests.conftest import (ADMIN_PASSWORD, BOB, PASSWORD, WAIT, assert_error, assert_quiet, bearer, login, post_card,
                            receive_card, register, send_card)
from tests.processes import (FAIL_FAST_S, STOP_TIMEOUT_S, Server, assert_one_line_failure, call, environment,
                             free_port, run_cli)

ALICE = "00000002"
# A write stuck behind another connection's lock must give up after the busy timeout, not hang.
LOCKED_ANSWER_WITHIN_S = BUSY_TIMEOUT_MS / 1000 + 2.0
SMALL_DISK = "4m"
NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


# Helpers ----------------------------------------------------------------------------------------

def db_path(client) -> Path:
    return client.server.app[keys.config].db_path


def read_db(path: Path, sql: str, params: tuple = ()) -> list[tuple]:
    """Read the server's SQLite file through a read-only connection of our own (blocking: use a thread)."""
    with closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=2)) as conn:
        return conn.execute(sql, params).fetchall()


async def rows(client, sql: str, params: tuple = ()) -> list[tuple]:
    return await asyncio.to_thread(read_db, db_path(client), sql, params)


async def stored_ids(client) -> set[str]:
    return {row[0] for row in await rows(client, "SELECT id FROM messages")}


def take_write_lock_soon(path: Path) -> None:
    """BEGIN IMMEDIATE, waiting a second at most: fails if anyone (the server's writer too) keeps the write lock."""
    with closing(sqlite3.connect(path, isolation_level=None, timeout=1.0)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")


async def assert_unavailable(resp) -> None:
    """503 database_unavailable in the one error shape, with a usable Retry-After."""
    await assert_error(resp, 503, "database_unavailable")
    retry_after = resp.headers.get("Retry-After", "")
    assert retry_after.isdigit() and int(retry_after) >= 1, dict(resp.headers)
    assert "Traceback" not in await resp.text()


async def nickname(client, account: dict[str, Any]) -> str:
    resp = await client.get("/me", headers=bearer(account))
    assert resp.status == 200, await resp.text()
    return (await resp.json())["nickname"]


def cards_at_the_writer(client, monkeypatch, cards: int) -> asyncio.Event:
    """An event set once `cards` cards have entered the mailbox: each then runs straight to the writer's
    queue, where it waits (under another's write lock) until the writer can commit it."""
    mailbox = client.server.app[keys.mailbox]
    send, entered, all_in = mailbox.send, [], asyncio.Event()

    async def send_and_count(*args: Any, **kwargs: Any) -> Any:
        entered.append(args)
        if len(entered) == cards:
            all_in.set()  # seen by the test only once this card is queued: nothing awaits before the write
        return await send(*args, **kwargs)

    monkeypatch.setattr(mailbox, "send", send_and_count)
    return all_in


class WriteLock:
    """Another connection's write transaction on the database file, held on a thread until released."""

    def __init__(self, path: Path, *, hold_at_most_s: float = 30.0):
        self._path = path
        self._limit = hold_at_most_s  # should the test break, the lock goes anyway
        self._acquired = threading.Event()
        self._release = threading.Event()
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._hold, name="test-write-lock", daemon=True)

    def _hold(self) -> None:
        try:
            with closing(sqlite3.connect(self._path, isolation_level=None, timeout=5)) as conn:
                conn.execute("BEGIN IMMEDIATE")
                self._acquired.set()
                self._release.wait(self._limit)
                conn.execute("ROLLBACK")
        except BaseException as exc:  # handed to the test on the loop's side
            self._error = exc
            self._acquired.set()

    async def __aenter__(self) -> "WriteLock":
        self._thread.start()
        assert await asyncio.to_thread(self._acquired.wait, 10), "the test's write lock was never granted"
        if self._error is not None:
            raise self._error
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        self._release.set()
        await asyncio.to_thread(self._thread.join, 10)
        assert not self._thread.is_alive()
        if self._error is not None:
            raise self._error


def _run_root_tool(*command: str) -> subprocess.CompletedProcess[str]:
    if shutil.which(command[0]) is None:
        pytest.skip(f"{command[0]} is not installed here")
    return subprocess.run(command, capture_output=True, text=True, timeout=10)


class SmallDisk:
    """A tiny tmpfs for the data dir: filled to the last byte, SQLite gets a real ENOSPC (SQLITE_FULL)."""

    def __init__(self, path: Path):
        self.path = path
        self.filler = path / "filler"

    def fill(self) -> None:
        with open(self.filler, "ab", buffering=0) as fh:
            chunk = 1 << 20
            while chunk:
                try:
                    fh.write(bytes(chunk))
                except OSError as exc:
                    if exc.errno != errno.ENOSPC:
                        raise
                    chunk //= 2
        assert os.statvfs(self.path).f_bavail == 0

    def free(self) -> None:
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    """Request it before make_client: the server must be gone before the tmpfs is unmounted."""
    mount = tmp_path / "small-disk"
    mount.mkdir()
    result = _run_root_tool("mount", "-t", "tmpfs", "-o", f"size={SMALL_DISK},mode=0700", "tmpfs", str(mount))
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {result.stderr.strip()}")
    disk = SmallDisk(mount)
    try:
        yield disk
    finally:
        disk.free()
        if subprocess.run(["umount", str(mount)], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True, timeout=10)


class Immutable:
    """`chattr +i`: even root can no longer write the file, through descriptors already open too."""

    def __init__(self) -> None:
        self.frozen: list[Path] = []

    def freeze(self, *paths: Path) -> None:
        for path in paths:
            result = _run_root_tool("chattr", "+i", str(path))
            if result.returncode != 0:
                pytest.skip(f"cannot make {path.name} immutable here: {result.stderr.strip()}")
            self.frozen.append(path)

    def thaw(self) -> None:
        while self.frozen:
            subprocess.run(["chattr", "-i", str(self.frozen.pop())], capture_output=True, timeout=10)


@pytest.fixture
def immutable() -> Iterator[Immutable]:
    files = Immutable()
    try:
        yield files
    finally:
        files.thaw()  # else pytest could never delete the temp dir


# A write lock held past the busy timeout ------------------------------------------------------

async def test_a_write_lock_held_past_the_busy_timeout_gives_503_then_the_same_writes_succeed(client, alice, bob,
                                                                                              open_ws, monkeypatch):
    bobs_socket = await open_ws(bob)
    async with WriteLock(db_path(client)):
        resp = await asyncio.wait_for(client.get("/me", headers=bearer(alice)), WAIT)
        assert resp.status == 200, await resp.text()  # WAL: reads go on under a write lock

        queued = cards_at_the_writer(client, monkeypatch, 1)
        started = time.monotonic()
        sending = asyncio.create_task(post_card(client, alice, BOB, "sent while locked", client_msg_id="locked-1"))
        await asyncio.wait_for(queued.wait(), WAIT)  # the card now waits on the lock: reads still answer at once
        resp = await asyncio.wait_for(client.get("/messages", headers=bearer(bob)), WAIT)
        assert resp.status == 200, await resp.text()
        await assert_unavailable(await asyncio.wait_for(sending, LOCKED_ANSWER_WITHIN_S))
        assert time.monotonic() - started < LOCKED_ANSWER_WITHIN_S
        await assert_quiet(bobs_socket)  # nothing was committed, so nothing is pushed

        started = time.monotonic()
        resp = await asyncio.wait_for(client.put("/me", json={"nickname": "Locked Out"}, headers=bearer(alice)),
                                      LOCKED_ANSWER_WITHIN_S)
        await assert_unavailable(resp)
        assert time.monotonic() - started < LOCKED_ANSWER_WITHIN_S

        assert await rows(client, "SELECT count(*) FROM messages") == [(0,)]
        assert await nickname(client, alice) == "alice"

    # Released: nothing half-written or retried behind the client's back shows up (the writer takes jobs in
    # order, so a no-op write returns only after any retry queued before it)...
    await client.server.app[keys.db].write(lambda tx: None)
    assert await rows(client, "SELECT count(*) FROM messages") == [(0,)]
    assert await rows(client, "SELECT nickname FROM users WHERE bipupu_id = ?", (ALICE,)) == [("alice",)]
    await assert_quiet(bobs_socket)

    # ...and the same requests now succeed: the refused card was never stored, so its key is fresh (201).
    resp = await post_card(client, alice, BOB, "sent while locked", client_msg_id="locked-1")
    assert resp.status == 201, await resp.text()
    card = await resp.json()
    assert await receive_card(bobs_socket) == card
    resp = await client.put("/me", json={"nickname": "Locked Out"}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["nickname"] == "Locked Out"
    assert await rows(client, "SELECT id, content FROM messages") == [(card["id"], "sent while locked")]
    assert await rows(client, "SELECT nickname FROM users WHERE bipupu_id = ?", (ALICE,)) == [("Locked Out",)]
    await bobs_socket.close()


# Disk full -----------------------------------------------------------------------------------

async def test_a_full_disk_gives_503_and_no_acknowledged_card_is_lost(small_disk, make_client):
    client = await make_client(data_dir=small_disk.path, rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    before = [(await send_card(client, alice, BOB, f"before {n} " + "x" * 400))["id"] for n in range(5)]

    await asyncio.to_thread(small_disk.fill)
    resp = await asyncio.wait_for(post_card(client, alice, BOB, "while the disk is full"), LOCKED_ANSWER_WITHIN_S)
    await assert_unavailable(resp)
    resp = await asyncio.wait_for(client.put("/me", json={"nickname": "Full"}, headers=bearer(alice)),
                                  LOCKED_ANSWER_WITHIN_S)
    await assert_unavailable(resp)
    resp = await client.get("/messages", params={"limit": "200"}, headers=bearer(bob))  # reads need no space
    assert resp.status == 200, await resp.text()
    assert [m["id"] for m in (await resp.json())["messages"]] == before[::-1]

    await asyncio.to_thread(small_disk.free)
    after = [(await send_card(client, alice, BOB, f"after {n}"))["id"] for n in range(3)]
    assert await nickname(client, alice) == "alice"
    assert await stored_ids(client) == set(before + after)
    assert await rows(client, "SELECT count(*) FROM messages WHERE content = 'while the disk is full'") == [(0,)]

    await client.close()  # a clean close checkpoints the WAL into the file on the small disk
    assert await asyncio.to_thread(read_db, small_disk.path / "bipupu.db", "PRAGMA integrity_check") == [("ok",)]
    ids = await asyncio.to_thread(read_db, small_disk.path / "bipupu.db", "SELECT id FROM messages")
    assert {row[0] for row in ids} == set(before + after)


async def test_a_database_at_its_page_limit_gives_503_and_keeps_what_was_acknowledged(make_client):
    """SQLITE_FULL without root: the writer's own max_page_count, set through the public Database.write."""
    client = await make_client(rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    database = client.server.app[keys.db]
    await database.write(lambda tx: tx.fetchone("PRAGMA max_page_count = 1"))  # clamps to the pages in use

    acked, refused = [], None
    for n in range(200):  # each card fills its page a little more, until one needs a new page
        resp = await asyncio.wait_for(post_card(client, alice, BOB, f"card {n} " + "x" * 480), LOCKED_ANSWER_WITHIN_S)
        if resp.status != 201:
            refused = resp
            break
        acked.append((await resp.json())["id"])
    assert refused is not None, "200 cards fitted in the pages the database had"
    await assert_unavailable(refused)
    assert await stored_ids(client) == set(acked)

    await database.write(lambda tx: tx.fetchone("PRAGMA max_page_count = 4294967294"))  # room again
    later = await send_card(client, alice, BOB, "room again")
    assert await stored_ids(client) == {*acked, later["id"]}
    resp = await client.get("/messages", params={"limit": "200"}, headers=bearer(bob))
    assert [m["id"] for m in (await resp.json())["messages"]] == sorted({*acked, later["id"]}, reverse=True)


async def test_health_says_the_database_is_unavailable_while_the_disk_is_full(small_disk, make_client):
    client = await make_client(data_dir=small_disk.path)
    alice = await register(client, "alice")
    await register(client, "bob")
    await asyncio.to_thread(small_disk.fill)
    await assert_unavailable(await post_card(client, alice, BOB, "no room"))

    full = await asyncio.wait_for(client.get("/health"), WAIT)
    full_body = await full.json()
    await asyncio.to_thread(small_disk.free)
    await send_card(client, alice, BOB, "room again")
    again = await asyncio.wait_for(client.get("/health"), WAIT)
    again_body = await again.json()

    # Every write failed: a monitor asking /health must learn that, not read "ok"...
    assert full.status == 503, full_body
    assert full_body["status"] != "ok" and full_body["db"] != "ok", full_body
    assert "Retry-After" in full.headers
    # ...and "ok" again once writes succeed.
    assert again.status == 200 and again_body["status"] == "ok" and again_body["db"] == "ok", again_body


# Read-only data ------------------------------------------------------------------------------

async def test_read_only_database_files_refuse_writes_with_503_and_reads_still_answer(client, alice, bob, immutable):
    card = await send_card(client, alice, BOB, "before the files froze")
    db = db_path(client)
    # Not the -shm file: it is mmap'ed, and an immutable mapping kills any SQLite process with SIGBUS.
    await asyncio.to_thread(immutable.freeze, db, Path(f"{db}-wal"))

    await assert_unavailable(await asyncio.wait_for(post_card(client, alice, BOB, "frozen"), LOCKED_ANSWER_WITHIN_S))
    await assert_unavailable(await client.put("/me", json={"nickname": "Frozen"}, headers=bearer(alice)))
    await assert_unavailable(await client.post("/auth/register", json={"username": "carol", "password": PASSWORD}))

    assert await nickname(client, alice) == "alice"
    resp = await client.get("/messages", headers=bearer(bob))
    assert resp.status == 200, await resp.text()
    assert (await resp.json())["messages"] == [card]
    resp = await client.get(f"/messages/{card['id']}", headers=bearer(alice))
    assert resp.status == 200 and await resp.json() == card
    resp = await client.get(f"/users/{BOB}", headers=bearer(alice))
    assert resp.status == 200, await resp.text()

    await asyncio.to_thread(immutable.thaw)
    later = await send_card(client, alice, BOB, "after the thaw")
    resp = await client.put("/me", json={"nickname": "Thawed"}, headers=bearer(alice))
    assert resp.status == 200, await resp.text()
    assert await rows(client, "SELECT content FROM messages ORDER BY id") == [("before the files froze",),
                                                                             ("after the thaw",)]
    assert later["id"] > card["id"]
    assert await rows(client, "SELECT count(*) FROM users WHERE username = 'carol'") == [(0,)]


@pytest.fixture
def read_only_mount() -> Iterator[Any]:
    """Remount a directory onto itself read-only (EROFS for everyone, root included)."""
    mounted: list[Path] = []

    def make(path: Path) -> None:
        if _run_root_tool("mount", "--bind", str(path), str(path)).returncode != 0:
            pytest.skip("cannot bind-mount here (needs root)")
        mounted.append(path)
        result = _run_root_tool("mount", "-o", "remount,bind,ro", str(path))
        if result.returncode != 0:
            pytest.skip(f"cannot remount read-only here: {result.stderr.strip()}")
        try:
            (path / "probe").write_text("x")
        except OSError as exc:
            assert exc.errno == errno.EROFS, exc
        else:
            pytest.fail(f"{path} is still writable after a read-only remount")

    yield make
    for path in reversed(mounted):
        if subprocess.run(["umount", str(path)], capture_output=True, timeout=10).returncode != 0:
            subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=10)


@pytest.mark.parametrize("holding", ["nothing", "a-database"])
def test_start_up_with_a_read_only_data_dir_exits_with_one_line(tmp_path, read_only_mount, holding):
    data = tmp_path / "data"
    data.mkdir()
    if holding == "a-database":
        made = run_cli(tmp_path, "create-user", "--username", "vega", "--password-stdin", data_dir=data,
                       stdin=PASSWORD + "\n", BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
        assert made.returncode == 0, made.stderr
    before = {path.name: path.read_bytes() for path in data.iterdir()}
    read_only_mount(data)

    result = run_cli(tmp_path, "--host", "127.0.0.1", "--port", str(free_port()), data_dir=data,
                     timeout=FAIL_FAST_S, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    line = assert_one_line_failure(result)
    assert str(data.resolve()) in line, line
    assert "writ" in line.lower() or "read-only" in line.lower(), line
    assert {path.name: path.read_bytes() for path in data.iterdir()} == before


def test_start_up_with_a_read_only_database_file_exits_with_one_line(tmp_path, immutable):
    data = tmp_path / "data"
    made = run_cli(tmp_path, "create-user", "--username", "vega", "--password-stdin", data_dir=data,
                   stdin=PASSWORD + "\n", BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert made.returncode == 0, made.stderr
    db = data / "bipupu.db"
    before = db.read_bytes()
    immutable.freeze(db)  # the directory stays writable: only the database cannot be changed

    server = Server(tmp_path, data, environment(BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD), "read-only-db")
    try:
        deadline = time.monotonic() + FAIL_FAST_S
        while server.proc.poll() is None and time.monotonic() < deadline:
            with suppress(urllib.error.URLError, ConnectionError, TimeoutError, HTTPException, ValueError):
                if call(server.url, "GET", "/health")[0] == 200:
                    pytest.fail("the server started serving a database it cannot write: every write would be a 503")
            time.sleep(0.05)  # a real process, polled on the real clock: no event of ours says it has started
    finally:
        server.kill()
    result = subprocess.CompletedProcess(server.proc.args, server.proc.returncode, server.stdout, server.stderr)
    line = assert_one_line_failure(result)
    assert "bipupu.db" in line, line
    assert db.read_bytes() == before


# The writer outlives a failed batch ----------------------------------------------------------

async def test_the_writer_outlives_failed_batches_without_a_restart(small_disk, make_client):
    client = await make_client(data_dir=small_disk.path, rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    database = client.server.app[keys.db]

    await asyncio.to_thread(small_disk.fill)
    failed = await asyncio.wait_for(asyncio.gather(
        *(post_card(client, alice, BOB, f"doomed {n}") for n in range(20)),
        client.post("/auth/register", json={"username": "carol", "password": PASSWORD}),
    ), LOCKED_ANSWER_WITHIN_S)
    for resp in failed:
        await assert_unavailable(resp)
    await asyncio.to_thread(small_disk.free)

    # The failed batches left no transaction open on the writer: anyone may take the write lock.
    await asyncio.to_thread(take_write_lock_soon, db_path(client))

    commits_before = database.commits
    cards = await asyncio.wait_for(asyncio.gather(
        *(send_card(client, alice, BOB, f"alive {n}") for n in range(20))), WAIT * 5)
    assert database.commits > commits_before
    assert await stored_ids(client) == {card["id"] for card in cards}
    carol = await register(client, "carol")
    assert carol["bipupu_id"] == "00000004"  # the refused registration used up no bipupu_id
    await login(client, "bob")
    assert await rows(client, "SELECT count(*) FROM messages WHERE content LIKE 'doomed %'") == [(0,)]


# Shutting down with work in flight -----------------------------------------------------------

async def test_closing_the_app_with_cards_in_flight_finishes_them_and_keeps_every_one(make_client, caplog,
                                                                                        monkeypatch):
    caplog.set_level(logging.WARNING)
    client = await make_client(rate_limit=False)
    alice, bob = await register(client, "alice"), await register(client, "bob")
    db = db_path(client)
    all_in = cards_at_the_writer(client, monkeypatch, 40)
    hub = client.server.app[keys.hub]
    close_all, sockets_closed = hub.close_all, asyncio.Event()

    async def close_all_and_tell(*args: Any, **kwargs: Any) -> None:
        await close_all(*args, **kwargs)
        sockets_closed.set()  # the app's on_shutdown is done: next it waits for the requests being handled

    monkeypatch.setattr(hub, "close_all", close_all_and_tell)

    async def send(n: int) -> tuple[int | None, Any]:
        try:
            resp = await client.post("/messages", json={"receiver_id": BOB, "content": f"in flight {n}"},
                                     headers=bearer(alice))
            return resp.status, await resp.json()
        except aiohttp.ClientError as exc:  # the server went away before answering: not acknowledged
            return None, exc

    # Another connection's write lock keeps the cards in flight (waiting on the writer) for as long as we like.
    async with WriteLock(db):
        sending = [asyncio.create_task(send(n)) for n in range(40)]
        await asyncio.wait_for(all_in.wait(), WAIT)
        assert not any(task.done() for task in sending), "cards were answered although no write could commit"
        closing_app = asyncio.create_task(client.server.close())
        await asyncio.wait_for(sockets_closed.wait(), WAIT)
        assert not closing_app.done(), "the app closed with cards still waiting to be written"
    started = time.monotonic()
    await asyncio.wait_for(closing_app, 10)
    assert time.monotonic() - started < LOCKED_ANSWER_WITHIN_S
    results = await asyncio.wait_for(asyncio.gather(*sending), WAIT)

    # Requests already being handled are finished, not dropped: each gets its 201 and is on disk.
    assert [status for status, _ in results] == [201] * 40, [r for r in results if r[0] != 201]
    acked = {body["id"] for _, body in results}
    assert {row[0] for row in await asyncio.to_thread(read_db, db, "SELECT id FROM messages")} == acked
    wal = Path(f"{db}-wal")
    assert not wal.exists() or wal.stat().st_size == 0  # the database was closed, checkpointed
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], caplog.text


def test_sigterm_with_cards_in_flight_keeps_every_acknowledged_card(serve, tmp_path):
    data = tmp_path / "data"
    server = serve(data, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD, BIPUPU_RATE_LIMIT="off")
    accounts = {}
    for name in ("alice", "bob"):
        status, accounts[name] = call(server.url, "POST", "/auth/register", {"username": name, "password": PASSWORD})
        assert status == 201, accounts[name]
    token, receiver = accounts["alice"]["access_token"], accounts["bob"]["bipupu_id"]

    def send(n: int) -> tuple[int | None, Any]:
        body = json.dumps({"receiver_id": receiver, "content": f"card {n}"}).encode()
        request = urllib.request.Request(f"{server.url}/messages", method="POST", data=body, headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {token}"})
        try:
            # A short timeout: a connection accepted just as the listener closes may never be answered.
            with NO_PROXY.open(request, timeout=2) as resp:
                return resp.status, json.loads(resp.read())
        except urllib.error.HTTPError as err:
            with err:
                return err.code, err.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError, HTTPException) as exc:
            return None, repr(exc)  # refused or cut off by the shutdown: not acknowledged

    with ThreadPoolExecutor(max_workers=16) as pool:
        futures = [pool.submit(send, n) for n in range(300)]
        for _ in islice(as_completed(futures, timeout=30), 20):
            pass  # twenty answers in, the rest in flight or queued
        server.proc.send_signal(signal.SIGTERM)
        results = [future.result(timeout=30) for future in futures]
    try:  # one SIGTERM only: Server.stop() would send a second one if the first has not finished yet
        assert server.proc.wait(timeout=STOP_TIMEOUT_S) == 0, server.stderr[-2000:]
    except subprocess.TimeoutExpired:
        pytest.fail(f"run.py did not exit within {STOP_TIMEOUT_S} s of SIGTERM")
    assert "stopped cleanly" in server.stderr
    assert "Traceback" not in server.stderr

    unexpected = [r for r in results if r[0] not in (201, 503, None)]  # 503: refused while closing, never a 500
    assert not unexpected, unexpected
    acked = {body["id"] for status, body in results if status == 201}
    assert len(acked) >= 20
    assert len(acked) < len(results), "every card was answered before SIGTERM: nothing was in flight"
    stored = {row[0] for row in read_db(data / "bipupu.db", "SELECT id FROM messages")}
    assert acked <= stored
