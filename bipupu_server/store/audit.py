"""SQL for the audit log of admin actions."""

from __future__ import annotations

from typing import Any

from .db import Reader, Tx

COLUMNS = "id, at, actor_id, action, target, detail, address"


def record(tx: Tx, *, at: str, actor_id: str, action: str, target: str | None, detail: str, address: str) -> None:
    tx.execute("INSERT INTO audit_log (at, actor_id, action, target, detail, address) VALUES (?, ?, ?, ?, ?, ?)",
               (at, actor_id, action, target, detail, address))


def page(q: Reader, *, before: int | None, target: str | None, limit: int) -> list[dict[str, Any]]:
    """Newest first, below id `before`; only the entries about `target` when given."""
    return q.fetchall(
        f"SELECT {COLUMNS} FROM audit_log WHERE (:before IS NULL OR id < :before)"
        " AND (:target IS NULL OR target = :target) ORDER BY id DESC LIMIT :limit",
        {"before": before, "target": target, "limit": limit})
