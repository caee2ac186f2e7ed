"""Accounts: registration, login, sessions and profiles (no HTTP here)."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import orjson

from .clock import Clock, rfc3339
from .config import Config
from .errors import Conflict, Forbidden, Invalid, NotFound, RateLimited, Unauthorized
from .identity import BIPUPU_ID, check_nickname, check_username, username_key
from .passwords import PasswordHasher, check_password
from .ratelimit import SlidingWindow
from .store import sessions, users
from .store.db import Database, Tx
from .tokens import ACCESS, REFRESH, Claims, TokenSigner, digest


@dataclass(frozen=True)
class Principal:
    """Who an access token speaks for."""

    user_id: str
    bipupu_id: str
    session_id: str
    is_admin: bool


REFRESH_REFUSALS = {  # what a refresh or a logout found wrong with its refresh token
    "unknown": Unauthorized("the refresh token is not valid", code="invalid_token"),
    "revoked": Unauthorized("this login has been signed out", code="token_revoked"),
    "reused": Unauthorized("this refresh token was already used; the login has been signed out for safety",
                           code="refresh_token_reused"),
    "spent": Unauthorized("this refresh token was already used; log out with the newest one",
                          code="refresh_token_reused"),
    "deactivated": Forbidden("this account is deactivated", code="account_deactivated"),
}


def _refuse_refresh_token(outcome: str) -> None:
    """Raise the refusal for a write's outcome ("ok" passes)."""
    if outcome != "ok":
        refusal = REFRESH_REFUSALS[outcome]
        raise type(refusal)(refusal.message, code=refusal.code)


def me_view(row: dict[str, Any]) -> dict[str, Any]:
    """The /me object: everything about the caller except internals."""
    return {
        "bipupu_id": row["bipupu_id"],
        "username": row["username"],
        "nickname": row["nickname"],
        "avatar_url": row["avatar_url"],
        "cosmic_profile": orjson.Fragment(row["cosmic_profile"]),  # the stored JSON as it is: numbers unchanged
        "privacy": row["privacy"],
        "is_admin": bool(row["is_admin"]),
        "created_at": row["created_at"],
    }


def card_view(row: dict[str, Any]) -> dict[str, Any]:
    """The public card others may see."""
    return {"bipupu_id": row["bipupu_id"], "nickname": row["nickname"], "avatar_url": row["avatar_url"]}


