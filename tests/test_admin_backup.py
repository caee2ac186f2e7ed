"""The admin backup page through HTTP: a consistent hot copy of the real SQLite file, streamed, elevation, cleanup."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import closing
from pathlib import Path

import orjson

from bipupu_server import keys
from bipupu_server.admin import ELEVATION_S
from tests.conftest import (ADMIN_PASSWORD, BOB, WAIT, csrf_of, db_rows, db_write, post_card, register, sign_in,
                            until)
from tests.test_faults import small_disk  # noqa: F401  (a fixture: a real tmpfs, filled to the last byte)

PATH = "/admin/backup"


def data_dir(client) -> Path:
    return client.server.app[keys.config].data_dir


def listing(client) -> set[str]:
    """Everything in the data dir, hidden names included (a temp folder or a .partial would show here)."""
    return {entry.name for entry in os.scandir(data_dir(client))}


def open_copies() -> list[str]:
    """The files of this process still open on a backup copy (the server runs in the test's process)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if "/.backup-" in target:
            found.append(target)
    return found


async def backups_audited(client) -> list[tuple]:
    return await db_rows(client, "SELECT actor_id, target, detail, address FROM audit_log "
                                 "WHERE action = 'backup.download'")


async def download(client, **fields: str):
    token = csrf_of(await (await client.get(PATH)).text())
    return await client.post(PATH, data={"csrf": token, **fields}, allow_redirects=False)


async def signed_in(make_client, **overrides):
    """A server with these config overrides, its client signed in to the admin pages."""
    client = await make_client(**overrides)
    resp = await sign_in(client)
    assert resp.status == 303, await resp.text()
    return client


def check_copy(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
    assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal"  # one self-contained file
    return conn


async def test_signed_out_browsers_get_no_backup(client):
    resp = await client.get(PATH, allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/admin/login"
    before = listing(client)
    resp = await client.post(PATH, data={"csrf": "x"}, allow_redirects=False)
    assert resp.status == 403 and resp.content_type == "text/html"
    assert "Content-Disposition" not in resp.headers
    assert listing(client) == before
    assert await backups_audited(client) == []


async def test_a_forged_or_missing_csrf_token_gets_no_backup(admin_client):
    before = listing(admin_client)
    for data in ({}, {"csrf": "0" * 40}):
        resp = await admin_client.post(PATH, data=data, allow_redirects=False)
        assert resp.status == 403 and resp.content_type == "text/html", data
        assert "Content-Disposition" not in resp.headers
    token = csrf_of(await (await admin_client.get(PATH)).text())
    resp = await admin_client.post(PATH, data={"csrf": token}, headers={"Origin": "https://evil.example"},
                                   allow_redirects=False)
    assert resp.status == 403 and "Content-Disposition" not in resp.headers
    assert listing(admin_client) == before
    assert await backups_audited(admin_client) == []


async def test_the_page_says_what_a_backup_is_and_how_to_restore_it(admin_client):
    resp = await admin_client.get(PATH)
    assert resp.status == 200 and resp.content_type == "text/html"
    assert resp.headers["Cache-Control"] == "no-store"
    html = await resp.text()
    assert 'id="db-size">' in html and "KiB<" in html
    assert f'<form method="post" action="{PATH}">' in html and csrf_of(html)
    assert "Download backup" in html
    # The restore of the README: stop, put the file in place of bipupu.db, drop the WAL files, start.
    where = data_dir(admin_client)
    assert f"{where}/bipupu.db" in html and f"rm -f {where}/bipupu.db-wal {where}/bipupu.db-shm" in html
    assert "secret_key" in html
    zh = await (await admin_client.get(PATH, headers={"Accept-Language": "zh-CN"})).text()
    assert 'lang="zh-Hans"' in zh


async def test_a_fresh_login_downloads_a_consistent_copy(admin_client, clock, tmp_path):
    alice = await register(admin_client, "alice")
    await register(admin_client, "bob")
    sent = await post_card(admin_client, alice, BOB, "before the backup")
    assert sent.status == 201, await sent.text()
    before = listing(admin_client)

    resp = await download(admin_client)
    assert resp.status == 200, await resp.text()
    body = await resp.read()
    headers = resp.headers
    assert headers["Content-Type"] == "application/vnd.sqlite3"
    assert int(headers["Content-Length"]) == len(body)
    assert headers["Content-Disposition"].startswith('attachment; filename="bipupu-')
    assert headers["Cache-Control"] == "no-store"
    assert "frame-ancestors 'none'" in headers["Content-Security-Policy"]
    assert headers["X-Content-Type-Options"] == "nosniff"

    copy = tmp_path / "downloaded.db"
    copy.write_bytes(body)
    with closing(check_copy(copy)) as conn:
        names = {row[0] for row in conn.execute("SELECT username FROM users")}
        assert {"admin", "alice", "bob"} <= names
        assert conn.execute("SELECT sender_id, receiver_id, content FROM messages").fetchall() == [
            (alice["bipupu_id"], BOB, "before the backup")]

    audited = await backups_audited(admin_client)
    assert [(actor, target, orjson.loads(detail), address) for actor, target, detail, address in audited] == [
        ("00000001", None, {"bytes": len(body)}, "127.0.0.1")]
    assert ADMIN_PASSWORD not in audited[0][2]
    assert listing(admin_client) == before  # no temp folder, no .partial
    await until(lambda: not open_copies(), lambda: f"still open: {open_copies()}")


async def test_the_file_is_named_after_the_servers_clock_in_its_zone(make_client, clock):
    client = await signed_in(make_client, timezone="Asia/Shanghai")
    clock.advance(42)  # 2026-09-21 14:13:20 UTC + 42 s, in UTC+8
    resp = await download(client)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Disposition"] == 'attachment; filename="bipupu-20260921-221402.db"'
    await resp.read()


async def test_an_old_login_is_asked_for_the_password_again(admin_client, clock, tmp_path):
    before = listing(admin_client)
    clock.advance(ELEVATION_S + 1)
    resp = await download(admin_client)
    html = await resp.text()
    assert resp.status == 403 and resp.content_type == "text/html"
    assert 'name="confirm_password"' in html and f'action="{PATH}"' in html
    assert "Content-Disposition" not in resp.headers

    resp = await download(admin_client, confirm_password="not it")
    assert resp.status == 403 and "Wrong username or password." in await resp.text()
    assert "Content-Disposition" not in resp.headers
    assert await backups_audited(admin_client) == []
    assert listing(admin_client) == before

    resp = await download(admin_client, confirm_password=ADMIN_PASSWORD)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Content-Disposition"].startswith("attachment;")
    copy = tmp_path / "confirmed.db"
    copy.write_bytes(await resp.read())
    with closing(check_copy(copy)) as conn:
        assert conn.execute("SELECT username FROM users").fetchall() == [("admin",)]
    assert len(await backups_audited(admin_client)) == 1
    # Confirmed now: the next download within ELEVATION_S needs no password.
    clock.advance(ELEVATION_S - 1)
    resp = await download(admin_client)
    assert resp.status == 200 and resp.headers["Content-Disposition"].startswith("attachment;")
    await resp.read()


async def test_a_backup_taken_while_cards_are_being_sent_is_consistent(make_client, tmp_path):
    admin_client = await signed_in(make_client, rate_limit=False)  # 30 cards at once: no send limit
    alice = await register(admin_client, "alice")
    await register(admin_client, "bob")
    cards = [post_card(admin_client, alice, BOB, f"card {n}") for n in range(30)]
    results = await asyncio.gather(download(admin_client), download(admin_client), *cards)
    copies, sent = results[:2], results[2:]
    assert [resp.status for resp in sent] == [201] * 30
    for n, resp in enumerate(copies):
        assert resp.status == 200, await resp.text()
        path = tmp_path / f"copy{n}.db"
        path.write_bytes(await resp.read())
        with closing(check_copy(path)) as conn:
            contents = {row[0] for row in conn.execute("SELECT content FROM messages")}
            assert contents <= {f"card {n}" for n in range(30)}
    assert len(await backups_audited(admin_client)) == 2
    assert not [name for name in listing(admin_client) if name.startswith(".")]
    await until(lambda: not open_copies(), lambda: f"still open: {open_copies()}")


async def test_a_client_that_goes_away_mid_download_leaves_nothing_open(admin_client):
    # Ballast larger than the loopback socket buffers, so the server is still sending when the client leaves.
    await db_write(admin_client, "CREATE TABLE ballast (b BLOB)")
    await db_write(admin_client, "INSERT INTO ballast VALUES (zeroblob(24 * 1024 * 1024))")
    before = listing(admin_client)
    resp = await download(admin_client)
    assert resp.status == 200
    assert len(await resp.content.read(64 * 1024)) > 0
    resp.close()
    await until(lambda: not open_copies(), lambda: f"still open: {open_copies()}", timeout=WAIT * 5)
    assert listing(admin_client) == before
    # The server carries on: the page still answers.
    assert (await admin_client.get(PATH)).status == 200


async def test_a_failed_backup_is_an_html_page_not_a_traceback(admin_client):
    db_path = admin_client.server.app[keys.config].db_path
    aside = db_path.with_name("bipupu.db.aside")
    token = csrf_of(await (await admin_client.get(PATH)).text())
    # The server holds the file open and goes on; a backup, opening it by name, finds no database there.
    db_path.rename(aside)
    try:
        resp = await admin_client.post(PATH, data={"csrf": token}, allow_redirects=False)
        html = await resp.text()
    finally:
        aside.rename(db_path)
    assert resp.status == 503 and resp.content_type == "text/html"
    assert "The backup could not be made: no database at" in html
    assert "Traceback" not in html and "Content-Disposition" not in resp.headers
    assert resp.headers["Cache-Control"] == "no-store"
    assert await backups_audited(admin_client) == []
    assert not [name for name in listing(admin_client) if name.startswith(".backup-")]


async def test_a_backup_that_finds_the_disk_full_is_an_html_page_and_leaves_nothing(small_disk, make_client):
    client = await signed_in(make_client, data_dir=small_disk.path)
    token = csrf_of(await (await client.get(PATH)).text())
    before = listing(client)
    await asyncio.to_thread(small_disk.fill)
    try:
        resp = await client.post(PATH, data={"csrf": token}, allow_redirects=False)
        html = await resp.text()
    finally:
        await asyncio.to_thread(small_disk.free)
    assert resp.status == 503 and resp.content_type == "text/html", html
    assert "The backup could not be made:" in html and "full" in html
    assert "Traceback" not in html and "Content-Disposition" not in resp.headers
    assert listing(client) == before  # the half-written copy went with its folder
    assert await backups_audited(client) == []
    resp = await client.post(PATH, data={"csrf": token}, allow_redirects=False)  # room again: it works
    assert resp.status == 200 and len(await resp.read()) > 0
