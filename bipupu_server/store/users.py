"""SQL for the users table and the bipupu_id counter."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from ..errors import Conflict
from .db import Reader, Tx

MAX_BIPUPU_ID = 99_999_999

PUBLIC_COLUMNS = (
    "id, bipupu_id, username, nickname, avatar_url, cosmic_profile, privacy, is_active, is_admin, created_at"
)


@dataclass(frozen=True)
class NewUser:
    id: str
    username: str
    username_key: str
    password_hash: str
    nickname: str
    is_admin: bool
    created_at: str


def create(tx: Tx, user: NewUser) -> str:
    """Insert a user with the next bipupu_id; returns that id. Refused usernames use up no number."""
    row = tx.fetchone("SELECT value FROM counters WHERE name = 'bipupu_id'")
    number = row["value"] + 1
    if number > MAX_BIPUPU_ID:
        raise Conflict("all 99,999,999 bipupu_ids are taken: this server can create no new account",
                       code="bipupu_id_exhausted")
    bipupu_id = f"{number:08d}"
    try:
        tx.execute(
            "INSERT INTO users (id, bipupu_id, username, username_key, password_hash, nickname,"
            " is_admin, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (user.id, bipupu_id, user.username, user.username_key, user.password_hash,
             user.nickname, int(user.is_admin), user.created_at),
        )
    except sqlite3.IntegrityError as exc:
        if "username_key" in str(exc):
            raise Conflict("this username is taken", code="username_taken", field="username") from None
        raise
    tx.execute("UPDATE counters SET value = ? WHERE name = 'bipupu_id'", (number,))
    return bipupu_id


def count(q: Reader) -> int:
    row = q.fetchone("SELECT count(*) AS n FROM users")
    return row["n"]


def by_username_key(q: Reader, key: str) -> dict[str, Any] | None:
    return q.fetchone(f"SELECT {PUBLIC_COLUMNS}, password_hash FROM users WHERE username_key = ?", (key,))


def by_bipupu_id(q: Reader, bipupu_id: str) -> dict[str, Any] | None:
    return q.fetchone(f"SELECT {PUBLIC_COLUMNS} FROM users WHERE bipupu_id = ?", (bipupu_id,))


def by_id(q: Reader, user_id: str) -> dict[str, Any] | None:
    return q.fetchone(f"SELECT {PUBLIC_COLUMNS}, password_hash FROM users WHERE id = ?", (user_id,))


PROFILE_FIELDS = ("nickname", "avatar_url", "cosmic_profile", "privacy")


def update_profile(tx: Tx, user_id: str, changes: dict[str, Any]) -> None:
    """Set the given profile columns (names from PROFILE_FIELDS only)."""
    if not changes:
        return
    names = [name for name in changes if name in PROFILE_FIELDS]
    assert len(names) == len(changes), "update_profile only writes profile fields"
    assignments = ", ".join(f"{name} = ?" for name in names)
    tx.execute(f"UPDATE users SET {assignments} WHERE id = ?", [changes[n] for n in names] + [user_id])


def set_password_hash(tx: Tx, user_id: str, password_hash: str) -> None:
    tx.execute("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id))


def search(q: Reader, text: str | None, key: str | None, after: str, limit: int) -> list[dict[str, Any]]:
    """Users after `after` in bipupu_id order whose username key or nickname contains the text, or whose
    bipupu_id starts with it (LIKE wildcards in the text match themselves)."""
    if text is None:
        return q.fetchall(f"SELECT {PUBLIC_COLUMNS} FROM users WHERE bipupu_id > ? ORDER BY bipupu_id LIMIT ?",
                          (after, limit))
    return q.fetchall(
        f"SELECT {PUBLIC_COLUMNS} FROM users WHERE bipupu_id > :after AND (username_key LIKE :key ESCAPE '\\'"
        " OR nickname LIKE :text ESCAPE '\\' OR bipupu_id LIKE :prefix ESCAPE '\\')"
        " ORDER BY bipupu_id LIMIT :limit",
        {"after": after, "key": f"%{_like(key or '')}%", "text": f"%{_like(text)}%", "prefix": f"{_like(text)}%",
         "limit": limit})


def _like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def active_admins(q: Reader, *, excluding: str | None = None) -> int:
    """How many active admins there are, not counting `excluding` (a user id)."""
    row = q.fetchone("SELECT count(*) AS n FROM users WHERE is_admin = 1 AND is_active = 1 AND id IS NOT ?",
                     (excluding,))
    return row["n"]


def set_active(tx: Tx, user_id: str, active: bool) -> None:
    tx.execute("UPDATE users SET is_active = ? WHERE id = ?", (int(active), user_id))


def set_admin(tx: Tx, user_id: str, admin: bool) -> None:
    tx.execute("UPDATE users SET is_admin = ? WHERE id = ?", (int(admin), user_id))

