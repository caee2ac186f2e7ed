"""End to end: the real `run.py` in a subprocess — first start, shutdown, bad input, backup, user commands."""

from __future__ import annotations

import os
import re
import shutil
import signal
import sqlite3
import stat
import time
from contextlib import closing
from pathlib import Path
from typing import Any

import pytest

from tests.processes import (FAIL_FAST_S, STOP_TIMEOUT_S, assert_one_line_failure, call,
                             free_port, run_cli)

PASSWORD_BLOCK = "shown only this once"
ADMIN_PASSWORD = "admin-password-1"
PASSWORD = "correct horse"


# Helpers ---------------------------------------------------------------------------------------

def login(base: str, username: str, password: str) -> tuple[int, Any]:
    return call(base, "POST", "/auth/login", {"username": username, "password": password})


def assert_logs_in(base: str, username: str, password: str) -> dict[str, Any]:
    status, body = login(base, username, password)
    assert status == 200, (username, status, body)
    return body


def me(base: str, token: str) -> dict[str, Any]:
    status, body = call(base, "GET", "/me", token=token)
    assert status == 200, body
    return body


def generated_password(stdout: str) -> str:
    found = re.findall(rf"{PASSWORD_BLOCK}: (\S+)", stdout)
    assert len(found) == 1, stdout
    return found[0]


def users_in(db_file: Path) -> set[str]:
    with closing(sqlite3.connect(f"file:{db_file}?mode=ro", uri=True)) as conn:
        return {row[0] for row in conn.execute("SELECT username FROM users")}


# First start and the admin ---------------------------------------------------------------------

def test_first_start_prints_admin_password_once_and_the_key_persists(serve, tmp_path):
    data = tmp_path / "data"
    first = serve(data)
    password = generated_password(first.stdout)
    admin = assert_logs_in(first.url, "admin", password)
    assert admin["bipupu_id"] == "00000001"
    profile = me(first.url, admin["access_token"])
    assert (profile["username"], profile["is_admin"]) == ("admin", True)

    key_file = data / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    key = key_file.read_bytes()
    assert len(key.strip()) >= 32
    assert first.stop() == 0
    assert first.stdout.count(PASSWORD_BLOCK) == 1
    assert password not in first.stderr

    second = serve(data)
    assert PASSWORD_BLOCK not in second.stdout and password not in second.stdout
    assert key_file.read_bytes() == key
    assert me(second.url, admin["access_token"])["bipupu_id"] == "00000001"  # same key: old token valid
    assert_logs_in(second.url, "admin", password)
    assert second.stop() == 0
    assert password not in second.stderr and password not in second.stdout


def test_admin_from_environment_and_first_registration_is_00000002(serve):
    root_password = "root-admin-pass-1"
    server = serve(BIPUPU_ADMIN_USERNAME="root_admin", BIPUPU_ADMIN_PASSWORD=root_password)
    assert PASSWORD_BLOCK not in server.stdout and root_password not in server.stdout

    admin = assert_logs_in(server.url, "root_admin", root_password)
    assert admin["bipupu_id"] == "00000001"
    profile = me(server.url, admin["access_token"])
    assert (profile["username"], profile["is_admin"]) == ("root_admin", True)
    assert login(server.url, "admin", root_password)[0] == 401  # no default "admin" besides it

    status, star = call(server.url, "POST", "/auth/register", {"username": "星语者_7", "password": PASSWORD})
    assert status == 201, star
    assert star["bipupu_id"] == "00000002"
    profile = me(server.url, star["access_token"])
    assert (profile["username"], profile["is_admin"]) == ("星语者_7", False)
    assert server.stop() == 0
    assert root_password not in server.stderr


# Shutdown --------------------------------------------------------------------------------------

