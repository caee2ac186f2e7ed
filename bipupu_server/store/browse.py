"""SQL for the admin's view of every stored card: filtered pages, newest first, along the messages indexes."""

from __future__ import annotations

from typing import Any

from .db import Reader

COLUMNS = "id, sender_id, receiver_id, content, msg_type, pattern, created_at, dropped"
HIGHEST = "~"  # above every message id (ids hold only 0-9, a-f and '-'): "no upper bound"

# One statement per index, chosen by which addresses are given: `:p IS NULL OR sender_id = :p`
# would leave SQLite no index to range over, so the equalities are in the text or absent.
_LEADS = {
    (True, True): "sender_id = :sender AND receiver_id = :receiver AND ",  # messages_by_pair
    (True, False): "sender_id = :sender AND ",  # messages_by_sender
    (False, True): "receiver_id = :receiver AND ",  # messages_by_receiver
    (False, False): "",  # the primary key
}
PAGES = {
    given: (f"SELECT {COLUMNS} FROM messages WHERE {lead}id >= :low AND id < :high"
            " AND (:msg_type IS NULL OR msg_type = :msg_type) ORDER BY id DESC LIMIT :limit")
    for given, lead in _LEADS.items()
}


def page_sql(*, sender: bool, receiver: bool) -> str:
    """The statement messages_page runs when a sender and/or a receiver is given (for plan checks)."""
    return PAGES[(sender, receiver)]


def messages_page(q: Reader, *, sender: str | None, receiver: str | None, msg_type: str | None,
                  low: str | None, high: str | None, limit: int) -> list[dict[str, Any]]:
    """Up to `limit` stored cards with ids in [low, high), newest first, dropped ones included."""
    return q.fetchall(page_sql(sender=sender is not None, receiver=receiver is not None),
                      {"sender": sender, "receiver": receiver, "msg_type": msg_type, "low": low or "",
                       "high": high or HIGHEST, "limit": limit})
