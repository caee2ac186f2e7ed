"""The one Database object: connection setup, migrations, reads, and the single batched writer."""

from __future__ import annotations

import asyncio
import logging
import re
import sqlite3
import time
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable, Mapping, TypeVar


log = logging.getLogger(__name__)

T = TypeVar("T")

# Package data (setup.cfg), so an installed wheel finds it too; the repo's top-level schema.sql links here.
SCHEMA_PATH = resources.files("bipupu_server") / "schema.sql"
# The numbered steps from version 1 on: NNNN_name.sql files, package data too (MIGRATIONS below).
MIGRATIONS_PATH = resources.files("bipupu_server") / "migrations"

BUSY_TIMEOUT_MS = 5000
MAX_BATCH = 256


class DatabaseError(Exception):
    """The database cannot be opened or used; the message is one line for the operator."""


class SchemaTooNew(DatabaseError):
    """The database was written by a newer server than this one."""


_MIGRATION_NAME = re.compile(r"([0-9]{4})_[a-z0-9_]+\.sql")


def _load_migrations(directory: Traversable) -> dict[int, str]:
    """The .sql files of `directory` by number; they must be NNNN_name.sql, numbered 1, 2, 3… without gaps."""
    try:
        found = sorted((entry.name, entry) for entry in directory.iterdir() if entry.name.endswith(".sql"))
        migrations: dict[int, str] = {}
        for name, entry in found:
            match = _MIGRATION_NAME.fullmatch(name)
            if match is None:
                raise DatabaseError(f"migration {name} in {directory} is not named NNNN_name.sql")
            if int(match[1]) in migrations:
                raise DatabaseError(f"{directory} holds two migrations numbered {match[1]}")
            migrations[int(match[1])] = entry.read_text(encoding="utf-8")
    except OSError as exc:
        raise DatabaseError(f"cannot read the migrations in {directory}: {exc.strerror or exc}") from None
    if not migrations or sorted(migrations) != list(range(1, len(migrations) + 1)):
        numbers = ", ".join(f"{n:04d}" for n in sorted(migrations)) or "none"
        raise DatabaseError(f"the migrations in {directory} must be numbered 0001, 0002… without gaps; "
                            f"found {numbers}")
    return migrations


# version -> the SQL that takes a database from version-1 to version (1: the first schema). schema.sql
# is always the result of applying them all: a change goes into a new file and into schema.sql, and
# tests/test_db.py checks that the two ways give the same database.
MIGRATIONS: dict[int, str] = _load_migrations(MIGRATIONS_PATH)
SCHEMA_VERSION = max(MIGRATIONS)


def _row_dict(cursor: sqlite3.Cursor, row: tuple) -> dict[str, Any]:
    return {col[0]: value for col, value in zip(cursor.description, row)}


def connect(path: Path, *, read_only: bool = False) -> sqlite3.Connection:
    """Every connection to a Bipupu database is made here (writer, reader, backup): rows as dicts, same PRAGMAs.

    Autocommit mode: transactions are begun and ended explicitly. Usable from one thread at a time.
    """
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    try:
        conn.row_factory = _row_dict
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if read_only:
            conn.execute("PRAGMA query_only = ON")
    except BaseException:
        conn.close()
        raise
    return conn


def _configure_writer(conn: sqlite3.Connection) -> None:
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()
    if next(iter(mode.values())) != "wal":
        raise DatabaseError("cannot switch the database to WAL mode")
    # A commit is on disk before it is acknowledged; group commit keeps this affordable.
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA journal_size_limit = 67108864")


