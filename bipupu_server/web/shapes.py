"""Every request body and query, declared once: the edge decodes with these, and the OpenAPI document is made from them.

Each shape is a msgspec Struct. `decode()` turns a body into one (msgspec checks types, required
and unknown keys, lengths, patterns and choices as it parses), and `web/openapi.py` publishes
`msgspec.json.schema_components()` of the same classes, so the two cannot drift. Limits are the
domain's named constants. What is not shape stays in the domain and is checked there: trimming,
NFKC, UTF-8 byte counts, COSMIC_BROADCAST being for services only, blocks, yourself. Where a rule
is in words only, the field's description says it.

Responses are declared here too, for the document; handlers build them as plain dicts.
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Literal, TypeVar

import msgspec
from msgspec import UNSET, Meta, Struct, UnsetType

from .. import errors
from ..identity import (AVATAR_URL_MAX, BIPUPU_ID, IMMUTABLE_FIELDS, NICKNAME_MAX, PRIVACY_CHOICES,
                        PROFILE_MAX_BYTES, PROFILE_MAX_DEPTH, USERNAME_MAX, USERNAME_MIN)
from ..passwords import PASSWORD_MAX_BYTES, PASSWORD_MIN_BYTES
from ..contacts import ALIAS_MAX
from ..errors import BadRequest, Invalid
from ..ids import MESSAGE_ID
from ..mailbox import (CLIENT_MSG_ID_MAX, COLOR, CONTENT_MAX, DIRECTIONS, DURATION_MAX_S, DURATION_MIN_S, EFFECTS,
                       FONTS, LIMIT_DEFAULT, LIMIT_MAX, MSG_TYPES, PATTERN_MAX_BYTES, SHORT_NAME)
from ..relay import STATES as RELAY_STATES
from ..services.catalog import SERVICE_ID
from ..text import CONTROL_CLASS, SPACE_CLASS, anchored, trimmed_text_pattern

T = TypeVar("T")


class Shape(Struct, forbid_unknown_fields=True, omit_defaults=True):
    """A JSON object with exactly the declared keys (an unknown one is 422 unknown_field)."""


# Field types ----------------------------------------------------------------------------------

BipupuId = Annotated[str, Meta(pattern=anchored(BIPUPU_ID), examples=["00000002"],
                               description="Eight ASCII digits.")]
Address = Annotated[str, Meta(pattern=anchored(f"{BIPUPU_ID.pattern}|{SERVICE_ID.pattern}"),
                              description="A bipupu_id or a service id such as cosmic.fortune.")]
MessageId = Annotated[str, Meta(pattern=anchored(MESSAGE_ID), description="A UUIDv7, lowercase; string order is "
                                                                         "acceptance order.")]
Timestamp = Annotated[str, Meta(extra_json_schema={"format": "date-time"}, examples=["2026-02-10T16:00:00Z"])]
Username = Annotated[str, Meta(
    min_length=USERNAME_MIN, max_length=USERNAME_MAX, examples=["星语者_7"],
    description=f"{USERNAME_MIN}–{USERNAME_MAX} characters after NFKC and trimming spaces: letters of any script, "
                "digits, '_', '.', '-' (and combining marks after the first character); not all digits (422 "
                "username_all_digits). Unique after NFKC + casefold (409 username_taken).")]
NewPassword = Annotated[str, Meta(
    # Published, not enforced here: the domain counts bytes and answers with its own codes. A character
    # is 1 to 4 bytes of UTF-8, so these character counts are what the byte rule implies.
    extra_json_schema={"minLength": -(-PASSWORD_MIN_BYTES // 4), "maxLength": PASSWORD_MAX_BYTES,
                       "pattern": r"^[^\x00]*$"},
    description=f"{PASSWORD_MIN_BYTES}–{PASSWORD_MAX_BYTES} bytes of UTF-8, no NUL (bcrypt's limit: longer is "
                "refused, never truncated; 422 password_too_short / password_too_long).")]
Nickname = Annotated[str, Meta(
    pattern=trimmed_text_pattern(NICKNAME_MAX, controls=False),
    description=f"1–{NICKNAME_MAX} characters once spaces are trimmed from both ends; no control characters.")]
Alias = Annotated[str, Meta(
    pattern=f"^$|{trimmed_text_pattern(ALIAS_MAX, controls=False)}",
    description=f"1–{ALIAS_MAX} characters once spaces are trimmed; no control characters. \"\" or null clears it.")]
AvatarUrl = Annotated[str, Meta(
    max_length=AVATAR_URL_MAX, pattern=f"^(?:https?://[^/?#{SPACE_CLASS}{CONTROL_CLASS}]+|/(?!/))"
                                       f"[^{SPACE_CLASS}{CONTROL_CLASS}]*$",
    description="An http(s) URL with a host, or a path on this server starting with a single /; no spaces or "
                "control characters.")]
Content = Annotated[str, Meta(
    pattern=trimmed_text_pattern(CONTENT_MAX, controls=True),
    description=f"1–{CONTENT_MAX} characters once spaces are trimmed from both ends (stored trimmed).")]
ShortName = Annotated[str, Meta(pattern=anchored(SHORT_NAME), description="1–32 of a-z 0-9 _ . - (not first).")]
Privacy = Literal[PRIVACY_CHOICES]  # type: ignore[valid-type]
MsgType = Literal[MSG_TYPES]  # type: ignore[valid-type]
Direction = Literal[DIRECTIONS]  # type: ignore[valid-type]
RelayState = Literal[RELAY_STATES]  # type: ignore[valid-type]
Effect = Literal[EFFECTS]  # type: ignore[valid-type]
Font = Literal[FONTS]  # type: ignore[valid-type]
CosmicProfile = Annotated[dict[str, Any], Meta(
    description=f"Free keys (birthday, bazi, mbti, zodiac…): at most {PROFILE_MAX_BYTES} bytes as JSON and "
                f"{PROFILE_MAX_DEPTH} levels deep.")]


# Requests ---------------------------------------------------------------------------------------

class RegisterRequest(Shape):
    username: Username
    password: NewPassword
    nickname: Nickname | UnsetType = UNSET


class LoginRequest(Shape):
    # Any text: a wrong one is the same 401 as a wrong password, so nothing about accounts leaks.
    username: str
    password: str


class RefreshRequest(Shape):
    refresh_token: str


class LogoutRequest(Shape):
    refresh_token: Annotated[str, Meta(description="Log out this token's login (else the access token's).")] \
        | UnsetType = UNSET
    all: Annotated[bool, Meta(description="Log out every login of the user.")] = False


class MeUpdate(Shape, kw_only=True):
    nickname: Nickname | UnsetType = UNSET
    avatar_url: AvatarUrl | None | UnsetType = UNSET
    cosmic_profile: CosmicProfile | UnsetType = UNSET
    privacy: Privacy | UnsetType = UNSET


class PasswordChange(Shape):
    old_password: str
    new_password: NewPassword


class Pattern(Shape, kw_only=True):
    """How the pupu device shows a card."""

    led_color: Annotated[str, Meta(pattern=anchored(COLOR), description="#RRGGBB; stored upper-case.")] \
        | UnsetType = UNSET
    effect: Effect | UnsetType = UNSET
    font: Font | UnsetType = UNSET
    screensaver: ShortName | UnsetType = UNSET
    # A number with no fraction: 5 and 5.0 alike, as JSON Schema reads "integer" (stored as 5).
    duration_s: Annotated[float, Meta(ge=DURATION_MIN_S, le=DURATION_MAX_S, multiple_of=1,
                                      description="Whole seconds.")] | UnsetType = UNSET
    vibrate: bool | UnsetType = UNSET
    sound: ShortName | UnsetType = UNSET


class SendMessage(Shape, kw_only=True):
    receiver_id: Annotated[Address, Meta(description="A bipupu_id or a service id; not your own (422 "
                                                     "self_message).")]
    content: Content
    msg_type: Annotated[MsgType, Meta(description="COSMIC_BROADCAST is for service accounts: 403 "
                                                  "msg_type_not_allowed.")] = "USER_POSTCARD"
    pattern: Pattern | UnsetType = UNSET
    client_msg_id: Annotated[str, Meta(
        min_length=1, max_length=CLIENT_MSG_ID_MAX,
        description="Idempotency key per sender: resending the same card (receiver, content after trimming, "
                    "msg_type, pattern) returns the original with 200, even after the sender deleted it from "
                    "the outbox; the same key with another card is 422 idempotency_key_reused.")] \
        | UnsetType = UNSET


class BroadcastRequest(Shape, kw_only=True):
    content: Content
    pattern: Pattern | UnsetType = UNSET


class MessageQuery(Shape, kw_only=True):
    """GET /messages: each key is a query parameter."""

    direction: Annotated[Direction, Meta(description="Which side of the mailbox.")] = "received"
    limit: Annotated[int, Meta(ge=1, le=LIMIT_MAX, description="Page size.")] = LIMIT_DEFAULT
    before: Annotated[MessageId, Meta(description="Only cards older than this id, newest first (paging back).")] \
        | UnsetType = UNSET
    since: Annotated[MessageId, Meta(description="Only cards newer than this id, oldest first (catch-up; works "
                                                 "even if that card was deleted). With before too: the cards "
                                                 "between the two, oldest first.")] | UnsetType = UNSET
    msg_type: Annotated[MsgType, Meta(description="Only this type.")] | UnsetType = UNSET
    peer: Annotated[Address, Meta(description="Only cards exchanged with this bipupu_id or service.")] \
        | UnsetType = UNSET


class ContactRequest(Shape):
    contact_id: Annotated[BipupuId, Meta(description="Not your own (422 self_reference).")]
    alias: Alias | None | UnsetType = UNSET


class AliasUpdate(Shape):
    alias: Alias | None


class BlockRequest(Shape):
    blocked_id: Annotated[BipupuId, Meta(description="Not your own (422 self_reference).")]


REQUESTS = (RegisterRequest, LoginRequest, RefreshRequest, LogoutRequest, MeUpdate, PasswordChange, SendMessage,
            ContactRequest, AliasUpdate, BlockRequest, BroadcastRequest)
QUERIES = (MessageQuery,)


# Responses (for the document; handlers build dicts) ----------------------------------------------

class TokenPair(Shape):
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: Annotated[int, Meta(ge=1, description="Seconds the access token stays valid.")]


class Account(Shape):
    bipupu_id: BipupuId
    username: str
    nickname: str
    access_token: str
    refresh_token: str
    token_type: Literal["bearer"]
    expires_in: Annotated[int, Meta(ge=1)]


class Me(Shape):
    bipupu_id: BipupuId
    username: str
    nickname: str
    avatar_url: str | None
    cosmic_profile: dict[str, Any]
    privacy: Privacy
    is_admin: bool
    created_at: Timestamp


class UserCard(Shape):
    bipupu_id: BipupuId
    nickname: str
    avatar_url: str | None


class Message(Shape):
    id: MessageId
    sender_id: Address
    receiver_id: Address
    content: str
    msg_type: MsgType
    pattern: Pattern
    created_at: Timestamp


class MessagePage(Shape):
    messages: list[Message]
    has_more: bool


class Contact(Shape):
    contact_id: BipupuId
    alias: str | None
    nickname: str
    avatar_url: str | None
    created_at: Timestamp


class Block(Shape):
    blocked_id: BipupuId
    nickname: str
    avatar_url: str | None
    created_at: Timestamp


class Service(Shape):
    id: Address
    name: str
    description: str
    subscribed: Annotated[bool, Meta(description="Always true for notice services, which reach everyone.")]


class BroadcastResult(Shape):
    service_id: Address
    sent: Annotated[int, Meta(ge=0, description="Cards stored and pushed: one per recipient.")]
    duration_s: Annotated[float, Meta(ge=0, description="How long the fan-out took.")]


class RelayHealth(Shape):
    state: Annotated[RelayState, Meta(
        description="off: not configured; unavailable: no Bluetooth here; searching: the device is not in reach; "
                    "connecting; connected. Never changes `status`: the server serves without its relay.")]
    detail: Annotated[str, Meta(description="Why, in one line of English.")]


class HealthStatus(Shape):
    status: Literal["ok", "unavailable"]
    db: Literal["ok", "unavailable"]
    version: str
    uptime_s: Annotated[float, Meta(ge=0)]
    relay: Annotated[RelayHealth, Meta(description="The BLE relay (SPEC §8).")]
    error: Annotated[dict[str, Any], Meta(description="Present when status is unavailable.")] | UnsetType = UNSET


class ErrorDetail(Shape):
    code: Annotated[str, Meta(pattern="^[a-z0-9_]+$")]
    message: str
    field: Annotated[str, Meta(description="The field at fault, dotted for nested ones (pattern.led_color).")] \
        | UnsetType = UNSET


class Error(Shape):
    error: ErrorDetail


RESPONSES = (TokenPair, Account, Me, UserCard, Message, MessagePage, Contact, Block, Service, BroadcastResult,
             HealthStatus, Error)
# The shape name a response is known by in the document, where it differs from the class name.
DOCUMENT_NAMES = {"HealthStatus": "Health"}


# Decoding at the edge --------------------------------------------------------------------------

_decoders: dict[type, msgspec.json.Decoder] = {}


def decode(raw: bytes, shape: type[T]) -> T:
    """A JSON body as `shape`: 400 malformed_json when it is not JSON (or not an object), 422 when it breaks the shape."""
    decoder = _decoders.get(shape)
    if decoder is None:
        decoder = _decoders[shape] = msgspec.json.Decoder(shape)
    try:
        return decoder.decode(raw)
    except msgspec.ValidationError as exc:
        # msgspec stops at the first fault, which may come before a syntax error further on: text
        # that is not JSON is a 400 whatever else is wrong with it.
        _must_be_json(raw)
        raise refusal(exc) from None
    except (msgspec.DecodeError, RecursionError):
        raise BadRequest(NOT_JSON.message, code=NOT_JSON.code) from None


NOT_JSON = BadRequest("the request body is not valid JSON", code="malformed_json")


def _must_be_json(raw: bytes) -> None:
    try:
        msgspec.json.decode(raw)
    except (msgspec.DecodeError, RecursionError):
        raise BadRequest(NOT_JSON.message, code=NOT_JSON.code) from None


def convert(values: dict[str, Any], shape: type[T]) -> T:
    """Query parameters (text) as `shape`, numbers read from their text."""
    try:
        return msgspec.convert(values, shape, strict=False)
    except msgspec.ValidationError as exc:
        raise refusal(exc) from None


def refusal(exc: msgspec.ValidationError) -> errors.AppError:
    """msgspec's finding as the one error shape: the code from what was wrong, `field` from where."""
    text, _, where = str(exc).partition(" - at `$")
    field = where.rstrip("`").lstrip(".").replace("[", ".").replace("]", "") or None
    for prefix, code in (("Object missing required field `", "missing_field"),
                         ("Object contains unknown field `", "unknown_field")):
        if text.startswith(prefix):
            name = text[len(prefix):].rstrip("`")
            field = f"{field}.{name}" if field else name
            return Invalid(f"{name} is required" if code == "missing_field" else f"unknown field {name!r}",
                           code=code, field=field)
    if field is None:  # the body itself: not an object
        return BadRequest("the request body must be a JSON object", code="malformed_json")
    if text.startswith("Expected `str` matching regex "):
        # The regular expression is for validators; people get the rule in words, as the document says it.
        rule = next((words for pattern, words in _pattern_words().items() if repr(pattern) in text), None)
        if rule is not None:
            return Invalid(f"{field} must be: {rule[0].lower()}{rule[1:]}", field=field)
    if text.startswith("Invalid enum value ") and (choices := _choices().get(field.rpartition(".")[2])):
        return Invalid(f"{field} must be one of {', '.join(choices)}", field=field)  # not an echo of the value
    return Invalid(f"{field}: {text[0].lower()}{text[1:]}", field=field)


