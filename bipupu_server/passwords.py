"""Passwords: the rule a password follows, and bcrypt hashing off the event loop."""

from __future__ import annotations

import asyncio
import secrets
from concurrent.futures import Executor
from typing import Any

import bcrypt

from .errors import Invalid

PASSWORD_MIN_BYTES, PASSWORD_MAX_BYTES = 8, 72


def check_password(raw: Any, field: str = "password") -> str:
    """Passwords are 8 to 72 bytes of UTF-8 (bcrypt's limit): longer is refused, never truncated."""
    if not isinstance(raw, str):
        raise Invalid(f"{field} must be a string", field=field)
    size = len(raw.encode("utf-8", "surrogatepass"))
    if size < PASSWORD_MIN_BYTES:
        raise Invalid(f"{field} must be at least {PASSWORD_MIN_BYTES} bytes", code="password_too_short", field=field)
    if size > PASSWORD_MAX_BYTES:
        raise Invalid(f"{field} must be at most {PASSWORD_MAX_BYTES} bytes of UTF-8", code="password_too_long", field=field)
    if "\x00" in raw or any(0xD800 <= ord(ch) <= 0xDFFF for ch in raw):
        raise Invalid(f"{field} may not contain NUL or unpaired surrogates", field=field)
    return raw


class PasswordHasher:
    """bcrypt off the event loop, on a small executor of its own so a login storm queues there."""

    def __init__(self, cost: int, executor: Executor):
        self.cost = cost
        self._executor = executor
        self._dummy: bytes | None = None

    async def hash(self, password: str) -> str:
        loop = asyncio.get_running_loop()
        hashed = await loop.run_in_executor(
            self._executor, lambda: bcrypt.hashpw(password.encode(), bcrypt.gensalt(self.cost))
        )
        return hashed.decode()

    async def verify(self, password: str, hashed: str | None) -> bool:
        """Check a password; with no hash (unknown user) spend the same time and say no."""
        loop = asyncio.get_running_loop()
        try:
            candidate = password.encode()
        except UnicodeEncodeError:  # unpaired surrogates: no stored password can match
            candidate, hashed = b"-", None
        if len(candidate) > PASSWORD_MAX_BYTES:  # never compare a truncated prefix
            hashed = None
        if hashed is None:
            if self._dummy is None:
                self._dummy = (await self.hash(secrets.token_urlsafe(12))).encode()
            target = self._dummy
        else:
            target = hashed.encode()
        try:
            ok = await loop.run_in_executor(self._executor, bcrypt.checkpw, candidate[:PASSWORD_MAX_BYTES], target)
        except ValueError:  # a malformed stored hash never matches
            return False
        return ok and hashed is not None


