"""Trusted contacts and blocks: whose cards reach a user (no HTTP here)."""

from __future__ import annotations

from typing import Any

from .identity import BIPUPU_ID, check_text
from .clock import Clock, rfc3339
from .errors import Conflict, Invalid, NotFound
from .store import social, users
from .store.db import Database, Tx

ALIAS_MAX = 32


def check_alias(raw: Any) -> str | None:
    if raw is None or raw == "":
        return None
    return check_text(raw, "alias", ALIAS_MAX)


class Contacts:
    """A user's trusted contacts (who may write when privacy is contacts_only) and blocks."""

    def __init__(self, db: Database, clock: Clock):
        self.db = db
        self.clock = clock

    async def _other_user(self, me: str, other: Any, field: str) -> str:
        if not isinstance(other, str):
            raise Invalid(f"{field} must be a bipupu_id string", field=field)
        if other == me:
            raise Invalid("that is you", code="self_reference", field=field)
        row = await self.db.read(users.by_bipupu_id, other) if BIPUPU_ID.fullmatch(other) else None
        if row is None or not row["is_active"]:
            raise NotFound("no such user", code="user_not_found", field=field)
        return other

    async def add(self, me: str, contact_id: Any, alias: Any = None) -> dict[str, Any]:
        contact_id = await self._other_user(me, contact_id, "contact_id")
        alias = check_alias(alias)
        now_text = rfc3339(self.clock.time())

        def add(tx: Tx) -> None:
            social.add_contact(tx, me, contact_id, alias, now_text)

        try:
            await self.db.write(add)
        except social.AlreadyThere:
            raise Conflict("already in your contacts", code="contact_exists", field="contact_id") from None
        return await self.db.read(social.contact, me, contact_id)

    async def list(self, me: str) -> list[dict[str, Any]]:
        return await self.db.read(social.contacts, me)

    async def rename(self, me: str, contact_id: str, alias: Any) -> dict[str, Any]:
        alias = check_alias(alias)

        def rename(tx: Tx) -> bool:
            return social.set_alias(tx, me, contact_id, alias)

        if not await self.db.write(rename):
            raise NotFound("not in your contacts", code="contact_not_found")
        return await self.db.read(social.contact, me, contact_id)

    async def remove(self, me: str, contact_id: str) -> None:
        def remove(tx: Tx) -> bool:
            return social.remove_contact(tx, me, contact_id)

        if not await self.db.write(remove):
            raise NotFound("not in your contacts", code="contact_not_found")

    async def block(self, me: str, blocked_id: Any) -> dict[str, Any]:
        blocked_id = await self._other_user(me, blocked_id, "blocked_id")
        now_text = rfc3339(self.clock.time())

        def block(tx: Tx) -> None:
            social.add_block(tx, me, blocked_id, now_text)

        try:
            await self.db.write(block)
        except social.AlreadyThere:
            raise Conflict("already blocked", code="block_exists", field="blocked_id") from None
        return next(b for b in await self.db.read(social.blocks, me) if b["blocked_id"] == blocked_id)

    async def blocks(self, me: str) -> list[dict[str, Any]]:
        return await self.db.read(social.blocks, me)

    async def unblock(self, me: str, blocked_id: str) -> None:
        def unblock(tx: Tx) -> bool:
            return social.remove_block(tx, me, blocked_id)

        if not await self.db.write(unblock):
            raise NotFound("not blocked", code="block_not_found")