@functools.cache
def _pattern_words() -> dict[str, str]:
    """Each field pattern of the request shapes with the description that says it in words."""
    words: dict[str, str] = {}

    def visit(annotation: Any) -> None:
        for arg in typing.get_args(annotation):
            if isinstance(arg, Meta) and arg.pattern is not None and arg.description:
                words[arg.pattern] = arg.description
            else:
                visit(arg)

    for shape in _shapes():
        for annotation in typing.get_type_hints(shape, include_extras=True).values():
            visit(annotation)
    return words


@functools.cache
def _choices() -> dict[str, tuple[str, ...]]:
    """The allowed values of each field that is a choice, by field name (each name means one choice)."""
    choices: dict[str, tuple[str, ...]] = {}

    def visit(name: str, annotation: Any) -> None:
        if typing.get_origin(annotation) is Literal:
            choices[name] = typing.get_args(annotation)
        for arg in typing.get_args(annotation):
            visit(name, arg)

    for shape in _shapes():
        for name, annotation in typing.get_type_hints(shape, include_extras=True).items():
            visit(name, annotation)
    return choices


def _shapes() -> list[type[Shape]]:
    return [value for value in globals().values() if isinstance(value, type) and issubclass(value, Shape)]


def present(shape: Struct) -> dict[str, Any]:
    """The fields a request carried (UNSET ones left out), as plain values."""
    return {name: value for name in shape.__struct_fields__
            if (value := getattr(shape, name)) is not UNSET}


def builtins(value: Any) -> Any:
    return msgspec.to_builtins(value)