class Reader:
    """A connection as a read sees it. Store functions take one, so each is written once and serves
    both a plain read (`await db.read(fn, ...)`) and a write job (a Tx is a Reader too)."""

    __slots__ = ("_conn",)

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def fetchone(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        return self._conn.execute(sql, _params(params)).fetchone()

    def fetchall(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        return self._conn.execute(sql, _params(params)).fetchall()


class Tx(Reader):
    """The writer connection as one write job sees it: inside the batch transaction, on the writer thread."""

    __slots__ = ()

    def execute(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> int:
        """Run one statement; returns the number of rows it changed."""
        return self._conn.execute(sql, _params(params)).rowcount

    def executemany(self, sql: str, rows: Iterable[Iterable[Any]]) -> None:
        self._conn.executemany(sql, rows)


WriteJob = Callable[[Tx], T]


class Database:
    """One SQLite file: a reader thread, and one writer thread that group-commits write jobs.

    A read is a plain function of a Reader, run whole on the reader thread in one read
    transaction (one snapshot), like datasette's execute_fn. A write job is a plain function of a Tx. The writer task collects the jobs queued meanwhile
    and runs them as one batch on its own thread: BEGIN IMMEDIATE, a savepoint per job, one
    COMMIT (one fsync). A batch never waits on the event loop, so nothing the loop does can
    hold a write lock open, and a batch costs one thread hop however many statements it runs.
    """

    def __init__(self, path: Path, *, monotonic: Callable[[], float] = time.monotonic):
        self.path = Path(path)
        self._monotonic = monotonic
        self._reader: sqlite3.Connection | None = None
        self._writer: sqlite3.Connection | None = None
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bipupu-writer")
        self._read_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bipupu-reader")
        self._queue: asyncio.Queue[tuple[WriteJob, asyncio.Future]] = asyncio.Queue()
        self._writer_task: asyncio.Task | None = None
        self.commits = 0  # batches committed; jobs/commits shows how well group commit works
        self.write_error: str | None = None  # why the last write failed (disk full, read-only…), until one succeeds
        self.write_error_at = 0.0  # monotonic time of that failure

    async def _on_writer(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._thread, fn, *args)

    async def _on_reader(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._read_thread, lambda: fn(*args, **kwargs))

    async def open(self) -> None:
        """Open both connections, bring the schema up to date, and start the writer."""
        try:
            await self._on_writer(self._open_writer)
            self._reader = await self._on_reader(connect, self.path, read_only=True)
        except sqlite3.DatabaseError as exc:
            await self._close_connections(checkpoint=False)
            raise DatabaseError(f"cannot open database {self.path}: {exc}") from None
        except DatabaseError:
            await self._close_connections(checkpoint=False)
            raise
        self._writer_task = asyncio.create_task(self._write_loop(), name="bipupu-db-writer")

    def _open_writer(self) -> None:
        self._writer = connect(self.path)
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
        self._read_thread.shutdown(wait=True)

    async def _close_connections(self, *, checkpoint: bool = True) -> None:
        if self._reader is not None:
            reader, self._reader = self._reader, None
            await self._on_reader(reader.close)
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

    # Reads: on their own connection and thread, seeing only committed data.

    async def read(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `fn(reader, *args, **kwargs)` on the reader thread in one read transaction; returns its result."""
        if self._reader is None:
            raise DatabaseError("database is closed")
        return await asyncio.get_running_loop().run_in_executor(self._read_thread, self._run_read, fn, args, kwargs)

    def _run_read(self, fn: Callable[..., T], args: tuple, kwargs: dict[str, Any]) -> T:
        conn = self._reader
        if conn is None:
            raise DatabaseError("database is closed")
        conn.execute("BEGIN")
        try:
            return fn(Reader(conn), *args, **kwargs)
        finally:
            if conn.in_transaction:
                conn.execute("COMMIT")

    async def fetchone(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> dict[str, Any] | None:
        """One row of a query (for tests and tools; the server's reads are store functions)."""
        return await self.read(Reader.fetchone, sql, params)

    async def fetchall(self, sql: str, params: Iterable[Any] | Mapping[str, Any] = ()) -> list[dict[str, Any]]:
        return await self.read(Reader.fetchall, sql, params)

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
                self.write_error, self.write_error_at = str(failures[0]), self._monotonic()
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


def probe_read(q: Reader) -> None:
    """A read that touches the file: does the database answer at all."""
    q.fetchone("SELECT count(*) FROM sqlite_master")


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
