"""SQL for login sessions and their (hashed) refresh tokens."""

from __future__ import annotations

from typing import Any

from .db import Database, Tx


def create(tx: Tx, *, session_id: str, user_id: str, now_text: str, expires_ts: int) -> None:
    tx.execute(
        "INSERT INTO sessions (id, user_id, created_at, refreshed_at, expires_ts) VALUES (?, ?, ?, ?, ?)",
        (session_id, user_id, now_text, now_text, expires_ts),
    )


def add_refresh_token(tx: Tx, *, token_hash: str, session_id: str, issued_ts: int, expires_ts: int) -> None:
    tx.execute(
        "INSERT INTO refresh_tokens (token_hash, session_id, issued_ts, expires_ts) VALUES (?, ?, ?, ?)",
        (token_hash, session_id, issued_ts, expires_ts),
    )


def refresh_token(tx: Tx, token_hash: str) -> dict[str, Any] | None:
    """The refresh token row joined with its session and user."""
    return tx.fetchone(
        "SELECT t.session_id, t.expires_ts AS token_expires_ts, t.rotated_ts, s.user_id, s.revoked_at,"
        " u.bipupu_id, u.is_active FROM refresh_tokens t JOIN sessions s ON s.id = t.session_id"
        " JOIN users u ON u.id = s.user_id WHERE t.token_hash = ?",
        (token_hash,),
    )


def mark_rotated(tx: Tx, token_hash: str, now_ts: int) -> bool:
    """Mark a refresh token as used; False if it already was."""
    changed = tx.execute(
        "UPDATE refresh_tokens SET rotated_ts = ? WHERE token_hash = ? AND rotated_ts IS NULL", (now_ts, token_hash)
    )
    return changed == 1


def touch(tx: Tx, session_id: str, *, now_text: str, expires_ts: int) -> None:
    tx.execute("UPDATE sessions SET refreshed_at = ?, expires_ts = ? WHERE id = ?", (now_text, expires_ts, session_id))


FOR_ACCESS = ("SELECT s.user_id, s.revoked_at, u.bipupu_id, u.is_active, u.is_admin"
              " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ?")


async def for_access(db: Database, session_id: str) -> dict[str, Any] | None:
    """What an access token check needs: is the session live, is its user active."""
    return await db.fetchone(FOR_ACCESS, (session_id,))


def for_access_in(tx: Tx, session_id: str) -> dict[str, Any] | None:
    """The same, inside a write job."""
    return tx.fetchone(FOR_ACCESS, (session_id,))


def revoke(tx: Tx, session_id: str, *, now_text: str, why: str) -> int:
    return tx.execute(
        "UPDATE sessions SET revoked_at = ?, revoked_why = ? WHERE id = ? AND revoked_at IS NULL",
        (now_text, why, session_id),
    )


def revoke_all(tx: Tx, user_id: str, *, now_text: str, why: str, keep: str | None = None) -> list[str]:
    """Revoke every live session of a user except `keep`; returns the revoked session ids."""
    rows = tx.fetchall(
        "SELECT id FROM sessions WHERE user_id = ? AND revoked_at IS NULL AND id IS NOT ?", (user_id, keep)
    )
    ids = [r["id"] for r in rows]
    tx.executemany(
        "UPDATE sessions SET revoked_at = ?, revoked_why = ? WHERE id = ?", [(now_text, why, sid) for sid in ids]
    )
    return ids


async def ended(db: Database, session_ids: list[str]) -> list[str]:
    """Those of the sessions that were signed out, or whose account was deactivated."""
    marks = ", ".join("?" * len(session_ids))
    rows = await db.fetchall(
        f"SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id IN ({marks})"
        " AND (s.revoked_at IS NOT NULL OR u.is_active = 0)", session_ids)
    return [r["id"] for r in rows]


def delete_lapsed_tokens(tx: Tx, now_ts: int) -> int:
    """Forget refresh tokens that have lapsed: they can no longer be used nor reused."""
    return tx.execute("DELETE FROM refresh_tokens WHERE expires_ts < ?", (now_ts,))
