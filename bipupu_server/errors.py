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


# Every code a client can see, with its HTTP status and what it means. The OpenAPI document lists
# each operation's codes from here, and a test fails when the source uses a code not in this table.
CODES: dict[str, tuple[int, str]] = {
    # 400: the request itself
    "bad_request": (400, "The request is malformed."),
    "malformed_json": (400, "The body is not JSON, or not a JSON object."),
    "malformed_request": (400, "Not valid HTTP (a line or a header too long, bad framing); the connection closes."),
    "connection_lost": (400, "The client hung up before its body arrived."),
    "websocket_required": (400, "/ws speaks WebSocket only."),
    # 401: who is asking
    "unauthorized": (401, "Authentication is required."),
    "missing_token": (401, "No `Authorization: Bearer` token (and, for logout, no refresh_token)."),
    "invalid_token": (401, "The token is malformed, forged or unknown."),
    "token_expired": (401, "The token has expired: refresh it."),
    "wrong_token_type": (401, "An access token where a refresh token belongs, or the other way round."),
    "token_revoked": (401, "This login was signed out: log in again."),
    "refresh_token_reused": (401, "This refresh token was already traded (a second use signs the login out)."),
    "invalid_credentials": (401, "Wrong username or password (the same answer for both)."),
    # 403: not allowed
    "forbidden": (403, "This is not allowed."),
    "registration_closed": (403, "Self-registration is off on this server; an admin creates accounts."),
    "account_deactivated": (403, "The account is deactivated."),
    "wrong_password": (403, "old_password is wrong."),
    "msg_type_not_allowed": (403, "COSMIC_BROADCAST is for service accounts."),
    "not_admin": (403, "The account is not an admin."),
    # 404: nothing there
    "not_found": (404, "There is nothing at this address."),
    "user_not_found": (404, "No such user, or a deactivated one."),
    "receiver_not_found": (404, "No such receiver (user or active service)."),
    "message_not_found": (404, "No such message in the caller's mailbox."),
    "contact_not_found": (404, "Not in the caller's contacts."),
    "block_not_found": (404, "Not blocked by the caller."),
    "service_not_found": (404, "No such service."),
    # 405 and other HTTP-level refusals
    "method_not_allowed": (405, "This method is not allowed here (the Allow header lists the ones that are)."),
    "request_timeout": (408, "The body did not arrive in time; the connection closes."),
    "length_required": (411, "A Content-Length is required."),
    "payload_too_large": (413, "The body is over the limit (64 KiB by default)."),
    "uri_too_long": (414, "The address is too long."),
    "unsupported_media_type": (415, "This content type is not supported."),
    "headers_too_large": (431, "The request headers are too large."),
    # 409: the state says no
    "conflict": (409, "The request conflicts with what is stored."),
    "username_taken": (409, "The username is taken (compared after NFKC + casefold)."),
    "contact_exists": (409, "Already a contact."),
    "block_exists": (409, "Already blocked."),
    "service_exists": (409, "A service with this id exists."),
    "service_inactive": (409, "The service is inactive."),
    "last_admin": (409, "The change would leave no active admin."),
    "bipupu_id_exhausted": (409, "Every 8-digit bipupu_id is taken; permanent, do not retry."),
    # 422: a value is wrong (`field` names it)
    "invalid_field": (422, "A value breaks its rule."),
    "missing_field": (422, "A required field is absent."),
    "unknown_field": (422, "A field (or query parameter) this operation does not know."),
    "immutable_field": (422, "This field cannot be changed."),
    "password_too_short": (422, "The password is under 8 bytes of UTF-8."),
    "password_too_long": (422, "The password is over 72 bytes of UTF-8 (never truncated)."),
    "username_all_digits": (422, "A username of digits only would look like a bipupu_id."),
    "self_reference": (422, "That is the caller's own bipupu_id."),
    "self_message": (422, "A card cannot be sent to its sender."),
    "idempotency_key_reused": (422, "This client_msg_id was already used for another card."),
    # 429: too much, wait Retry-After seconds
    "rate_limited": (429, "Too many requests; wait Retry-After seconds."),
    "too_many_attempts": (429, "Too many login attempts; wait Retry-After seconds."),
    "stranger_quota_exceeded": (429, "A stranger's daily cards to this person are used up; Retry-After says when "
                                     "the day turns."),
    "too_many_connections": (429, "Too many open connections from this address; the connection closes."),
    # 5xx
    "internal_error": (500, "A bug: the server failed. Never the answer to a client's mistake."),
    "database_unavailable": (503, "The database is unusable; retry after Retry-After seconds."),
}

def status_of(code: str) -> int:
    return CODES[code][0]