class Accounts:
    """Registration, login, tokens and profiles over one Database."""

    def __init__(self, db: Database, clock: Clock, config: Config, hasher: PasswordHasher):
        self.db = db
        self.clock = clock
        self.registration_open = config.registration == "open"
        self.signer = TokenSigner(config.secret_key, clock,
                                  access_ttl_s=config.access_ttl_s, refresh_ttl_s=config.refresh_ttl_s)
        self.hasher = hasher
        self.login_failures = SlidingWindow(config.login_fail_limit, clock, enabled=config.rate_limit)
        self.login_attempts = SlidingWindow(config.login_addr_limit, clock, enabled=config.rate_limit)
        self.registrations = SlidingWindow(config.register_addr_limit, clock, enabled=config.rate_limit)

    # creating accounts

    async def create_user(self, username: Any, password: Any, nickname: Any = None, *,
                          is_admin: bool = False, with_session: bool = False) -> dict[str, Any]:
        """Create an account; with a session, also log it in. Returns /me fields (+ tokens)."""
        name, key = check_username(username)
        password = check_password(password)
        nick = name if nickname is None else check_nickname(nickname)
        if await self.db.read(users.by_username_key, key) is not None:  # spare bcrypt when it cannot succeed
            raise Conflict("this username is taken", code="username_taken", field="username")
        password_hash = await self.hasher.hash(password)
        user_id = str(uuid.uuid4())
        now = self.clock.time()

        def insert(tx: Tx) -> dict[str, Any]:
            bipupu_id = users.create(tx, users.NewUser(
                id=user_id, username=name, username_key=key, password_hash=password_hash,
                nickname=nick, is_admin=is_admin, created_at=rfc3339(now)))
            result = {"bipupu_id": bipupu_id, "username": name, "nickname": nick}
            if with_session:
                result.update(self._open_session(tx, user_id, bipupu_id))
            return result

        return await self.db.write(insert)

    async def register(self, username: Any, password: Any, nickname: Any, *, address: str) -> dict[str, Any]:
        """Self-registration, when open, limited per address."""
        if not self.registration_open:
            raise Forbidden("registration is closed on this server; ask an admin for an account",
                            code="registration_closed")
        wait = self.registrations.retry_after(address)
        if wait is not None:
            raise RateLimited("too many registrations from this address; try again later", wait)
        check_username(username)
        check_password(password)
        if nickname is not None:
            check_nickname(nickname)
        self.registrations.add(address)
        return await self.create_user(username, password, nickname, with_session=True)

    async def bootstrap_admin(self, username: str, password: str | None) -> str | None:
        """On first start (no users at all) create the admin; returns the password if generated."""
        if await self.db.read(users.count) > 0:
            return None
        generated = None
        if password is None:
            generated = password = secrets.token_urlsafe(15)
        try:
            await self.create_user(username, password, is_admin=True)
        except Invalid as exc:
            source = "BIPUPU_ADMIN_USERNAME" if exc.field == "username" else "BIPUPU_ADMIN_PASSWORD"
            raise Invalid(f"{source}: {exc.message}", field=exc.field) from None
        return generated

    # sessions and tokens

    def _open_session(self, tx: Tx, user_id: str, bipupu_id: str) -> dict[str, Any]:
        session_id = str(uuid.uuid4())
        now = self.clock.time()
        refresh, refresh_exp = self.signer.refresh(session_id)
        sessions.create(tx, session_id=session_id, user_id=user_id, now_text=rfc3339(now), expires_ts=refresh_exp)
        sessions.add_refresh_token(tx, token_hash=digest(refresh), session_id=session_id,
                                         issued_ts=int(now), expires_ts=refresh_exp)
        return self._token_pair(bipupu_id, session_id, refresh)

    def _token_pair(self, bipupu_id: str, session_id: str, refresh: str) -> dict[str, Any]:
        return {
            "access_token": self.signer.access(bipupu_id, session_id),
            "refresh_token": refresh,
            "token_type": "bearer",
            "expires_in": self.signer.access_ttl_s,
        }

    async def login(self, username: Any, password: Any, *, address: str) -> dict[str, Any]:
        """Check credentials and open a session with a token pair."""
        row = await self.check_credentials(username, password, address=address)

        def open_session(tx: Tx) -> dict[str, Any]:
            return self._open_session(tx, row["id"], row["bipupu_id"])

        tokens = await self.db.write(open_session)
        return {"bipupu_id": row["bipupu_id"], "username": row["username"], "nickname": row["nickname"], **tokens}

    async def check_credentials(self, username: Any, password: Any, *, address: str) -> dict[str, Any]:
        """The active account these credentials open, under the login limits; issues nothing.

        Same answer and cost for an unknown user and a wrong password.
        """
        if not isinstance(username, str) or not isinstance(password, str):
            raise Unauthorized("wrong username or password", code="invalid_credentials")
        key = username_key(username)[:64]
        for limiter, what in ((self.login_attempts, address), (self.login_failures, key)):
            wait = limiter.retry_after(what)
            if wait is not None:
                raise RateLimited("too many login attempts; try again later", wait, code="too_many_attempts")
        self.login_attempts.add(address)
        # The failure is counted before bcrypt, not after it: guesses sent at once then find the
        # window full instead of all passing the check while the first is still hashing.
        self.login_failures.add(key)
        row = await self.db.read(users.by_username_key, key)
        ok = await self.hasher.verify(password, row["password_hash"] if row else None)
        if not ok:
            raise Unauthorized("wrong username or password", code="invalid_credentials")
        self.login_failures.reset(key)  # the right password gives the reservation back, and the rest
        if not row["is_active"]:
            raise Forbidden("this account is deactivated", code="account_deactivated")
        return row

    async def refresh(self, token: Any) -> dict[str, Any]:
        """Rotate a refresh token; presenting an already-rotated one revokes its whole session."""
        if not isinstance(token, str):
            raise Invalid("refresh_token must be a string", field="refresh_token")
        claims = self.signer.verify(token, REFRESH)
        token_hash = digest(token)
        now = self.clock.time()

        def rotate(tx: Tx) -> tuple[str, dict[str, Any]]:
            row = sessions.refresh_token(tx, token_hash)
            if row is None or row["session_id"] != claims.sid:
                return "unknown", {}
            if row["revoked_at"] is not None:
                return "revoked", {}
            if row["rotated_ts"] is None and not row["is_active"]:  # refused, but the token stays unspent
                return "deactivated", {}
            if not sessions.mark_rotated(tx, token_hash, int(now)):
                sessions.revoke(tx, claims.sid, now_text=rfc3339(now), why="refresh token reused")
                return "reused", {}
            new_refresh, new_exp = self.signer.refresh(claims.sid)
            sessions.add_refresh_token(tx, token_hash=digest(new_refresh), session_id=claims.sid,
                                             issued_ts=int(now), expires_ts=new_exp)
            sessions.touch(tx, claims.sid, now_text=rfc3339(now), expires_ts=new_exp)
            sessions.delete_lapsed_tokens(tx, int(now))
            return "ok", self._token_pair(row["bipupu_id"], claims.sid, new_refresh)

        # The reuse revocation must be committed, so outcomes are returned rather than raised.
        outcome, pair = await self.db.write(rotate)
        _refuse_refresh_token(outcome)
        return pair

    async def authenticate(self, access_token: str) -> Principal:
        """Who an access token speaks for; the session must be live and the account active."""
        return await self.session_principal(self.signer.verify(access_token, ACCESS))

    async def session_principal(self, claims: Claims) -> Principal:
        return _principal(await self.db.read(sessions.for_access, claims.sid), claims)

    def principal_in(self, tx: Tx, claims: Claims) -> Principal:
        """The same check inside a write job, so that a postcard costs one trip to the database."""
        return _principal(sessions.for_access(tx, claims.sid), claims)

    async def ended_sessions(self, session_ids: list[str], chunk: int = 500) -> set[str]:
        """Which of these sessions can no longer be used (signed out or deactivated, by any process)."""
        ended: set[str] = set()
        for start in range(0, len(session_ids), chunk):
            ended.update(await self.db.read(sessions.ended, session_ids[start:start + chunk]))
        return ended

    async def logout(self, principal: Principal | None, refresh_token: Any, everywhere: bool) -> list[str]:
        """End one login (the token's), or all of the user's; returns the ended session ids.

        A refresh token counts only while it could still refresh: one already spent (a rotated
        copy, from a phone backup say) or of a signed-out login changes nothing.
        """
        claims = None
        if refresh_token is not None:
            if not isinstance(refresh_token, str):
                raise Invalid("refresh_token must be a string", field="refresh_token")
            claims = self.signer.verify(refresh_token, REFRESH)
        elif principal is None:
            raise Unauthorized("log out needs an access token or a refresh_token", code="missing_token")
        now_text = rfc3339(self.clock.time())

        def revoke(tx: Tx) -> tuple[str, list[str]]:
            if claims is not None:
                row = sessions.refresh_token(tx, digest(refresh_token))
                if (row is None or row["session_id"] != claims.sid
                        or (principal is not None and row["user_id"] != principal.user_id)):
                    return "unknown", []
                if row["revoked_at"] is not None:
                    return "revoked", []
                if row["rotated_ts"] is not None:
                    return "spent", []
                user_id, session_id = row["user_id"], claims.sid
            else:
                user_id, session_id = principal.user_id, principal.session_id
            if everywhere:
                return "ok", sessions.revoke_all(tx, user_id, now_text=now_text, why="logged out everywhere")
            changed = sessions.revoke(tx, session_id, now_text=now_text, why="logged out")
            return "ok", [session_id] if changed else []

        outcome, ended = await self.db.write(revoke)
        _refuse_refresh_token(outcome)
        return ended

    # profile

    async def me(self, principal: Principal) -> dict[str, Any]:
        row = await self.db.read(users.by_id, principal.user_id)
        if row is None:
            raise NotFound("account not found", code="user_not_found")
        return me_view(row)

    async def update_me(self, principal: Principal, changes: dict[str, Any]) -> dict[str, Any]:
        """Apply a partial profile update (already validated by PROFILE_RULES)."""
        def update(tx: Tx) -> None:
            users.update_profile(tx, principal.user_id, changes)

        await self.db.write(update)
        return await self.me(principal)

    async def change_password(self, principal: Principal, old: Any, new: Any) -> list[str]:
        """Change the caller's password; every other session is signed out. Returns those ids."""
        if not isinstance(old, str):
            raise Invalid("old_password must be a string", field="old_password")
        new = check_password(new, "new_password")
        row = await self.db.read(users.by_id, principal.user_id)
        if row is None or not await self.hasher.verify(old, row["password_hash"]):
            raise Forbidden("old_password is wrong", code="wrong_password")
        return await self.set_password(principal.user_id, new, keep_session=principal.session_id)

    async def reset_password(self, username: str, new: Any) -> list[str]:
        """Set a user's password (operator/admin action); every session of the user is signed out."""
        new = check_password(new)
        row = await self.db.read(users.by_username_key, username_key(username))
        if row is None:
            raise NotFound(f"no user named {username!r}", code="user_not_found")
        return await self.set_password(row["id"], new, keep_session=None)

    async def set_password(self, user_id: str, password: str, *, keep_session: str | None = None) -> list[str]:
        """Store a new password; every session but `keep_session` is signed out. Returns their ids."""
        password_hash = await self.hasher.hash(password)
        now_text = rfc3339(self.clock.time())

        def update(tx: Tx) -> list[str]:
            users.set_password_hash(tx, user_id, password_hash)
            return sessions.revoke_all(tx, user_id, now_text=now_text, why="password changed", keep=keep_session)

        return await self.db.write(update)

    async def public_card(self, bipupu_id: str) -> dict[str, Any]:
        row = await self.db.read(users.by_bipupu_id, bipupu_id) if BIPUPU_ID.fullmatch(bipupu_id) else None
        if row is None or not row["is_active"]:
            raise NotFound("no such user", code="user_not_found")
        return card_view(row)


def _principal(row: dict[str, Any] | None, claims: Claims) -> Principal:
    """The caller, if the token's session is live and its account active; else 401 or 403."""
    if row is None or row["bipupu_id"] != claims.sub:
        raise Unauthorized("the token is not valid", code="invalid_token")
    if row["revoked_at"] is not None:
        raise Unauthorized("this login has been signed out", code="token_revoked")
    if not row["is_active"]:
        raise Forbidden("this account is deactivated", code="account_deactivated")
    return Principal(user_id=row["user_id"], bipupu_id=row["bipupu_id"],
                     session_id=claims.sid, is_admin=bool(row["is_admin"]))

