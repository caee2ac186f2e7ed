"""The Database: batched single writer, migrations, and the schema's own guarantees."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from bipupu_server.errors import Conflict
from bipupu_server.store import db as dbmod
from bipupu_server.store.db import Database, DatabaseError, SchemaTooNew, Tx


@pytest.fixture
async def database(tmp_path):
    database = Database(tmp_path / "t.db")
    await database.open()
    yield database
    await database.close()


async def test_fresh_database_is_wal_with_current_version(database, tmp_path):
    raw = sqlite3.connect(tmp_path / "t.db")
    assert raw.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert raw.execute("PRAGMA user_version").fetchone()[0] == dbmod.SCHEMA_VERSION
    raw.close()


async def test_concurrent_writes_share_commits(database):
    await database.write(lambda tx: tx.execute("CREATE TABLE t (n INTEGER)"))
    before = database.commits

    def insert(n):
        def job(tx: Tx):
            tx.execute("INSERT INTO t (n) VALUES (?)", (n,))
            return n
        return job

    results = await asyncio.gather(*(database.write(insert(n)) for n in range(100)))
    assert results == list(range(100))
    assert database.commits - before < 100  # group commit: fewer fsyncs than writes
    assert (await database.fetchone("SELECT count(*) AS n FROM t"))["n"] == 100


async def test_failing_job_rolls_back_alone(database):
    await database.write(lambda tx: tx.execute("CREATE TABLE t (n INTEGER UNIQUE)"))

    def good(tx: Tx):
        tx.execute("INSERT INTO t (n) VALUES (1)")

    def bad(tx: Tx):
        tx.execute("INSERT INTO t (n) VALUES (2)")
        raise Conflict("no")

    outcomes = await asyncio.gather(database.write(good), database.write(bad), return_exceptions=True)
    assert outcomes[0] is None and isinstance(outcomes[1], Conflict)
    rows = await database.fetchall("SELECT n FROM t")
    assert rows == [{"n": 1}]  # the bad job's own insert was undone, the good one kept


async def test_acknowledged_write_is_visible_to_another_connection(database, tmp_path):
    await database.write(lambda tx: tx.execute("CREATE TABLE t (n INTEGER)"))
    await database.write(lambda tx: tx.execute("INSERT INTO t VALUES (42)"))
    raw = sqlite3.connect(tmp_path / "t.db")
    assert raw.execute("SELECT n FROM t").fetchall() == [(42,)]
    raw.close()


async def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "new.db"
    raw = sqlite3.connect(path)
    raw.execute(f"PRAGMA user_version = {dbmod.SCHEMA_VERSION + 1}")
    raw.close()
    with pytest.raises(SchemaTooNew, match="newer than this server"):
        await Database(path).open()


async def test_foreign_sqlite_file_is_refused(tmp_path):
    path = tmp_path / "other.db"
    raw = sqlite3.connect(path)
    raw.execute("CREATE TABLE notes (x)")
    raw.close()
    with pytest.raises(DatabaseError, match="not a Bipupu one"):
        await Database(path).open()


async def test_corrupt_file_is_refused(tmp_path):
    path = tmp_path / "junk.db"
    path.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(DatabaseError, match="cannot open database"):
        await Database(path).open()


async def test_migrations_upgrade_an_older_database_in_order(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    database = Database(path)
    await database.open()
    await database.write(lambda tx: tx.execute("UPDATE counters SET value = 7 WHERE name = 'bipupu_id'"))
    await database.close()

    version = dbmod.SCHEMA_VERSION
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", version + 2)
    monkeypatch.setattr(dbmod, "MIGRATIONS", {
        version + 1: "CREATE TABLE extra (a TEXT);",
        version + 2: "ALTER TABLE extra ADD COLUMN b TEXT; INSERT INTO extra VALUES ('x', 'y');",
    })
    upgraded = Database(path)
    await upgraded.open()
    try:
        assert await upgraded.fetchall("SELECT a, b FROM extra") == [{"a": "x", "b": "y"}]
        assert (await upgraded.fetchone("SELECT value FROM counters"))["value"] == 7  # data kept
        assert (await upgraded.fetchone("PRAGMA user_version"))["user_version"] == version + 2
    finally:
        await upgraded.close()


async def test_a_version_3_database_keeps_its_cards_and_counts_them_as_strangers_cards(tmp_path):
    path = tmp_path / "v3.db"
    database = Database(path)
    await database.open()
    await database.close()
    raw = sqlite3.connect(path)  # what version 3 looked like: no from_stranger column
    raw.execute("ALTER TABLE messages DROP COLUMN from_stranger")
    raw.execute("INSERT INTO messages (id, sender_id, receiver_id, content, msg_type, created_at)"
                " VALUES ('0190a000-0000-7000-8000-000000000001', '00000002', '00000003', 'old', 'USER_POSTCARD',"
                " '2026-11-21T00:00:00Z')")
    raw.execute("PRAGMA user_version = 3")
    raw.commit()
    raw.close()
    upgraded = Database(path)
    await upgraded.open()
    try:
        assert (await upgraded.fetchone("PRAGMA user_version"))["user_version"] == dbmod.SCHEMA_VERSION
        assert await upgraded.fetchall("SELECT content, from_stranger FROM messages") == [
            {"content": "old", "from_stranger": 1}]
    finally:
        await upgraded.close()


async def test_failed_migration_leaves_the_database_as_it_was(tmp_path, monkeypatch):
    path = tmp_path / "old.db"
    database = Database(path)
    await database.open()
    await database.close()
    version = dbmod.SCHEMA_VERSION
    monkeypatch.setattr(dbmod, "SCHEMA_VERSION", version + 1)
    monkeypatch.setattr(dbmod, "MIGRATIONS", {version + 1: "CREATE TABLE extra (a); INSERT INTO nowhere VALUES (1);"})
    with pytest.raises(DatabaseError):
        await Database(path).open()
    raw = sqlite3.connect(path)
    assert raw.execute("PRAGMA user_version").fetchone()[0] == version
    assert raw.execute("SELECT name FROM sqlite_master WHERE name = 'extra'").fetchall() == []
    raw.close()


async def test_identity_columns_and_counter_are_guarded_by_the_schema(database):
    def add_user(tx: Tx):
        tx.execute("INSERT INTO users (id, bipupu_id, username, username_key, password_hash, nickname, created_at)"
                         " VALUES ('u1', '00000001', 'a_b', 'a_b', 'x', 'a', '2026-01-01T00:00:00Z')")
        tx.execute("UPDATE counters SET value = 1 WHERE name = 'bipupu_id'")

    await database.write(add_user)
    for statement in ("UPDATE users SET bipupu_id = '00000009'", "UPDATE users SET username = 'zz_z'",
                      "UPDATE users SET id = 'u2'", "UPDATE counters SET value = 0",
                      "INSERT INTO users (id, bipupu_id, username, username_key, password_hash, nickname, created_at)"
                      " VALUES ('u3', '123', 'c_d', 'c_d', 'x', 'c', 'now')"):
        with pytest.raises(sqlite3.IntegrityError):
            await database.write(lambda tx, s=statement: tx.execute(s))
    row = await database.fetchone("SELECT id, bipupu_id, username FROM users")
    assert row == {"id": "u1", "bipupu_id": "00000001", "username": "a_b"}


async def test_writes_after_close_are_refused(tmp_path):
    database = Database(tmp_path / "c.db")
    await database.open()
    await database.close()
    with pytest.raises(DatabaseError):
        await database.write(lambda tx: tx.execute("SELECT 1"))
    with pytest.raises(DatabaseError):
        await database.fetchone("SELECT 1")
