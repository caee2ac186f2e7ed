"""The one Database object: connection setup, migrations, reads, and the single batched writer."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from importlib import resources
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

T = TypeVar("T")

# Package data (setup.cfg), so an installed wheel finds it too; the repo's top-level schema.sql links here.
SCHEMA_PATH = resources.files("bipupu_server") / "schema.sql"
SCHEMA_VERSION = 4
# version -> SQL that upgrades a database from version-1 to version. schema.sql is always the
# result of applying all of them; add the change to both.
MIGRATIONS: dict[int, str] = {
    2: """-- Postcards. A row is one card; each side's mailbox shows it while its flag is 1. A card
-- silently dropped (block, contacts_only privacy) is stored for the sender only.
CREATE TABLE messages (
    id             TEXT NOT NULL PRIMARY KEY,   -- UUIDv7: string order = acceptance order
    sender_id      TEXT NOT NULL,               -- a bipupu_id or a service id
    receiver_id    TEXT NOT NULL,               -- a bipupu_id or a service id
    content        TEXT NOT NULL,
    msg_type       TEXT NOT NULL
                   CHECK (msg_type IN ('USER_POSTCARD', 'VOICE_TRANSCRIPT', 'COSMIC_BROADCAST')),
    pattern        TEXT NOT NULL DEFAULT '{}',  -- JSON object
    created_at     TEXT NOT NULL,
    client_msg_id  TEXT,                        -- the sender's idempotency key
    in_inbox       INTEGER NOT NULL DEFAULT 1 CHECK (in_inbox IN (0, 1)),
    in_outbox      INTEGER NOT NULL DEFAULT 1 CHECK (in_outbox IN (0, 1)),
    dropped        INTEGER NOT NULL DEFAULT 0 CHECK (dropped IN (0, 1))
) STRICT, WITHOUT ROWID;
CREATE UNIQUE INDEX messages_by_client_id ON messages (sender_id, client_msg_id) WHERE client_msg_id IS NOT NULL;
CREATE INDEX messages_by_receiver ON messages (receiver_id, id);
CREATE INDEX messages_by_sender ON messages (sender_id, id);
CREATE INDEX messages_by_pair ON messages (sender_id, receiver_id, id);

