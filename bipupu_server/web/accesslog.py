"""Access log lines with tokens and secrets redacted from query strings."""

from __future__ import annotations

import re

from aiohttp.abc import AbstractAccessLogger

SECRET_PARAMS = re.compile(r"((?:^|[?&;])(?:token|access_token|refresh_token|password)=)[^&;#]*", re.IGNORECASE)


def redact(path_qs: str) -> str:
    return SECRET_PARAMS.sub(r"\1[redacted]", path_qs)


class RedactingAccessLogger(AbstractAccessLogger):
    """One line per request: address, method, path (secrets redacted), status, milliseconds."""

    def log(self, request, response, time: float) -> None:
        path = request.path_qs
        self.logger.info('%s "%s %s" %d %.1fms', request.remote, request.method,
                         redact(path) if "?" in path else path, response.status, time * 1000)
