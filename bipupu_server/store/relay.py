"""SQL for the BLE relay's cursor: the newest card the pupu device acknowledged, per owner."""

from __future__ import annotations

from .db import Reader, Tx


def cursor(q: Reader, owner_id: str) -> tuple[bool, str | None]:
    """(whether the owner has a cursor, the last acknowledged message id or None)."""
    row = q.fetchone("SELECT last_acked_id FROM relay_cursor WHERE owner_id = ?", (owner_id,))
    return (False, None) if row is None else (True, row["last_acked_id"])


def start_cursor(tx: Tx, owner_id: str, *, at: str) -> str | None:
    """The cursor, made on the relay's first start at the owner's newest received card (the device
    shows what comes from now on, not the whole inbox); an existing cursor is kept. Returns it."""
    tx.execute(
        "INSERT INTO relay_cursor (owner_id, last_acked_id, updated_at)"
        " SELECT :owner, (SELECT MAX(id) FROM messages WHERE receiver_id = :owner), :at"
        " WHERE NOT EXISTS (SELECT 1 FROM relay_cursor WHERE owner_id = :owner)",
        {"owner": owner_id, "at": at})
    return cursor(tx, owner_id)[1]


def advance(tx: Tx, owner_id: str, message_id: str, *, at: str) -> None:
    """The device acknowledged `message_id`: the cursor moves to it, never back."""
    tx.execute(
        "INSERT INTO relay_cursor (owner_id, last_acked_id, updated_at) VALUES (:owner, :id, :at)"
        " ON CONFLICT (owner_id) DO UPDATE SET last_acked_id = :id, updated_at = :at"
        " WHERE last_acked_id IS NULL OR last_acked_id < :id",
        {"owner": owner_id, "id": message_id, "at": at})
