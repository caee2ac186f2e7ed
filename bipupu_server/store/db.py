"""The one Database object: connection setup, migrations, reads, and the single batched writer."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, Mapping, TypeVar

import aiosqlite

log = logging.getLogger(__name__)

T = TypeVar("T")

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "schema.sql"
SCHEMA_VERSION = 2
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
}

BUSY_TIMEOUT_MS = 5000
MAX_BATCH = 256


class DatabaseError(Exception):
    """The database cannot be opened or used; the message is one line for the operator."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer server than this one."""


def _row_dict(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row)}


async def _configure(conn: aiosqlite.Connection, *, writer: bool) -> None:
    conn.row_factory = _row_dict
    await conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    await conn.execute("PRAGMA foreign_keys = ON")
    if writer:
        mode = await (await conn.execute("PRAGMA journal_mode = WAL")).fetchone()
        if mode and next(iter(mode.values())) != "wal":
            raise DatabaseError("cannot switch the database to WAL mode")
        # A commit is on disk before it is acknowledged; group commit keeps this affordable.
        await conn.execute("PRAGMA synchronous = FULL")
        await conn.execute("PRAGMA journal_size_limit = 67108864")
    else:
        await conn.execute("PRAGMA query_only = ON")


class Tx:
    """The writer connection as seen by one write job, inside the batch transaction."""

    def __init__(self, conn: aiosqlite.Connection):
        self._conn = conn

    async def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        cursor = await self._conn.execute(sql, _params(params))
        return cursor.rowcount

    async def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        await self._conn.executemany(sql, [tuple(r) for r in rows])

    async def fetchone(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        rows = await self._conn.execute_fetchall(sql, _params(params))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        return list(await self._conn.execute_fetchall(sql, _params(params)))


WriteJob = Callable[[Tx], Awaitable[T]]


class Database:
    """One SQLite file: a reader connection, and a writer task that group-commits write jobs."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self._reader: aiosqlite.Connection | None = None
        self._writer: aiosqlite.Connection | None = None
        self._queue: asyncio.Queue[tuple[WriteJob, asyncio.Future]] = asyncio.Queue()
        self._writer_task: asyncio.Task | None = None
        self.commits = 0  # batches committed; jobs/commits shows how well group commit works

    async def open(self) -> None:
        """Open both connections, bring the schema up to date, and start the writer."""
        try:
            self._writer = await aiosqlite.connect(self.path, isolation_level=None)
            await _configure(self._writer, writer=True)
            await self._migrate()
            self._reader = await aiosqlite.connect(self.path, isolation_level=None)
            await _configure(self._reader, writer=False)
        except sqlite3.DatabaseError as exc:
            await self._close_connections()
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from None
        except DatabaseError:
            await self._close_connections()
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="bipupu-db-writer")

    async def _migrate(self) -> None:
        conn = self._writer
        assert conn is not None
        version = next(iter((await (await conn.execute("PRAGMA user_version")).fetchone()).values()))
        if version > SCHEMA_VERSION:
            raise SchemaTooNew(
                f"database {self.path} has schema version {version}, newer than this server's "
                f"{SCHEMA_VERSION}; run a newer bipupu-server or restore a backup"
            )
        if version == SCHEMA_VERSION:
            return
        if version == 0:
            tables = await conn.execute_fetchall("SELECT name FROM sqlite_master WHERE type = 'table'")
            if tables:
                raise DatabaseError(f"{self.path} is an SQLite database but not a Bipupu one (user_version 0)")
            steps = [(SCHEMA_VERSION, await asyncio.to_thread(_read_schema))]
        else:
            steps = [(n, MIGRATIONS[n]) for n in range(version + 1, SCHEMA_VERSION + 1)]
        for target, sql in steps:
            log.info("database schema: upgrading to version %d", target)
            try:
                await conn.executescript(f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {target};\nCOMMIT;")
            except sqlite3.Error:
                if conn.in_transaction:
                    await conn.rollback()
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
        if self._writer is not None:
            try:
                await self._writer.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:
                log.warning("WAL checkpoint at close failed: %s", exc)
        await self._close_connections()

    async def _close_connections(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

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

    # Writes: every one funnels through the writer task.

    async def write(self, job: WriteJob[T]) -> T:
        """Run `job` inside a write transaction; returns its result once it is committed to disk."""
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
                await self._run_batch(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _run_batch(self, batch: list[tuple[WriteJob, asyncio.Future]]) -> None:
        """One transaction for the whole batch, one savepoint per job, one fsync at COMMIT."""
        conn = self._writer
        assert conn is not None
        tx = Tx(conn)
        outcomes: list[tuple[bool, Any]] = []
        try:
            await conn.execute("BEGIN IMMEDIATE")
        except sqlite3.Error as exc:
            _settle_all(batch, exc)
            return
        try:
            for job, _ in batch:
                await conn.execute("SAVEPOINT job")
                try:
                    result = await job(tx)
                except Exception as exc:  # the job's own failure undoes only that job
                    await conn.execute("ROLLBACK TO job")
                    await conn.execute("RELEASE job")
                    outcomes.append((False, exc))
                else:
                    await conn.execute("RELEASE job")
                    outcomes.append((True, result))
            await conn.execute("COMMIT")
            self.commits += 1
        except BaseException as exc:
            try:
                if conn.in_transaction:
                    await conn.execute("ROLLBACK")
            except sqlite3.Error as rollback_exc:
                log.error("rollback after failed batch failed: %s", rollback_exc)
            _settle_all(batch, exc if isinstance(exc, Exception) else DatabaseError("write cancelled"))
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), (ok, value) in zip(batch, outcomes):
            if future.done():
                continue
            if ok:
                future.set_result(value)
            else:
                future.set_exception(value)


def _params(params: Iterable[Any] | Mapping[str, Any]) -> tuple | Mapping[str, Any]:
    """Positional parameters as a tuple; named ones (a mapping) as they are."""
    return params if isinstance(params, Mapping) else tuple(params)


def _settle_all(batch: list[tuple[WriteJob, asyncio.Future]], exc: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(exc)


def _read_schema() -> str:
    try:
        return SCHEMA_PATH.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatabaseError(f"cannot read {SCHEMA_PATH}: {exc.strerror}") from None