def test_sigterm_exits_zero_and_checkpoints_the_wal(serve, tmp_path):
    data = tmp_path / "data"
    server = serve(data, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    for name in ("vega", "altair", "deneb"):
        assert call(server.url, "POST", "/auth/register", {"username": name, "password": PASSWORD})[0] == 201
    wal = data / "bipupu.db-wal"
    assert wal.exists() and wal.stat().st_size > 0  # there is something to checkpoint

    began = time.monotonic()
    assert server.stop(signal.SIGTERM) == 0
    assert time.monotonic() - began < STOP_TIMEOUT_S
    assert "stopped cleanly" in server.stderr
    assert "Traceback" not in server.stderr
    assert not wal.exists() or wal.stat().st_size == 0
    assert {"admin", "vega", "altair", "deneb"} <= users_in(data / "bipupu.db")


def test_ctrl_c_exits_zero(serve):
    server = serve(BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert server.stop(signal.SIGINT) == 0
    assert "stopped cleanly" in server.stderr
    assert "Traceback" not in server.stderr


# Bad input -------------------------------------------------------------------------------------

BAD_INPUT = [
    # (id, extra args, environment, exit status, prefix, words the line must hold)
    ("unknown-flag", ["--nope"], {}, 2, "run.py: error:", ["--nope"]),
    ("port-flag-not-a-number", ["--port", "abc"], {}, 2, "run.py: error:", ["--port", "abc"]),
    ("port-env-not-a-number", [], {"BIPUPU_PORT": "abc"}, 1, "bipupu: error:", ["BIPUPU_PORT"]),
    ("bcrypt-cost-out-of-range", [], {"BIPUPU_BCRYPT_COST": "99"}, 1, "bipupu: error:", ["BIPUPU_BCRYPT_COST"]),
    ("registration-unknown", [], {"BIPUPU_REGISTRATION": "maybe"}, 1, "bipupu: error:", ["BIPUPU_REGISTRATION"]),
    ("rate-limit-unknown", [], {"BIPUPU_RATE_LIMIT": "sometimes"}, 1, "bipupu: error:", ["BIPUPU_RATE_LIMIT"]),
    ("unknown-time-zone", [], {"BIPUPU_TIMEZONE": "Mars/Olympus"}, 1, "bipupu: error:", ["Mars/Olympus"]),
    ("trusted-proxy-not-an-address", [], {"BIPUPU_TRUSTED_PROXIES": "127.0.0.1, proxy.lan"}, 1, "bipupu: error:",
     ["BIPUPU_TRUSTED_PROXIES", "proxy.lan"]),
    ("connection-cap-negative", [], {"BIPUPU_LIMIT_CONNECTIONS": "-1"}, 1, "bipupu: error:",
     ["BIPUPU_LIMIT_CONNECTIONS"]),
    ("cors-origin-with-a-path", [], {"BIPUPU_CORS_ORIGINS": "https://app.example/mailbox"}, 1, "bipupu: error:",
     ["BIPUPU_CORS_ORIGINS"]),
    ("body-timeout-zero", [], {"BIPUPU_BODY_TIMEOUT": "0"}, 1, "bipupu: error:", ["BIPUPU_BODY_TIMEOUT"]),
    ("access-log-unknown", [], {"BIPUPU_ACCESS_LOG": "verbose"}, 1, "bipupu: error:", ["BIPUPU_ACCESS_LOG"]),
    ("data-dir-is-a-file", ["--data-dir", "{file}"], {}, 1, "bipupu: error:", ["{file}", "not a directory"]),
    ("data-dir-under-a-file", ["--data-dir", "{file}/data"], {}, 1, "bipupu: error:", ["{file}/data"]),
    ("admin-password-too-short", [], {"BIPUPU_ADMIN_PASSWORD": "short"}, 1, "bipupu: error:",
     ["BIPUPU_ADMIN_PASSWORD"]),
    ("ble-device-without-owner", [], {"BIPUPU_BLE_DEVICE": "pupu-1"}, 1, "bipupu: error:",
     ["BIPUPU_BLE_DEVICE is set but BIPUPU_BLE_OWNER is not"]),
    ("ble-uuid-not-a-uuid", [], {"BIPUPU_BLE_SERVICE_UUID": "nordic"}, 1, "bipupu: error:",
     ["BIPUPU_BLE_SERVICE_UUID", "'nordic'"]),
]


@pytest.mark.parametrize("args, env, status, prefix, words", [case[1:] for case in BAD_INPUT],
                         ids=[case[0] for case in BAD_INPUT])
def test_bad_input_exits_with_one_line(tmp_path, args, env, status, prefix, words):
    regular_file = tmp_path / "not-a-dir"
    regular_file.write_text("a regular file\n")
    args = [arg.replace("{file}", str(regular_file)) for arg in args]
    words = [word.replace("{file}", str(regular_file)) for word in words]
    command = ["--host", "127.0.0.1"]
    if "--port" not in args and "BIPUPU_PORT" not in env:  # a flag would win over BIPUPU_PORT
        command += ["--port", str(free_port())]  # should it start anyway, it must not take 8080
    if "--data-dir" not in args:
        command += ["--data-dir", str(tmp_path / "data")]
    result = run_cli(tmp_path, *command, *args, timeout=FAIL_FAST_S, **env)
    line = assert_one_line_failure(result, status, prefix)
    for word in words:
        assert word in line, line
    assert regular_file.read_text() == "a regular file\n"


def _newer_schema(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE future_things (x)")
        conn.execute("PRAGMA user_version = 99")
        conn.commit()


def _random_bytes(db: Path) -> None:
    db.write_bytes(os.urandom(16384))


def _foreign_database(db: Path) -> None:
    with closing(sqlite3.connect(db)) as conn:
        conn.execute("CREATE TABLE recipes (name TEXT)")
        conn.execute("INSERT INTO recipes VALUES ('dumplings')")
        conn.commit()


@pytest.mark.parametrize("prepare, message", [
    (_newer_schema, r"newer"),
    (_random_bytes, r"bipupu\.db"),
    (_foreign_database, r"not a bipupu"),
], ids=["user-version-99", "random-bytes", "unrelated-sqlite-file"])
def test_database_refused_at_start_with_one_line(tmp_path, prepare, message):
    data = tmp_path / "data"
    data.mkdir()
    db = data / "bipupu.db"
    prepare(db)
    before = db.read_bytes() if prepare is _random_bytes else None
    result = run_cli(tmp_path, "--host", "127.0.0.1", "--port", str(free_port()), data_dir=data,
                     timeout=FAIL_FAST_S, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    line = assert_one_line_failure(result)
    assert re.search(message, line, re.IGNORECASE), line
    if before is not None:
        assert db.read_bytes() == before
    else:  # refused means untouched: no schema of ours was added, the version is what it was
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        assert "users" not in tables
        assert version == (99 if prepare is _newer_schema else 0)


# Backup and restore ----------------------------------------------------------------------------

def test_backup_without_a_database_fails_with_one_line(tmp_path):
    target = tmp_path / "backup.db"
    result = run_cli(tmp_path, "backup", str(target), data_dir=tmp_path / "empty")
    line = assert_one_line_failure(result)
    assert "no database" in line, line
    assert not target.exists()


def test_hot_backup_while_serving_then_restore_it(serve, tmp_path):
    data = tmp_path / "data"
    server = serve(data, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    people = {"alice": "alice-pass-1", "bob": "bob-pass-22", "星语者_7": "star-pass-333"}
    for name, password in people.items():
        assert call(server.url, "POST", "/auth/register", {"username": name, "password": password})[0] == 201

    target = tmp_path / "backups" / "bipupu-backup.db"
    target.parent.mkdir()
    result = run_cli(tmp_path, "backup", str(target), data_dir=data)
    assert result.returncode == 0, result.stderr
    assert str(target) in result.stdout
    assert not Path(f"{target}-wal").exists()
    assert target.stat().st_mode & 0o777 == 0o600  # it holds password hashes: the owner's alone, whatever the umask
    with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal"
    assert {"admin", *people} <= users_in(target)

    # The server goes on; a user registered after the backup must vanish with the restore.
    assert call(server.url, "POST", "/auth/register", {"username": "latecomer", "password": PASSWORD})[0] == 201
    assert server.stop() == 0
    for suffix in ("", "-wal", "-shm"):
        (data / f"bipupu.db{suffix}").unlink(missing_ok=True)
    shutil.copyfile(target, data / "bipupu.db")

    restored = serve(data, BIPUPU_ADMIN_PASSWORD="ignored-after-first-start")
    for name, password in people.items():
        assert_logs_in(restored.url, name, password)
    assert_logs_in(restored.url, "admin", ADMIN_PASSWORD)
    assert login(restored.url, "latecomer", PASSWORD)[0] == 401
    assert PASSWORD_BLOCK not in restored.stdout


# create-user and reset-password ----------------------------------------------------------------

def test_create_user_works_with_registration_closed(serve, tmp_path):
    data = tmp_path / "data"
    server = serve(data, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD, BIPUPU_REGISTRATION="closed")
    status, body = call(server.url, "POST", "/auth/register", {"username": "walkin", "password": PASSWORD})
    assert status == 403, body
    assert body["error"]["code"] == "registration_closed"

    made = run_cli(tmp_path, "create-user", "--username", "stella", "--password-stdin",
                   data_dir=data, stdin="stella-pass-1\n", BIPUPU_REGISTRATION="closed")
    assert made.returncode == 0, made.stderr
    assert "00000002" in made.stdout
    stella = assert_logs_in(server.url, "stella", "stella-pass-1")
    assert stella["bipupu_id"] == "00000002"
    assert me(server.url, stella["access_token"])["is_admin"] is False

    made = run_cli(tmp_path, "create-user", "--username", "vega", "--admin", "--password-stdin",
                   data_dir=data, stdin="vega-pass-12\n")
    assert made.returncode == 0, made.stderr
    assert "00000003" in made.stdout
    vega = assert_logs_in(server.url, "vega", "vega-pass-12")
    assert me(server.url, vega["access_token"])["is_admin"] is True

    made = run_cli(tmp_path, "create-user", "--username", "nova", "--generate", data_dir=data)
    assert made.returncode == 0, made.stderr
    found = re.findall(r"password: (\S+)", made.stdout)
    assert len(found) == 1, made.stdout
    assert assert_logs_in(server.url, "nova", found[0])["bipupu_id"] == "00000004"

    no_terminal = run_cli(tmp_path, "create-user", "--username", "orion", data_dir=data)
    line = assert_one_line_failure(no_terminal)
    assert "--password-stdin" in line, line
    taken = run_cli(tmp_path, "create-user", "--username", "Stella", "--password-stdin",
                    data_dir=data, stdin="another-pass-1\n")
    assert_one_line_failure(taken)
    assert login(server.url, "stella", "another-pass-1")[0] == 401
    assert {"admin", "stella", "vega", "nova"} == users_in(data / "bipupu.db")


def test_create_user_on_an_empty_data_dir_bootstraps_the_admin(serve, tmp_path):
    data = tmp_path / "data"
    made = run_cli(tmp_path, "create-user", "--username", "stella", "--password-stdin",
                   data_dir=data, stdin="stella-pass-1\n")
    assert made.returncode == 0, made.stderr
    admin_password = generated_password(made.stdout)
    assert "00000002" in made.stdout
    assert admin_password not in made.stderr

    server = serve(data)
    assert PASSWORD_BLOCK not in server.stdout
    admin = assert_logs_in(server.url, "admin", admin_password)
    assert admin["bipupu_id"] == "00000001"
    assert me(server.url, admin["access_token"])["is_admin"] is True
    assert assert_logs_in(server.url, "stella", "stella-pass-1")["bipupu_id"] == "00000002"


def test_reset_password_signs_out_every_session(serve, tmp_path):
    data = tmp_path / "data"
    server = serve(data, BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    old, new = "luna-old-pass", "luna-new-pass"
    status, luna = call(server.url, "POST", "/auth/register", {"username": "luna", "password": old})
    assert status == 201, luna
    me(server.url, luna["access_token"])

    reset = run_cli(tmp_path, "reset-password", "luna", "--password-stdin", data_dir=data, stdin=f"{new}\n")
    assert reset.returncode == 0, reset.stderr
    assert call(server.url, "GET", "/me", token=luna["access_token"])[0] == 401
    assert call(server.url, "POST", "/auth/refresh", {"refresh_token": luna["refresh_token"]})[0] == 401
    assert login(server.url, "luna", old)[0] == 401
    assert_logs_in(server.url, "luna", new)

    unknown = run_cli(tmp_path, "reset-password", "ghost", "--password-stdin", data_dir=data, stdin=f"{new}\n")
    assert "ghost" in assert_one_line_failure(unknown)
    too_short = run_cli(tmp_path, "reset-password", "luna", "--password-stdin", data_dir=data, stdin="short\n")
    assert_one_line_failure(too_short)
    assert_logs_in(server.url, "luna", new)


# Access log ------------------------------------------------------------------------------------

def test_there_is_no_access_log_unless_asked_for(serve):
    server = serve(BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD)
    assert call(server.url, "GET", "/health?probe=1")[0] == 200
    assert call(server.url, "GET", "/nowhere")[0] == 404
    assert server.stop() == 0
    assert "/health" not in server.stderr and "/nowhere" not in server.stderr
    assert "bipupu-server" in server.stderr  # the start-up line is there: logging works, only requests are not logged


def test_access_log_redacts_secrets_in_query_strings(serve):
    server = serve(BIPUPU_ADMIN_PASSWORD=ADMIN_PASSWORD, BIPUPU_ACCESS_LOG="on")
    assert call(server.url, "GET", "/health?token=SECRET123")[0] == 200
    assert call(server.url, "GET", "/health?a=1&refresh_token=SECRET456&password=SECRET789")[0] == 200
    assert server.stop() == 0
    log = server.stderr
    assert "/health?token=[redacted]" in log, log
    assert "refresh_token=[redacted]" in log and "password=[redacted]" in log, log
    assert "a=1" in log  # only the secrets go
    for secret in ("SECRET123", "SECRET456", "SECRET789"):
        assert secret not in log and secret not in server.stdout
