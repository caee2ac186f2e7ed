"""SQL for login sessions and their (hashed) refresh tokens."""

from __future__ import annotations

from typing import Any

from .db import Reader, Tx


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


def refresh_token(q: Reader, token_hash: str) -> dict[str, Any] | None:
    """The refresh token row joined with its session and user."""
    return q.fetchone(
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


def for_access(q: Reader, session_id: str) -> dict[str, Any] | None:
    """What an access token check needs: is the session live, is its user active."""
    return q.fetchone(FOR_ACCESS, (session_id,))


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


def ended(q: Reader, session_ids: list[str]) -> list[str]:
    """Those of the sessions that were signed out, or whose account was deactivated."""
    marks = ", ".join("?" * len(session_ids))
    rows = q.fetchall(
        f"SELECT s.id FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id IN ({marks})"
        " AND (s.revoked_at IS NOT NULL OR u.is_active = 0)", session_ids)
    return [r["id"] for r in rows]


def delete_lapsed_tokens(tx: Tx, now_ts: int) -> int:
    """Forget refresh tokens that have lapsed: they can no longer be used nor reused."""
    return tx.execute("DELETE FROM refresh_tokens WHERE expires_ts < ?", (now_ts,))


def of_user(q: Reader, user_id: str, now_ts: int) -> list[dict[str, Any]]:
    """The user's logins that can still be used (not signed out, not lapsed), newest first."""
    return q.fetchall(
        "SELECT id, kind, created_at, refreshed_at FROM sessions WHERE user_id = ? AND revoked_at IS NULL"
        " AND expires_ts > ? ORDER BY created_at DESC, id", (user_id, now_ts))


def last_seen(q: Reader, user_id: str) -> str | None:
    """When the user last logged in or refreshed a token."""
    return q.fetchone("SELECT max(refreshed_at) AS at FROM sessions WHERE user_id = ?", (user_id,))["at"]


def create_admin(tx: Tx, *, session_id: str, user_id: str, now_text: str, now_ts: int, expires_ts: int) -> None:
    """An admin page login: no refresh token; its password was checked now."""
    tx.execute(
        "INSERT INTO sessions (id, user_id, created_at, refreshed_at, expires_ts, kind, verified_ts)"
        " VALUES (?, ?, ?, ?, ?, 'admin', ?)", (session_id, user_id, now_text, now_text, expires_ts, now_ts))


ADMIN_SESSION = ("SELECT s.id, s.user_id, s.refreshed_at, s.expires_ts, s.verified_ts, s.revoked_at,"
                 " u.bipupu_id, u.username, u.is_active, u.is_admin"
                 " FROM sessions s JOIN users u ON u.id = s.user_id WHERE s.id = ? AND s.kind = 'admin'")


def admin_session(q: Reader, session_id: str) -> dict[str, Any] | None:
    return q.fetchone(ADMIN_SESSION, (session_id,))


def seen(tx: Tx, session_id: str, now_text: str) -> None:
    tx.execute("UPDATE sessions SET refreshed_at = ? WHERE id = ?", (now_text, session_id))


def verified(tx: Tx, session_id: str, now_ts: int) -> None:
    tx.execute("UPDATE sessions SET verified_ts = ? WHERE id = ?", (now_ts, session_id))
