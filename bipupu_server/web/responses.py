"""JSON responses and request bodies, shared by every handler."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any, Iterable, Mapping

import orjson
from aiohttp import web

from ..errors import BadRequest, Invalid, PayloadTooLarge, RequestTimeout, Unauthorized
from .. import keys
from ..accounts import Principal
from ..tokens import ACCESS, Claims
from .server import in_networks


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(status: int, body: dict, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(body, status, headers)


async def json_body(request: web.Request, allowed: Iterable[str], *, optional: bool = False) -> dict[str, Any]:
    """The request's JSON object, refusing bodies that are too large, malformed or carry unknown keys."""
    limit = request.app[keys.config].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request bodies are limited to {limit // 1024} KiB")
    try:
        # Bounded, so a body trickled a byte at a time cannot hold a connection (and a descriptor) for ever.
        async with asyncio.timeout(request.app[keys.config].body_timeout_s):
            raw = await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {request.app[keys.config].body_timeout_s:g} s",
                             code="request_timeout") from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request bodies are limited to {limit // 1024} KiB") from None
    except ConnectionResetError:  # the client hung up mid-body: its doing, nobody will read the answer
        raise BadRequest("the connection was lost before the body arrived", code="connection_lost") from None
    if not raw.strip() and optional:
        return {}
    data = parse_json(raw)
    if not isinstance(data, dict):
        raise BadRequest("the request body must be a JSON object", code="malformed_json")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        raise Invalid(f"unknown field {unknown[0]!r}", code="unknown_field", field=unknown[0])
    return data


LONG_NUMBER = re.compile(rb"[0-9]{20}")  # orjson reads integers past 64 bits as floats


def parse_json(raw: bytes) -> Any:
    """JSON text as Python values, every integer exact (a 25-digit one too); BadRequest if it is not JSON."""
    try:
        if not LONG_NUMBER.search(raw):
            return orjson.loads(raw)
        # Rare, and small (64 KiB): the standard library keeps big integers as they came. It takes
        # a few things orjson refuses, so those are refused here the same way.
        data = json.loads(raw.decode("utf-8"), parse_constant=_no_constant)
        json.dumps(data, ensure_ascii=False).encode()  # lone surrogates: not text
        return data
    except (orjson.JSONDecodeError, ValueError, RecursionError):
        raise BadRequest("the request body is not valid JSON", code="malformed_json") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def required(data: Mapping[str, Any], name: str) -> Any:
    if name not in data:
        raise Invalid(f"{name} is required", code="missing_field", field=name)
    return data[name]


def optional_bool(data: Mapping[str, Any], name: str, default: bool = False) -> bool:
    value = data.get(name, default)
    if not isinstance(value, bool):
        raise Invalid(f"{name} must be true or false", field=name)
    return value


def bearer_token(request: web.Request) -> str | None:
    """The token from `Authorization: Bearer …`, or None when the header is absent."""
    header = request.headers.get("Authorization")
    if header is None:
        return None
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("use 'Authorization: Bearer <access_token>'", code="invalid_token")
    return token.strip()


def access_claims(request: web.Request) -> Claims:
    """The access token's signed claims (signature, type, expiry); the session is not looked at yet."""
    token = bearer_token(request)
    if token is None:
        raise Unauthorized("this needs 'Authorization: Bearer <access_token>'", code="missing_token")
    return request.app[keys.accounts].signer.verify(token, ACCESS)


async def principal(request: web.Request) -> Principal:
    """The authenticated caller; 401 without a valid access token, 403 for a deactivated account."""
    return await request.app[keys.accounts].session_principal(access_claims(request))


def client_address(request: web.Request) -> str:
    """Whom per-address limits count: the peer, or behind a trusted proxy the client it forwarded for."""
    peer = request.remote or "unknown"
    trusted = request.app[keys.config].trusted_proxies
    if not trusted or not in_networks(peer, trusted):
        return peer  # a client's own X-Forwarded-For would let it pick any address it likes
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    for hop in reversed(hops):  # the right end is what the nearest proxies wrote; the left, anyone
        if hop and not in_networks(hop, trusted):
            return hop[:64]
    return peer
