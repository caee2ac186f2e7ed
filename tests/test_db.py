"""The Database: batched single writer, migrations, and the schema's own guarantees."""

from __future__ import annotations

import asyncio
import logging
import re
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
    database_at_version(path, 3)  # no from_stranger column yet
    raw = sqlite3.connect(path)
    raw.execute("INSERT INTO messages (id, sender_id, receiver_id, content, msg_type, created_at)"
                " VALUES ('0190a000-0000-7000-8000-000000000001', '00000002', '00000003', 'old', 'USER_POSTCARD',"
                " '2026-11-21T00:00:00Z')")
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


# The schema in files: migrations/0001… step by step and schema.sql in one go make the same database --

def database_at_version(path, version):
    """A database as a server of that version left it: migration files 0001 to `version`, by hand."""
    raw = sqlite3.connect(path)
    for step in range(1, version + 1):
        raw.executescript(dbmod.MIGRATIONS[step])
    raw.execute(f"PRAGMA user_version = {version}")
    raw.commit()
    raw.close()


# SQLite keeps each CREATE statement's text as written, and ALTER TABLE ADD COLUMN splices the new
# column into the table's text (`…(0, 1))\n, from_stranger … (0, 1))) STRICT, WITHOUT ROWID`) where
# schema.sql has it on a line of its own, with a comment. So statements are compared as their
# tokens: comments and whitespace dropped, string literals kept whole. Token for token equal still
# covers everything the text says (columns, types, defaults, CHECKs, STRICT, WITHOUT ROWID).
SQL_TOKEN = re.compile(r"'(?:[^']|'')*'|--[^\n]*|/\*.*?\*/|\w+|[^\w\s]", re.S)


def sql_tokens(sql):
    return sql and [token for token in SQL_TOKEN.findall(sql) if not token.startswith(("--", "/*"))]


def schema_and_rows(path):
    """sqlite_master (as tokens), user_version, and every table's rows without created_at."""
    raw = sqlite3.connect(path)
    try:
        master = {(kind, name): (table, sql_tokens(sql)) for kind, name, table, sql in raw.execute(
            "SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")}
        version = raw.execute("PRAGMA user_version").fetchone()[0]
        rows = {}
        for (table,) in raw.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name").fetchall():
            cursor = raw.execute(f"SELECT * FROM {table}")
            columns = [column[0] for column in cursor.description]
            rows[table] = sorted((dict((c, v) for c, v in zip(columns, row) if c != "created_at") for row in cursor),
                                 key=repr)
    finally:
        raw.close()
    return master, version, rows


async def test_a_version_1_database_upgraded_step_by_step_is_the_one_schema_sql_creates(tmp_path, caplog):
    created, upgraded = tmp_path / "created.db", tmp_path / "upgraded.db"
    database_at_version(upgraded, 1)
    caplog.set_level(logging.INFO, logger=dbmod.log.name)
    for path in (created, upgraded):
        database = Database(path)
        await database.open()
        await database.close()
    assert [r.getMessage() for r in caplog.records if r.getMessage().startswith("database schema:")] == [
        f"database schema: creating version {dbmod.SCHEMA_VERSION}",
        *(f"database schema: upgrading to version {n}" for n in range(2, dbmod.SCHEMA_VERSION + 1))]

    master, version, rows = schema_and_rows(created)
    upgraded_master, upgraded_version, upgraded_rows = schema_and_rows(upgraded)
    assert version == upgraded_version == dbmod.SCHEMA_VERSION
    assert sorted(upgraded_master) == sorted(master)  # the same tables, indexes and triggers
    for key, (table, tokens) in master.items():
        assert upgraded_master[key] == (table, tokens), f"{key} differs: {upgraded_master[key][1]} vs {tokens}"
    # The seeds (the built-in services with their words, the bipupu_id counter) are the same too.
    assert rows["services"] and rows["counters"]
    assert upgraded_rows == rows


def test_the_migration_files_are_numbered_from_1_without_gaps_and_the_last_is_schema_version():
    names = sorted(entry.name for entry in dbmod.MIGRATIONS_PATH.iterdir())
    assert all(re.fullmatch(r"[0-9]{4}_[a-z0-9_]+\.sql", name) for name in names), names
    assert [int(name[:4]) for name in names] == list(range(1, len(names) + 1)) == sorted(dbmod.MIGRATIONS)
    assert len(names) == dbmod.SCHEMA_VERSION
    assert [(dbmod.MIGRATIONS_PATH / name).read_text(encoding="utf-8") for name in names] == [
        dbmod.MIGRATIONS[n] for n in sorted(dbmod.MIGRATIONS)]


@pytest.mark.parametrize("names, error", [
    (["0001_a.sql", "0003_c.sql"], "numbered 0001, 0002… without gaps; found 0001, 0003"),
    (["0002_b.sql"], "without gaps; found 0002"),
    (["0000_zero.sql", "0001_a.sql"], "without gaps; found 0000, 0001"),
    (["README.md"], "without gaps; found none"),
    (["0001_a.sql", "2_b.sql"], "migration 2_b.sql in"),
    (["0001_a.sql", "0001_b.sql"], "holds two migrations numbered 0001"),
])
def test_migration_files_that_do_not_count_from_1_are_refused_with_a_clear_error(tmp_path, names, error):
    for name in names:
        (tmp_path / name).write_text("SELECT 1;\n", encoding="utf-8")
    with pytest.raises(DatabaseError, match=re.escape(error)):
        dbmod._load_migrations(tmp_path)


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
