"""SQL for trusted contacts and blocks, and the relationship a card's delivery depends on."""

from __future__ import annotations

import sqlite3
from typing import Any

from .db import Reader, Tx


def recipient(q: Reader, receiver_id: str, sender_id: str) -> dict[str, Any] | None:
    """The receiver's state as it bears on a card from sender: active, privacy, blocked, trusted."""
    return q.fetchone(
        "SELECT u.is_active, u.privacy,"
        " EXISTS (SELECT 1 FROM user_blocks WHERE blocker_id = u.bipupu_id AND blocked_id = :sender) AS blocked,"
        " EXISTS (SELECT 1 FROM trusted_contacts WHERE owner_id = u.bipupu_id AND contact_id = :sender) AS trusted"
        " FROM users u WHERE u.bipupu_id = :receiver",
        {"receiver": receiver_id, "sender": sender_id})


class AlreadyThere(Exception):
    """The pair already exists."""


def add_contact(tx: Tx, owner: str, contact: str, alias: str | None, now_text: str) -> None:
    try:
        tx.execute("INSERT INTO trusted_contacts (owner_id, contact_id, alias, created_at) VALUES (?, ?, ?, ?)",
                         (owner, contact, alias, now_text))
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise AlreadyThere() from None
        raise


CONTACT_VIEW = ("SELECT c.contact_id, c.alias, u.nickname, u.avatar_url, c.created_at FROM trusted_contacts c"
                " JOIN users u ON u.bipupu_id = c.contact_id")


def contacts(q: Reader, owner: str) -> list[dict[str, Any]]:
    return q.fetchall(f"{CONTACT_VIEW} WHERE c.owner_id = ? ORDER BY c.created_at, c.contact_id", (owner,))


def contact(q: Reader, owner: str, contact_id: str) -> dict[str, Any] | None:
    return q.fetchone(f"{CONTACT_VIEW} WHERE c.owner_id = ? AND c.contact_id = ?", (owner, contact_id))


def set_alias(tx: Tx, owner: str, contact_id: str, alias: str | None) -> bool:
    return tx.execute("UPDATE trusted_contacts SET alias = ? WHERE owner_id = ? AND contact_id = ?",
                            (alias, owner, contact_id)) == 1


def remove_contact(tx: Tx, owner: str, contact_id: str) -> bool:
    return tx.execute("DELETE FROM trusted_contacts WHERE owner_id = ? AND contact_id = ?",
                            (owner, contact_id)) == 1


def add_block(tx: Tx, blocker: str, blocked: str, now_text: str) -> None:
    try:
        tx.execute("INSERT INTO user_blocks (blocker_id, blocked_id, created_at) VALUES (?, ?, ?)",
                         (blocker, blocked, now_text))
    except sqlite3.IntegrityError as exc:
        if "UNIQUE" in str(exc):
            raise AlreadyThere() from None
        raise


def blocks(q: Reader, blocker: str) -> list[dict[str, Any]]:
    return q.fetchall(
        "SELECT b.blocked_id, u.nickname, u.avatar_url, b.created_at FROM user_blocks b"
        " JOIN users u ON u.bipupu_id = b.blocked_id WHERE b.blocker_id = ? ORDER BY b.created_at, b.blocked_id",
        (blocker,))


def remove_block(tx: Tx, blocker: str, blocked: str) -> bool:
    return tx.execute("DELETE FROM user_blocks WHERE blocker_id = ? AND blocked_id = ?",
                            (blocker, blocked)) == 1
