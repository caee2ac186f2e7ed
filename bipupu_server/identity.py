"""Identity rules: what a username, nickname, profile and bipupu_id may be (pure checks, no I/O)."""

from __future__ import annotations

import json
import re
import unicodedata
from typing import Any
from urllib.parse import urlsplit

import orjson

from .errors import Invalid
from .text import SPACE, is_control, trim

USERNAME_MIN, USERNAME_MAX = 3, 32
NICKNAME_MAX = 32
PROFILE_MAX_BYTES = 2048
PROFILE_MAX_DEPTH = 16  # orjson encodes at most ~254 levels; profiles need a handful
AVATAR_URL_MAX = 2048
PRIVACY_CHOICES = ("everyone", "contacts_only")
USERNAME_PUNCTUATION = "_.-"
BIPUPU_ID = re.compile(r"[0-9]{8}")  # ASCII digits only: full-width ones are not an id


def username_key(raw: str) -> str:
    """What uniqueness and login compare: NFKC, casefolded, NFKC again (Unicode's NFKC_Casefold)."""
    return unicodedata.normalize("NFKC", unicodedata.normalize("NFKC", trim(raw)).casefold())


def check_username(raw: Any) -> tuple[str, str]:
    """Validate a new username; returns (username as stored, its key)."""
    if not isinstance(raw, str):
        raise Invalid("username must be a string", field="username")
    name = unicodedata.normalize("NFKC", trim(raw))
    if not USERNAME_MIN <= len(name) <= USERNAME_MAX:
        raise Invalid(f"username must be {USERNAME_MIN} to {USERNAME_MAX} characters", field="username")
    for position, ch in enumerate(name):
        category = unicodedata.category(ch)
        allowed = (
            category.startswith("L")
            or category == "Nd"
            or ch in USERNAME_PUNCTUATION
            or (category in ("Mn", "Mc") and position > 0)  # vowel signs and accents of many scripts
        )
        if not allowed:
            raise Invalid(
                f"username may hold only letters, digits, '_', '.' and '-' (not {ch!r})", field="username"
            )
    if all(unicodedata.category(ch) == "Nd" for ch in name):
        raise Invalid("username cannot be all digits (it would look like a bipupu_id)",
                      code="username_all_digits", field="username")
    return name, username_key(name)


def check_text(raw: Any, field: str, max_chars: int) -> str:
    """A trimmed single-line text of 1 to max_chars characters."""
    if not isinstance(raw, str):
        raise Invalid(f"{field} must be a string", field=field)
    text = trim(raw)
    if not 1 <= len(text) <= max_chars:
        raise Invalid(f"{field} must be 1 to {max_chars} characters", field=field)
    if any(is_control(ch) or 0xD800 <= ord(ch) <= 0xDFFF for ch in text):
        raise Invalid(f"{field} may not contain control characters", field=field)
    return text


def check_nickname(raw: Any) -> str:
    return check_text(raw, "nickname", NICKNAME_MAX)


def check_avatar_url(raw: Any) -> str | None:
    """None, an http(s) URL with a host, or a server-relative path such as /static/a.png."""
    if raw is None:
        return None
    if not isinstance(raw, str):
        raise Invalid("avatar_url must be a string or null", field="avatar_url")
    url = raw
    if not url or len(url) > AVATAR_URL_MAX or any(ch in SPACE or is_control(ch) for ch in url):
        raise Invalid(f"avatar_url must be a URL of at most {AVATAR_URL_MAX} characters without spaces",
                      field="avatar_url")
    try:
        parts = urlsplit(url)
    except ValueError:
        raise Invalid("avatar_url is not a valid URL", field="avatar_url") from None
    absolute = parts.scheme in ("http", "https") and bool(parts.netloc)
    relative = not parts.scheme and not parts.netloc and url.startswith("/") and not url.startswith("//")
    if not (absolute or relative):
        raise Invalid("avatar_url must be an http(s) URL or a path starting with /", field="avatar_url")
    return url


def check_cosmic_profile(raw: Any) -> str:
    """A JSON object of free keys, at most 2 KB and 16 levels deep; returns its stored JSON text."""
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise Invalid("cosmic_profile must be a JSON object", field="cosmic_profile")
    if _depth(raw) > PROFILE_MAX_DEPTH:
        raise Invalid(f"cosmic_profile may nest at most {PROFILE_MAX_DEPTH} levels", field="cosmic_profile")
    try:
        encoded = orjson.dumps(raw)
    except orjson.JSONEncodeError:  # an integer beyond 64 bits, kept exact by the body parser: written as it came
        try:
            encoded = json.dumps(raw, ensure_ascii=False, separators=(",", ":")).encode()
        except (TypeError, ValueError):  # a lone surrogate, say: not text that can be stored
            raise Invalid("cosmic_profile holds a value that cannot be stored", field="cosmic_profile") from None
    if len(encoded) > PROFILE_MAX_BYTES:
        raise Invalid(f"cosmic_profile must be at most {PROFILE_MAX_BYTES} bytes as JSON", field="cosmic_profile")
    return encoded.decode()


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in a parsed JSON value (iterative: no recursion limit)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (dict, list)):
            deepest = max(deepest, level)
            stack.extend((child, level + 1) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


def check_privacy(raw: Any) -> str:
    if raw not in PRIVACY_CHOICES:
        raise Invalid("privacy must be 'everyone' or 'contacts_only'", field="privacy")
    return raw


PROFILE_RULES = {
    "nickname": check_nickname,
    "avatar_url": check_avatar_url,
    "cosmic_profile": check_cosmic_profile,
    "privacy": check_privacy,
}
IMMUTABLE_FIELDS = ("id", "bipupu_id", "username", "is_admin", "is_active", "created_at")

