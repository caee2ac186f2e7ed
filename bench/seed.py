"""Filling a stopped server's database with bench accounts and subscriptions (stdlib sqlite3 only).

Going straight to SQLite is what makes 100,000 subscribers affordable: registering them over
HTTP would cost a bcrypt hash each. The columns are those of schema.sql.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from contextlib import closing
from pathlib import Path
from typing import Iterable

LONG_AGO = "2000-01-01T00:00:00Z"  # subscribed well before any send time

COMMANDS = json.dumps({"subscribe": ["TD", "订阅", "SUB"], "unsubscribe": ["退订", "STOP", "UNSUB"],
                       "help": ["?", "HELP", "帮助"]})


def connect(db_path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(db_path, timeout=30, isolation_level=None)
    conn.execute("PRAGMA busy_timeout = 30000")
    return conn


def bipupu_id(number: int) -> str:
    return f"{number:08d}"


def add_users(db_path: Path, first: int, usernames: list[str], password_hash: str) -> list[str]:
    """Insert users with bipupu_ids first, first+1, …; returns those ids. Keeps the counter ahead."""
    ids = [bipupu_id(first + i) for i in range(len(usernames))]
    rows = ((str(uuid.uuid4()), bid, name, name.lower(), password_hash, name, LONG_AGO)
            for bid, name in zip(ids, usernames))
    with closing(connect(db_path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO users (id, bipupu_id, username, username_key, password_hash, nickname,"
                         " created_at) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        conn.execute("UPDATE counters SET value = max(value, ?) WHERE name = 'bipupu_id'", (first + len(ids) - 1,))
        conn.execute("COMMIT")
    return ids


def add_daily_service(db_path: Path, service_id: str, content: str, send_time: str) -> None:
    """A 'custom' service that sends `content` daily at `send_time` (a second broadcast, for the socket test)."""
    with closing(connect(db_path)) as conn:
        conn.execute("INSERT INTO services (id, name, description, kind, commands, send_time, daily_content,"
                     " is_active, created_at) VALUES (?, 'bench', 'bench broadcast', 'custom', ?, ?, ?, 1, ?)",
                     (service_id, COMMANDS, send_time, content, LONG_AGO))


def subscribe(db_path: Path, service_id: str, ids: Iterable[str]) -> None:
    with closing(connect(db_path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO subscriptions (service_id, bipupu_id, created_at) VALUES (?, ?, ?)",
                         ((service_id, bid, LONG_AGO) for bid in ids))
        conn.execute("COMMIT")


def set_send_time(db_path: Path, service_ids: list[str], hhmm: str) -> None:
    """Move daily broadcasts; a running server's scheduler reads it at its next wake (within a minute)."""
    with closing(connect(db_path)) as conn:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("DELETE FROM broadcast_runs")
        conn.executemany("UPDATE services SET send_time = ? WHERE id = ?", ((hhmm, s) for s in service_ids))
        conn.execute("COMMIT")


def count(db_path: Path, sql: str, params: tuple = ()) -> int:
    with closing(connect(db_path)) as conn:
        return conn.execute(sql, params).fetchone()[0]


def broadcast_durations(db_path: Path) -> dict[str, float]:
    """service_id -> duration_s of its last recorded daily broadcast (full precision)."""
    with closing(connect(db_path)) as conn:
        return {row[0]: row[1] for row in conn.execute(
            "SELECT service_id, duration_s FROM broadcast_runs ORDER BY day")}
