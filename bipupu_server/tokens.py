"""Typed, signed tokens: short-lived access tokens and rotating refresh tokens."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeSerializer

from .clock import Clock
from .errors import Unauthorized

ACCESS = "access"
REFRESH = "refresh"
VERIFIED_CACHE = 4096  # tokens remembered as correctly signed (type and expiry are checked every time)


@dataclass(frozen=True)
class Claims:
    typ: str
    sid: str  # the session (login) the token belongs to
    sub: str | None  # bipupu_id, in access tokens
    exp: int


class TokenSigner:
    """Signs and checks tokens with the server's secret; expiry is judged by the injected clock."""

    def __init__(self, secret: str, clock: Clock, *, access_ttl_s: int, refresh_ttl_s: int):
        # One fixed algorithm (HMAC-SHA256), never read from the token: no algorithm confusion.
        self._serializer = URLSafeSerializer(
            secret, salt="bipupu.token.v1", signer_kwargs={"digest_method": hashlib.sha256}
        )
        self._clock = clock
        self.access_ttl_s = access_ttl_s
        self.refresh_ttl_s = refresh_ttl_s
        self._verified: dict[str, Claims] = {}  # token -> its claims, once its signature checked out

    def access(self, bipupu_id: str, session_id: str) -> str:
        exp = int(self._clock.time()) + self.access_ttl_s
        return self._serializer.dumps({"typ": ACCESS, "sid": session_id, "sub": bipupu_id, "exp": exp})

    def refresh(self, session_id: str) -> tuple[str, int]:
        """A new refresh token and its expiry (epoch seconds); the random part makes each unique."""
        exp = int(self._clock.time()) + self.refresh_ttl_s
        token = self._serializer.dumps({"typ": REFRESH, "sid": session_id, "n": secrets.token_urlsafe(24), "exp": exp})
        return token, exp

    def verify(self, token: str, expected: str) -> Claims:
        """Check signature, type and expiry; raises Unauthorized with a specific code."""
        claims = self._verified.get(token)  # an App sends the same token on every request
        if claims is None:
            claims = self._check_signature(token)
            if len(self._verified) >= VERIFIED_CACHE:
                del self._verified[next(iter(self._verified))]
            self._verified[token] = claims
        if claims.typ != expected:
            raise Unauthorized(f"this is not an {expected} token" if expected == ACCESS else f"this is not a {expected} token",
                               code="wrong_token_type")
        if claims.exp <= self._clock.time():
            raise Unauthorized("the token has expired", code="token_expired")
        return claims

    def _check_signature(self, token: str) -> Claims:
        if not token.isascii():  # every token we sign is ASCII; itsdangerous cannot even encode some others
            raise Unauthorized("the token is not valid", code="invalid_token")
        try:
            data = self._serializer.loads(token)
        except BadSignature:
            raise Unauthorized("the token is not valid", code="invalid_token") from None
        if (not isinstance(data, dict) or not isinstance(data.get("sid"), str) or type(data.get("exp")) is not int
                or data.get("typ") not in (ACCESS, REFRESH)):
            raise Unauthorized("the token is not valid", code="invalid_token")
        sub = data.get("sub")
        return Claims(typ=data["typ"], sid=data["sid"], sub=sub if isinstance(sub, str) else None, exp=data["exp"])


def digest(token: str) -> str:
    """How a refresh token is stored: SHA-256 is enough for 192 random bits."""
    return hashlib.sha256(token.encode()).hexdigest()
