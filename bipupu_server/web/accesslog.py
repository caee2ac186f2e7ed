"""Log lines without secrets: the access log with query strings redacted, and a formatter for every other line."""

from __future__ import annotations

import logging
import re

from aiohttp.abc import AbstractAccessLogger

SECRET_PARAMS = re.compile(r"((?:^|[?&;])(?:token|access_token|refresh_token|password)=)[^&;#]*", re.IGNORECASE)

# Anywhere in a log line: a signed token (base64url, a dot, base64url; itsdangerous may prefix a
# dot when it compressed; never starting inside a longer run, which keeps the search linear)...
SIGNED_TOKEN = re.compile(r"(?<![A-Za-z0-9_-])\.?[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}")
# ...and, in lines that name one, a Bearer credential and secret fields of a query, a repr or JSON.
KEYWORDS = ("token", "password", "secret", "bearer")
SECRETS_IN_TEXT = [
    (re.compile(r"(bearer)(\s+|%20|\+)[^\s'\",;]+", re.IGNORECASE), r"\1 [redacted]"),
    (re.compile(r"((?:token|access_token|refresh_token|password|secret_key)=)[^&;#\s'\"]*", re.IGNORECASE),
     r"\1[redacted]"),
    (re.compile(r"""(["']?(?:token|access_token|refresh_token|password|old_password|new_password|secret_key)["']?"""
                r"""\s*:\s*["'])[^"']*""", re.IGNORECASE), r"\1[redacted]"),
]


def redact(path_qs: str) -> str:
    return SECRET_PARAMS.sub(r"\1[redacted]", path_qs)


def redact_text(text: str) -> str:
    """Any log text with every token, credential and password-like value replaced."""
    text = SIGNED_TOKEN.sub("[redacted]", text)
    lowered = text.lower()  # the keyword patterns are slow: most lines (the access log) name none
    if any(word in lowered for word in KEYWORDS):
        for pattern, replacement in SECRETS_IN_TEXT:
            text = pattern.sub(replacement, text)
    return text


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: address, method, path (secrets redacted), status, milliseconds."""

    @property
    def enabled(self) -> bool:  # aiohttp asks once per connection: no timing, no call when the level is off
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request, response, time: float) -> None:
        path = request.path_qs
        self.logger.info('%s "%s %s" %d %.1fms', request.remote, request.method,
                         redact(path) if "?" in path else path, response.status, time * 1000)


class RedactingFormatter(logging.Formatter):
    """Formats as `inner` does (message, traceback and all), then redacts: the last guard of every line."""

    def __init__(self, inner: logging.Formatter | None = None):
        super().__init__()
        self._inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return redact_text(self._inner.format(record))