CREATE TABLE trusted_contacts (
    owner_id    TEXT NOT NULL REFERENCES users (bipupu_id),
    contact_id  TEXT NOT NULL REFERENCES users (bipupu_id),
    alias       TEXT,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (owner_id, contact_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE user_blocks (
    blocker_id  TEXT NOT NULL REFERENCES users (bipupu_id),
    blocked_id  TEXT NOT NULL REFERENCES users (bipupu_id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (blocker_id, blocked_id)
) STRICT, WITHOUT ROWID;
""",
    3: """-- Service accounts: cards to them are commands; they answer and broadcast as COSMIC_BROADCAST.
-- kind: 'fortune' (a generated daily fortune), 'notice' (reaches every active user, no
-- subscription), 'custom' (sends daily_content every day when it is set).
CREATE TABLE services (
    id             TEXT PRIMARY KEY
                   CHECK (id GLOB '[a-z]*.[a-z]*' AND id NOT GLOB '*[^a-z0-9_.]*'),
    name           TEXT NOT NULL,
    description    TEXT NOT NULL,
    kind           TEXT NOT NULL CHECK (kind IN ('fortune', 'notice', 'custom')),
    commands       TEXT NOT NULL,               -- JSON {"subscribe": [...], "unsubscribe": [...], "help": [...]}
    send_time      TEXT NOT NULL DEFAULT '00:00' CHECK (send_time GLOB '[0-2][0-9]:[0-5][0-9]'),
    daily_content  TEXT,
    is_active      INTEGER NOT NULL DEFAULT 1 CHECK (is_active IN (0, 1)),
    created_at     TEXT NOT NULL
) STRICT;
INSERT INTO services (id, name, description, kind, commands, created_at) VALUES
    ('cosmic.fortune', '宇宙运势', '每天一份属于你的运势：宜忌、幸运色和幸运数字，幸运色会点亮你的 pupu。', 'fortune',
     '{"subscribe": ["TD", "订阅", "SUB"], "unsubscribe": ["退订", "STOP", "UNSUB"], "help": ["?", "HELP", "帮助"]}',
     strftime('%Y-%m-%dT%H:%M:%SZ', 'now')),
    ('bipupu.notice', '系统通知', '来自 Bipupu 管理员的公告，发给每一位用户。', 'notice',
     '{"subscribe": ["TD", "订阅", "SUB"], "unsubscribe": ["退订", "STOP", "UNSUB"], "help": ["?", "HELP", "帮助"]}',
     strftime('%Y-%m-%dT%H:%M:%SZ', 'now'));

CREATE TABLE subscriptions (
    service_id  TEXT NOT NULL REFERENCES services (id),
    bipupu_id   TEXT NOT NULL REFERENCES users (bipupu_id),
    created_at  TEXT NOT NULL,
    PRIMARY KEY (service_id, bipupu_id)
) STRICT, WITHOUT ROWID;

-- One row per (service, local day, user) that got that day's broadcast: the primary key is
-- what makes the daily broadcast exactly-once across restarts, clock jumps and double ticks.
CREATE TABLE daily_deliveries (
    service_id  TEXT NOT NULL,
    day         TEXT NOT NULL,                  -- YYYY-MM-DD in BIPUPU_TIMEZONE
    bipupu_id   TEXT NOT NULL,
    message_id  TEXT NOT NULL,
    PRIMARY KEY (service_id, day, bipupu_id)
) STRICT, WITHOUT ROWID;

-- A day's broadcast of a service that ran to its end (an unfinished one resumes at start-up).
CREATE TABLE broadcast_runs (
    service_id   TEXT NOT NULL,
    day          TEXT NOT NULL,
    finished_at  TEXT NOT NULL,
    sent         INTEGER NOT NULL,
    duration_s   REAL NOT NULL,
    PRIMARY KEY (service_id, day)
) STRICT, WITHOUT ROWID;
""",
    4: """-- The stranger quota counts only cards sent while the sender was not the receiver's contact;
-- cards stored before this column are taken as a stranger's (as they were counted until now).
ALTER TABLE messages ADD COLUMN from_stranger INTEGER NOT NULL DEFAULT 1 CHECK (from_stranger IN (0, 1));
""",
}

BUSY_TIMEOUT_MS = 5000
MAX_BATCH = 256


class DatabaseError(Exception):
    """The database cannot be opened or used; the message is one line for the operator."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer server than this one."""


def _row_dict(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row)}


def _configure_writer(conn: sqlite3.Connection) -> None:
    conn.row_factory = _row_dict
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA foreign_keys = ON")
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if next(iter(mode.values())) != "wal":
        raise DatabaseError("cannot switch the database to WAL mode")
    # A commit is on disk before it is acknowledged; group commit keeps this affordable.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA journal_size_limit = 67108864")


class Tx:
    """The writer connection as one write job sees it: inside the batch transaction, on the writer thread."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return self._conn.execute(sql, _params(params)).rowcount

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self._conn.executemany(sql, rows)

    def fetchone(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        return self._conn.execute(sql, _params(params)).fetchone()

    def fetchall(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        return self._conn.execute(sql, _params(params)).fetchall()


WriteJob = Callable[[Tx], T]


class Database:
    """One SQLite file: an aiosqlite reader, and one writer thread that group-commits write jobs.

    A write job is a plain function of a Tx. The writer task collects the jobs queued meanwhile
    and runs them as one batch on its own thread: BEGIN IMMEDIATE, a savepoint per job, one
    COMMIT (one fsync). A batch never waits on the event loop, so nothing the loop does can
    hold a write lock open, and a batch costs one thread hop however many statements it runs.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self._reader: aiosqlite.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bipupu-writer")
        self._queue: asyncio.Queue[tuple[WriteJob, asyncio.Future]] = asyncio.Queue()
        self._writer_task: asyncio.Task | None = None
        self.commits = 0  # batches committed; jobs/commits shows how well group commit works
        self.write_error: str | None = None  # why the last write failed (disk full, read-only…), until one succeeds
        self.write_error_at = 0.0  # time.monotonic() of that failure

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def open(self) -> None:
        """Open both connections, bring the schema up to date, and start the writer."""
        try:
            await self._on_writer(self._open_writer)
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            self._reader.row_factory = _row_dict
            for pragma in (f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}", "PRAGMA foreign_keys = ON",
                           "PRAGMA query_only = ON"):
                await self._reader.execute(pragma)
        except sqlite3.DatabaseError as exc:
            await self._close_connections(checkpoint=False)
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from None
        except DatabaseError:
            await self._close_connections(checkpoint=False)
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="bipupu-db-writer")

    def _open_writer(self) -> None:
        self._writer = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        _configure_writer(self._writer)
        self._migrate()
        _probe_write(Tx(self._writer), in_transaction=False)  # a read-only file opens silently: find out now

    def _migrate(self) -> None:
        conn = self._writer
        assert conn is not None
        version = conn.execute("PRAGMA user_version").fetchone()["user_version"]
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database {self.path} has schema version {version}, newer than this server's "
                f"{SCHEMA_VERSION}; run a newer bipupu-server or restore a backup"
            )
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            if conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'").fetchall():
                raise DatabaseError(f"{self.path} is an SQLite database but not a Bipupu one (user_version 0)")
            steps = [(SCHEMA_VERSION, _read_schema())]
        else:
            steps = [(n, MIGRATIONS[n]) for n in range(version + 1, SCHEMA_VERSION + 1)]
        for target, sql in steps:
            log.info("database schema: %s version %d", "creating" if version == 0 else "upgrading to", target)
            try:
                conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {target};\nCOMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    conn.rollback()
                raise

    async def close(self) -> None:
        """Finish queued writes, stop the writer, checkpoint the WAL and close."""
        if self._writer_task is not None:
            await self._queue.join()
            self._writer_task.cancel()
            try:
                await self._writer_task
            except asyncio.CancelledError:
                pass
            self._writer_task = None
        await self._close_connections()
        self._thread.shutdown(wait=True)

    async def _close_connections(self, *, checkpoint: bool = True) -> None:
        if self._reader is not None:
            await self._reader.close()
            self._reader = None
        if self._writer is not None:
            await self._on_writer(self._close_writer, checkpoint)

    def _close_writer(self, checkpoint: bool) -> None:
        conn, self._writer = self._writer, None
        if conn is None:
            return
        if checkpoint:
            try:
                conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint at close failed: %s", exc)
        conn.close()

    # Reads: on their own connection, seeing only committed data.

    async def fetchone(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        rows = await self._reading().execute_fetchall(sql, _params(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        return list(await self._reading().execute_fetchall(sql, _params(params)))

    def _reading(self) -> aiosqlite.Connection:
        if self._reader is None:
            raise DatabaseError("database is closed")
        return self._reader

    async def probe_write(self) -> None:
        """A write that changes nothing, to learn whether writes work again; raises if not."""
        await self.write(_probe_write)

    # Writes: every one funnels through the writer.

    async def write(self, job: WriteJob[T]) -> T:
        """Run `job(tx)` inside a write transaction; returns its result once it is committed to disk."""
        if self._writer_task is None:
            raise DatabaseError("database is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((job, future))
        return await asyncio.shield(future)

    async def _write_loop(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < MAX_BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                outcomes = await self._on_writer(self._run_batch, [job for job, _ in batch])
            except Exception as exc:  # BEGIN or COMMIT failed: nothing of the batch is on disk
                outcomes = [(False, exc)] * len(batch)
            failures = [v for ok, v in outcomes if not ok and isinstance(v, sqlite3.Error)
                        and not isinstance(v, sqlite3.IntegrityError)]
            if failures:
                self.write_error, self.write_error_at = str(failures[0]), time.monotonic()
            else:
                self.write_error = None
            for (_, future), (ok, value) in zip(batch, outcomes):
                if not future.done():
                    future.set_result(value) if ok else future.set_exception(value)
                self._queue.task_done()

    def _run_batch(self, jobs: list[WriteJob]) -> list[tuple[bool, Any]]:
        """One transaction for the whole batch, one savepoint per job, one fsync at COMMIT."""
        conn = self._writer
        if conn is None:
            raise DatabaseError("database is closed")
        tx = Tx(conn)
        outcomes: list[tuple[bool, Any]] = []
        conn.execute("BEGIN IMMEDIATE")
        try:
            for job in jobs:
                conn.execute("SAVEPOINT job")
                try:
                    result = job(tx)
                except Exception as exc:  # the job's own failure undoes only that job
                    conn.execute("ROLLBACK TO job")
                    conn.execute("RELEASE job")
                    outcomes.append((False, exc))
                else:
                    conn.execute("RELEASE job")
                    outcomes.append((True, result))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                try:
                    conn.execute("ROLLBACK")
                except sqlite3.Error as exc:
                    log.error("rollback after a failed batch failed: %s", exc)
            raise
        self.commits += 1
        return outcomes


def _probe_write(tx: Tx, in_transaction: bool = True) -> None:
    """Rewrite one row with its own value: a real write (a WAL frame) that changes no data."""
    if not in_transaction:
        tx.execute("BEGIN IMMEDIATE")
    tx.execute("UPDATE counters SET value = value WHERE name = 'bipupu_id'")
    if not in_transaction:
        tx.execute("COMMIT")


def _params(params: Iterable[Any] | Mapping[str, Any]) -> tuple | Mapping[str, Any]:
    """Positional parameters as a tuple; named ones (a mapping) as they are."""
    return params if isinstance(params, Mapping) else tuple(params)


def _read_schema() -> str:
    try:
        return SCHEMA_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatabaseError(f"cannot read {SCHEMA_PATH}: {exc.strerror}") from None
