"""Domain errors, raised anywhere below the web layer and turned into the one JSON error shape."""

from __future__ import annotations


class AppError(Exception):
    """Base of every error a client may see; `status` is the HTTP status it maps to."""

    status = 400
    code = "bad_request"
    closes = False  # the connection is closed after the answer (its state is unknown)

    def __init__(self, message: str, *, code: str | None = None, field: str | None = None,
                 headers: dict[str, str] | None = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.field = field
        self.headers = headers or {}

    def body(self) -> dict:
        error = {"code": self.code, "message": self.message}
        if self.field is not None:
            error["field"] = self.field
        return {"error": error}


class BadRequest(AppError):
    status, code = 400, "bad_request"


class Unauthorized(AppError):
    status, code = 401, "unauthorized"

    def __init__(self, message: str, *, code: str | None = None):
        super().__init__(message, code=code, headers={"WWW-Authenticate": "Bearer"})


class Forbidden(AppError):
    status, code = 403, "forbidden"


class NotFound(AppError):
    status, code = 404, "not_found"


class Conflict(AppError):
    status, code = 409, "conflict"


class RequestTimeout(AppError):
    """The body did not arrive in time: the rest of it is never read, the connection is closed."""

    status, code, closes = 408, "request_timeout", True


class PayloadTooLarge(AppError):
    status, code = 413, "payload_too_large"


class Invalid(AppError):
    """A value failed validation; `field` names it."""

    status, code = 422, "invalid_field"


class RateLimited(AppError):
    status, code = 429, "rate_limited"

    def __init__(self, message: str, retry_after: float, *, code: str | None = None):
        self.retry_after = max(1, int(retry_after + 0.999))
        super().__init__(message, code=code, headers={"Retry-After": str(self.retry_after)})


class Unavailable(AppError):
    status, code = 503, "database_unavailable"
