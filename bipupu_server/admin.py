"""Account administration: what an admin may do to other accounts (no HTTP here; pages and CLI call it)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import orjson

from .accounts import Accounts
from .clock import Clock, rfc3339
from .errors import Conflict, Forbidden, Invalid, NotFound
from .hub import Hub
from .identity import BIPUPU_ID, username_key
from .protocol import SIGNED_OUT
from .store import audit, messages, sessions, users
from .store import services as services_store
from .store.db import Database, Tx

PAGE_DEFAULT, PAGE_MAX = 50, 200
SEARCH_MAX = 64  # characters of a search text
GENERATED_PASSWORD_BYTES = 15  # secrets.token_urlsafe(15): 20 characters, 120 bits
PAGE_IDLE_S = 30 * 60  # an admin page login ends after this long without a request
PAGE_ABSOLUTE_S = 12 * 3600  # ... and this long after the password was given, whatever happens
ELEVATION_S = 5 * 60  # dangerous actions ask for the password again when it was given longer ago
SEEN_EVERY_S = 60  # how often a page view writes down that the login is still in use
AUDIT_PAGE = 50


@dataclass(frozen=True)
class Admin:
    """Who is administering: an active admin account, checked by password (no API token issued)."""

    user_id: str
    bipupu_id: str
    username: str


@dataclass(frozen=True)
class Actor:
    """Who does an admin action, for the audit log: the admin and the address they came from."""

    admin: Admin
    address: str


@dataclass(frozen=True)
class PageSession:
    """A live admin page login."""

    session_id: str
    admin: Admin
    verified_ts: int  # when the password was last given


@dataclass(frozen=True)
class UserPage:
    """One page of users in bipupu_id order; `after` for the next page is the last id, when there is one."""

    users: list[dict[str, Any]]
    next_after: str | None


def user_row_view(row: dict[str, Any]) -> dict[str, Any]:
    """What an admin sees of an account in a list."""
    return {
        "bipupu_id": row["bipupu_id"],
        "username": row["username"],
        "nickname": row["nickname"],
        "is_active": bool(row["is_active"]),
        "is_admin": bool(row["is_admin"]),
        "created_at": row["created_at"],
    }


class AccountAdmin:
    """Search, view, create, (de)activate, reset, sign out and promote accounts.

    Every change that takes an account's access away also closes its live sockets at once
    (4003), and no change leaves the server without an active admin.
    """

    def __init__(self, db: Database, clock: Clock, accounts: Accounts, hub: Hub):
        self.db = db
        self.clock = clock
        self.accounts = accounts
        self.hub = hub

    async def check_admin(self, username: Any, password: Any, *, address: str) -> Admin:
        """The admin these credentials belong to, under the login limits; 403 for a non-admin."""
        row = await self.accounts.check_credentials(username, password, address=address)
        if not row["is_admin"]:
            raise Forbidden("this account is not an admin", code="not_admin")
        return Admin(user_id=row["id"], bipupu_id=row["bipupu_id"], username=row["username"])

    async def users(self, text: str | None = None, *, after: str | None = None,
                    limit: int = PAGE_DEFAULT) -> UserPage:
        """Accounts whose username or nickname contains `text`, or whose bipupu_id starts with it."""
        if text is not None:
            text = text.strip()
            if len(text) > SEARCH_MAX:
                raise Invalid(f"a search is at most {SEARCH_MAX} characters", field="q")
        if after is not None and not BIPUPU_ID.fullmatch(after):
            raise Invalid("after must be a bipupu_id (8 digits)", field="after")
        if not 1 <= limit <= PAGE_MAX:
            raise Invalid(f"limit must be 1 to {PAGE_MAX}", field="limit")
        rows = await self.db.read(users.search, text or None, username_key(text) if text else None,
                                  after or "", limit + 1)
        more = len(rows) > limit
        rows = rows[:limit]
        return UserPage([user_row_view(r) for r in rows], rows[-1]["bipupu_id"] if more else None)

    async def user(self, bipupu_id: str) -> dict[str, Any]:
        """One account in full: profile, activity, live sockets and sessions."""
        row = await self._row(bipupu_id)
        detail = await self.db.read(_detail, row, int(self.clock.time()))
        return {**user_row_view(row), **detail, "live_sockets": self.hub.sockets_of(bipupu_id)}

    async def create_user(self, username: Any, password: Any, nickname: Any = None, *,
                          is_admin: bool = False, by: Actor | None = None) -> dict[str, Any]:
        """Create an account (also when registration is closed); no session is opened."""
        made = await self.accounts.create_user(username, password, nickname, is_admin=is_admin)
        if by is not None:
            await self.db.write(lambda tx: self._record(tx, by, "user.create", made["bipupu_id"],
                                                        username=made["username"], is_admin=is_admin))
        return made

    async def set_active(self, bipupu_id: str, active: bool, *, by: Actor | None = None) -> dict[str, Any]:
        """Deactivate (its sockets close with 4003 at once; its logins stop working) or reactivate."""
        row = await self._row(bipupu_id)

        def change(tx: Tx) -> None:
            if not active and row["is_admin"]:
                _keep_an_admin(tx, row["id"])
            users.set_active(tx, row["id"], active)
            self._record(tx, by, "user.reactivate" if active else "user.deactivate", bipupu_id)

        await self.db.write(change)
        if not active:
            self.hub.close_user(bipupu_id, SIGNED_OUT, "account deactivated")
        return await self._view(bipupu_id)

    async def set_admin(self, bipupu_id: str, admin: bool, *, by: Actor | None = None) -> dict[str, Any]:
        """Grant or revoke admin; revoking the last active admin is refused."""
        row = await self._row(bipupu_id)

        def change(tx: Tx) -> None:
            if not admin:
                _keep_an_admin(tx, row["id"])
            users.set_admin(tx, row["id"], admin)
            self._record(tx, by, "user.grant_admin" if admin else "user.revoke_admin", bipupu_id)

        await self.db.write(change)
        return await self._view(bipupu_id)

    async def reset_password(self, bipupu_id: str, *, by: Actor | None = None) -> str:
        """Give the account a new generated password (returned, to be shown once); every login ends."""
        row = await self._row(bipupu_id)
        password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        ended = await self.accounts.set_password(row["id"], password)
        if by is not None:
            await self.db.write(lambda tx: self._record(tx, by, "user.reset_password", bipupu_id, sessions=len(ended)))
        if ended:
            self.hub.close_user(bipupu_id, SIGNED_OUT, "password reset")
        return password

    async def sign_out_everywhere(self, bipupu_id: str, *, by: Actor | None = None) -> int:
        """End every login of the account and close its sockets; returns how many logins ended."""
        row = await self._row(bipupu_id)
        now_text = rfc3339(self.clock.time())

        def revoke(tx: Tx) -> list[str]:
            ended = sessions.revoke_all(tx, row["id"], now_text=now_text, why="signed out by an admin")
            self._record(tx, by, "user.sign_out_everywhere", bipupu_id, sessions=len(ended))
            return ended

        ended = await self.db.write(revoke)
        self.hub.close_user(bipupu_id, SIGNED_OUT, "signed out by an admin")
        return len(ended)

    # Admin page logins

    async def open_page_session(self, admin: Admin, *, address: str) -> str:
        """Start an admin page login (checked by check_admin); returns its session id."""
        session_id = str(uuid.uuid4())
        now = int(self.clock.time())

        def create(tx: Tx) -> None:
            sessions.create_admin(tx, session_id=session_id, user_id=admin.user_id, now_text=rfc3339(now),
                                  now_ts=now, expires_ts=now + PAGE_ABSOLUTE_S)
            self._record(tx, Actor(admin, address), "admin.login", None)

        await self.db.write(create)
        return session_id

    async def page_session(self, session_id: str) -> PageSession | None:
        """The live admin login of this id, or None: signed out, lapsed, idle too long, no longer an active admin."""
        row = await self.db.read(sessions.admin_session, session_id)
        now = self.clock.time()
        if (row is None or row["revoked_at"] is not None or not row["is_active"] or not row["is_admin"]
                or now >= row["expires_ts"] or now - _epoch(row["refreshed_at"]) >= PAGE_IDLE_S):
            return None
        if now - _epoch(row["refreshed_at"]) >= SEEN_EVERY_S:
            await self.db.write(lambda tx: sessions.seen(tx, session_id, rfc3339(now)))
        admin = Admin(user_id=row["user_id"], bipupu_id=row["bipupu_id"], username=row["username"])
        return PageSession(session_id=session_id, admin=admin, verified_ts=row["verified_ts"] or 0)

    def elevated(self, page: PageSession) -> bool:
        """Whether the password was given recently enough for a dangerous action."""
        return self.clock.time() - page.verified_ts < ELEVATION_S

    async def verify_again(self, page: PageSession, password: Any, *, address: str) -> PageSession:
        """Check the admin's password again (under the login limits) and mark the login as just verified."""
        await self.check_admin(page.admin.username, password, address=address)
        now = int(self.clock.time())
        await self.db.write(lambda tx: sessions.verified(tx, page.session_id, now))
        return PageSession(page.session_id, page.admin, now)

    async def end_page_session(self, page: PageSession, *, address: str) -> None:
        now_text = rfc3339(self.clock.time())

        def revoke(tx: Tx) -> None:
            sessions.revoke(tx, page.session_id, now_text=now_text, why="logged out")
            self._record(tx, Actor(page.admin, address), "admin.logout", None)

        await self.db.write(revoke)

    # The audit log

    async def record(self, by: Actor, action: str, target: str | None, **detail: Any) -> None:
        """Write down an admin action done elsewhere (a broadcast, a backup)."""
        await self.db.write(lambda tx: self._record(tx, by, action, target, **detail))

    async def audit_log(self, *, before: int | None = None, target: str | None = None,
                        limit: int = AUDIT_PAGE) -> list[dict[str, Any]]:
        """The newest admin actions first (below id `before`), only those about `target` when given."""
        rows = await self.db.read(audit.page, before=before, target=target, limit=limit)
        return [{**row, "detail": orjson.loads(row["detail"])} for row in rows]

    def _record(self, tx: Tx, by: Actor | None, action: str, target: str | None, **detail: Any) -> None:
        if by is not None:
            audit.record(tx, at=rfc3339(self.clock.time()), actor_id=by.admin.bipupu_id, action=action,
                         target=target, detail=orjson.dumps(detail).decode(), address=by.address)

    async def _row(self, bipupu_id: str) -> dict[str, Any]:
        row = await self.db.read(users.by_bipupu_id, bipupu_id) if BIPUPU_ID.fullmatch(bipupu_id) else None
        if row is None:
            raise NotFound("no such user", code="user_not_found")
        return row

    async def _view(self, bipupu_id: str) -> dict[str, Any]:
        return user_row_view(await self._row(bipupu_id))


def _keep_an_admin(tx: Tx, losing_user_id: str) -> None:
    """Refuse a change that would leave no active admin (checked inside the write: no race)."""
    if users.active_admins(tx, excluding=losing_user_id) == 0:
        raise Conflict("this is the last active admin; make another admin first", code="last_admin")


def _epoch(text: str) -> float:
    """An RFC 3339 UTC time as written by clock.rfc3339, in epoch seconds."""
    return datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=timezone.utc).timestamp()


def _detail(q: Any, row: dict[str, Any], now_ts: int) -> dict[str, Any]:
    """Activity of one account, read in one snapshot."""
    live = sessions.of_user(q, row["id"], now_ts)
    return {
        "avatar_url": row["avatar_url"],
        "privacy": row["privacy"],
        "last_seen_at": sessions.last_seen(q, row["id"]),
        **messages.counts_of(q, row["bipupu_id"]),
        "sessions": live,
    }


def overview(q: Any, today_floor: str) -> dict[str, Any]:
    """The dashboard's figures from the database, in one snapshot."""
    return {"users": users.count(q), "cards_today": messages.count_from(q, today_floor),
            "services": services_store.subscriber_counts(q)}
