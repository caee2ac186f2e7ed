"""SQL for postcards and the two mailboxes (inbox, outbox) that show them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .db import Reader, Tx

COLUMNS = "id, sender_id, receiver_id, content, msg_type, pattern, created_at"
MAX_REPLAY = 500


@dataclass(frozen=True)
class NewMessage:
    id: str
    sender_id: str
    receiver_id: str
    content: str
    msg_type: str
    pattern: str  # JSON text
    created_at: str
    client_msg_id: str | None
    dropped: bool
    from_stranger: bool = False


def insert(tx: Tx, message: NewMessage) -> None:
    tx.execute(
        f"INSERT INTO messages ({COLUMNS}, client_msg_id, in_inbox, dropped, from_stranger)"
        " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message.id, message.sender_id, message.receiver_id, message.content, message.msg_type, message.pattern,
         message.created_at, message.client_msg_id, int(not message.dropped), int(message.dropped),
         int(message.from_stranger)),
    )


def insert_many(tx: Tx, rows: list[NewMessage]) -> None:
    """Insert delivered cards in one statement batch (broadcast fan-out)."""
    tx.executemany(
        f"INSERT INTO messages ({COLUMNS}, in_inbox, dropped, from_stranger) VALUES (?, ?, ?, ?, ?, ?, ?, 1, 0, 0)",
        [(m.id, m.sender_id, m.receiver_id, m.content, m.msg_type, m.pattern, m.created_at) for m in rows],
    )


def newest_id(q: Reader) -> str | None:
    row = q.fetchone("SELECT max(id) AS id FROM messages")
    return row["id"]


def by_client_id(q: Reader, sender_id: str, client_msg_id: str) -> dict[str, Any] | None:
    return q.fetchone(
        f"SELECT {COLUMNS} FROM messages WHERE sender_id = ? AND client_msg_id = ?", (sender_id, client_msg_id))


def count_sent_since(q: Reader, sender_id: str, receiver_id: str, floor_id: str) -> int:
    """Cards a stranger sent to receiver with ids from floor_id on (dropped and deleted ones count too)."""
    row = q.fetchone(
        "SELECT count(*) AS n FROM messages WHERE sender_id = ? AND receiver_id = ? AND id >= ? AND from_stranger = 1",
        (sender_id, receiver_id, floor_id))
    return row["n"]


MAILBOXES = {
    "received": ("receiver_id = :me AND in_inbox = 1", "sender_id = :peer"),
    "sent": ("sender_id = :me AND in_outbox = 1", "receiver_id = :peer"),
}


def _visible(direction: str) -> tuple[str, str]:
    """WHERE clause of the caller's mailbox in one direction, and of its peer filter."""
    if direction == "all":
        received, sent = MAILBOXES["received"], MAILBOXES["sent"]
        return (f"(({received[0]}) OR ({sent[0]}))",
                "((receiver_id = :me AND sender_id = :peer) OR (sender_id = :me AND receiver_id = :peer))")
    return MAILBOXES[direction]


def mailbox(q: Reader, me: str, *, direction: str, limit: int, before: str | None = None,
            msg_type: str | None = None, peer: str | None = None) -> list[dict]:
    """Up to `limit` cards of the caller's mailbox, newest first (below `before`, if given)."""
    return _select(q, me, direction=direction, limit=limit, before=before, after=None, msg_type=msg_type, peer=peer,
                   order="DESC")


def since(q: Reader, me: str, after_id: str | None, *, limit: int = MAX_REPLAY, direction: str = "received",
          before: str | None = None, msg_type: str | None = None, peer: str | None = None,
          newest: bool = False) -> list[dict]:
    """Up to `limit` cards of the caller's mailbox after `after_id` (None: from the first), oldest first:
    the first `limit` of them, or with `newest` the last `limit` (the BLE relay's bounded catch-up)."""
    rows = _select(q, me, direction=direction, limit=limit, before=before, after=after_id, msg_type=msg_type,
                   peer=peer, order="DESC" if newest else "ASC")
    return rows[::-1] if newest else rows


def _select(q: Reader, me: str, *, direction: str, limit: int, before: str | None, after: str | None,
            msg_type: str | None, peer: str | None, order: str) -> list[dict]:
    visible, peer_clause = _visible(direction)
    where = [visible]
    params: dict[str, Any] = {"me": me, "peer": peer, "before": before, "after": after, "msg_type": msg_type,
                              "limit": limit}
    if peer is not None:
        where.append(peer_clause)
    if msg_type is not None:
        where.append("msg_type = :msg_type")
    if before is not None:
        where.append("id < :before")
    if after is not None:
        where.append("id > :after")
    if direction == "all":  # two index range scans rather than one scan of everything
        received, sent = MAILBOXES["received"][0], MAILBOXES["sent"][0]
        rest = " AND ".join(where[1:]) or "1"
        sql = (f"SELECT {COLUMNS} FROM (SELECT {COLUMNS} FROM messages WHERE {received} AND {rest}"
               f" UNION ALL SELECT {COLUMNS} FROM messages WHERE {sent} AND {rest})"
               f" ORDER BY id {order} LIMIT :limit")
    else:
        sql = f"SELECT {COLUMNS} FROM messages WHERE {' AND '.join(where)} ORDER BY id {order} LIMIT :limit"
    return q.fetchall(sql, params)


def visible_one(q: Reader, me: str, message_id: str) -> dict[str, Any] | None:
    return q.fetchone(
        f"SELECT {COLUMNS} FROM messages WHERE id = :id AND"
        " ((receiver_id = :me AND in_inbox = 1) OR (sender_id = :me AND in_outbox = 1))",
        {"id": message_id, "me": me})


def remove_from_mailbox(tx: Tx, me: str, message_id: str) -> bool:
    """Take a card out of the caller's mailbox (inbox, outbox or both); False if it was not there."""
    changed = tx.execute(
        "UPDATE messages SET in_inbox = CASE WHEN receiver_id = :me THEN 0 ELSE in_inbox END,"
        " in_outbox = CASE WHEN sender_id = :me THEN 0 ELSE in_outbox END"
        " WHERE id = :id AND ((receiver_id = :me AND in_inbox = 1) OR (sender_id = :me AND in_outbox = 1))",
        {"id": message_id, "me": me})
    return changed == 1


def counts_of(q: Reader, bipupu_id: str) -> dict[str, int]:
    """Cards the user sent and received (as stored, whoever has since deleted them)."""
    sent = q.fetchone("SELECT count(*) AS n FROM messages WHERE sender_id = ?", (bipupu_id,))["n"]
    received = q.fetchone("SELECT count(*) AS n FROM messages WHERE receiver_id = ? AND dropped = 0",
                          (bipupu_id,))["n"]
    return {"cards_sent": sent, "cards_received": received}


def count_from(q: Reader, floor: str) -> int:
    """Cards accepted at or after the time of message id `floor` (dropped ones too)."""
    return q.fetchone("SELECT count(*) AS n FROM messages WHERE id >= ?", (floor,))["n"]
