"""SQL for service accounts, subscriptions and the record of daily broadcasts."""

from __future__ import annotations

import sqlite3
from typing import Any

from .db import Reader, Tx

COLUMNS = "id, name, description, kind, commands, send_time, daily_content, is_active, created_at"


def all_services(q: Reader) -> list[dict[str, Any]]:
    return q.fetchall(f"SELECT {COLUMNS} FROM services ORDER BY id")


def by_id(q: Reader, service_id: str) -> dict[str, Any] | None:
    return q.fetchone(f"SELECT {COLUMNS} FROM services WHERE id = ?", (service_id,))


def subscribed_ids(q: Reader, bipupu_id: str) -> set[str]:
    rows = q.fetchall("SELECT service_id FROM subscriptions WHERE bipupu_id = ?", (bipupu_id,))
    return {r["service_id"] for r in rows}


def subscribe(tx: Tx, service_id: str, bipupu_id: str, now_text: str) -> bool:
    """True if this made a new subscription."""
    return tx.execute("INSERT OR IGNORE INTO subscriptions (service_id, bipupu_id, created_at) VALUES (?, ?, ?)",
                            (service_id, bipupu_id, now_text)) == 1


def unsubscribe(tx: Tx, service_id: str, bipupu_id: str) -> bool:
    return tx.execute("DELETE FROM subscriptions WHERE service_id = ? AND bipupu_id = ?",
                            (service_id, bipupu_id)) == 1


def pending_daily(q: Reader, service_id: str, day: str, subscribed_by: str, after: str,
                        limit: int) -> list[dict[str, Any]]:
    """Active subscribers (subscribed before the day's send time) who have not had the day's broadcast.

    Strictly before: created_at has whole seconds, and someone subscribing in the send second
    was told the first broadcast comes the next day.
    """
    return q.fetchall(
        "SELECT s.bipupu_id, u.cosmic_profile FROM subscriptions s JOIN users u ON u.bipupu_id = s.bipupu_id"
        " WHERE s.service_id = :service AND s.created_at < :by AND s.bipupu_id > :after AND u.is_active = 1"
        " AND NOT EXISTS (SELECT 1 FROM daily_deliveries d"
        "   WHERE d.service_id = :service AND d.day = :day AND d.bipupu_id = s.bipupu_id)"
        " ORDER BY s.bipupu_id LIMIT :limit",
        {"service": service_id, "by": subscribed_by, "after": after, "day": day, "limit": limit})


def record_deliveries(tx: Tx, service_id: str, day: str, rows: list[tuple[str, str]]) -> None:
    """Mark (bipupu_id, message_id) pairs as having had the day's broadcast (fails on a repeat)."""
    tx.executemany(
        "INSERT INTO daily_deliveries (service_id, day, bipupu_id, message_id) VALUES (?, ?, ?, ?)",
        [(service_id, day, bipupu_id, message_id) for bipupu_id, message_id in rows])


def finish_run(tx: Tx, service_id: str, day: str, now_text: str, sent: int, duration_s: float) -> None:
    tx.execute(
        "INSERT INTO broadcast_runs (service_id, day, finished_at, sent, duration_s) VALUES (?, ?, ?, ?, ?)"
        " ON CONFLICT (service_id, day) DO UPDATE SET sent = sent + excluded.sent",
        (service_id, day, now_text, sent, duration_s))


def newest_run_day(q: Reader, service_id: str) -> str | None:
    row = q.fetchone("SELECT max(day) AS day FROM broadcast_runs WHERE service_id = ?", (service_id,))
    return row["day"]


def recipients(q: Reader, service_id: str | None, after: str, limit: int) -> list[str]:
    """Active users a broadcast-now reaches: a service's subscribers, or everyone (service_id None)."""
    if service_id is None:
        rows = q.fetchall(
            "SELECT bipupu_id FROM users WHERE is_active = 1 AND bipupu_id > ? ORDER BY bipupu_id LIMIT ?",
            (after, limit))
    else:
        rows = q.fetchall(
            "SELECT s.bipupu_id FROM subscriptions s JOIN users u ON u.bipupu_id = s.bipupu_id"
            " WHERE s.service_id = ? AND u.is_active = 1 AND s.bipupu_id > ? ORDER BY s.bipupu_id LIMIT ?",
            (service_id, after, limit))
    return [r["bipupu_id"] for r in rows]


class ServiceExists(Exception):
    """A service with that id exists already."""


def create(tx: Tx, row: dict[str, Any]) -> None:
    try:
        tx.execute(
            f"INSERT INTO services ({COLUMNS}) VALUES (:id, :name, :description, :kind, :commands, :send_time,"
            " :daily_content, :is_active, :created_at)", row)
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc) or "PRIMARY" in str(exc):
            raise ServiceExists() from None
        raise


def update(tx: Tx, service_id: str, changes: dict[str, Any]) -> None:
    allowed = ("name", "description", "commands", "send_time", "daily_content", "is_active")
    names = [n for n in changes if n in allowed]
    assert len(names) == len(changes), "only editable service columns"
    if names:
        tx.execute(f"UPDATE services SET {', '.join(f'{n} = :{n}' for n in names)} WHERE id = :id",
                         {**changes, "id": service_id})


def subscriber_counts(q: Reader) -> list[dict[str, Any]]:
    """Every service with its number of subscribers and its newest finished daily run."""
    return q.fetchall(
        "SELECT s.id, s.name, s.kind, s.send_time, s.is_active,"
        " (SELECT count(*) FROM subscriptions x WHERE x.service_id = s.id) AS subscribers,"
        " (SELECT max(finished_at) FROM broadcast_runs r WHERE r.service_id = s.id) AS last_run_at"
        " FROM services s ORDER BY s.id")


def subscribers(q: Reader, service_id: str, after: str, limit: int) -> list[dict[str, Any]]:
    """A page of a service's subscribers, by bipupu_id, with who they are."""
    return q.fetchall(
        "SELECT s.bipupu_id, u.username, u.nickname, u.is_active, s.created_at FROM subscriptions s"
        " JOIN users u ON u.bipupu_id = s.bipupu_id WHERE s.service_id = ? AND s.bipupu_id > ?"
        " ORDER BY s.bipupu_id LIMIT ?", (service_id, after, limit))


def audience_size(q: Reader, service_id: str | None) -> int:
    """How many active users a broadcast-now reaches (the same people `recipients` pages through)."""
    if service_id is None:
        return q.fetchone("SELECT count(*) AS n FROM users WHERE is_active = 1")["n"]
    return q.fetchone(
        "SELECT count(*) AS n FROM subscriptions s JOIN users u ON u.bipupu_id = s.bipupu_id"
        " WHERE s.service_id = ? AND u.is_active = 1", (service_id,))["n"]
