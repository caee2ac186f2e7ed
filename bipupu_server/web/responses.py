"""JSON responses and request bodies, shared by every handler."""

from __future__ import annotations

import asyncio
from typing import Any, Mapping, TypeVar

import orjson
from aiohttp import web

from ..errors import BadRequest, PayloadTooLarge, RequestTimeout, Unauthorized
from .. import keys
from ..accounts import Principal
from ..tokens import ACCESS, Claims
from .server import in_networks
from .shapes import decode

T = TypeVar("T")


def json_response(data: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, headers=headers, content_type="application/json")


def error_response(status: int, body: dict, headers: Mapping[str, str] | None = None) -> web.Response:
    return json_response(body, status, headers)


async def read_body(request: web.Request) -> bytes:
    """The request body, refusing one that is too large or too slow to arrive."""
    limit = request.config_dict[keys.config].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise PayloadTooLarge(f"request bodies are limited to {limit // 1024} KiB")
    # Bounded, so a body trickled a byte at a time cannot hold a connection (and a descriptor) for ever; a body
    # that is all here already (most are: they come in the headers' packet) has nothing to wait for, no timer.
    timeout = None if request.content.is_eof() else request.config_dict[keys.config].body_timeout_s
    try:
        async with asyncio.timeout(timeout):
            return await request.read()
    except TimeoutError:
        raise RequestTimeout(f"the request body did not arrive within {request.config_dict[keys.config].body_timeout_s:g} s",
                             code="request_timeout") from None
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"request bodies are limited to {limit // 1024} KiB") from None
    except ConnectionResetError:  # the client hung up mid-body: its doing, nobody will read the answer
        raise BadRequest("the connection was lost before the body arrived", code="connection_lost") from None


async def json_body(request: web.Request, shape: type[T], *, optional: bool = False) -> T:
    """The request's JSON object as `shape` (web/shapes.py); an empty body is the shape's defaults if optional."""
    raw = await read_body(request)
    if optional and not raw.strip():
        raw = b"{}"
    return decode(raw, shape)


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
    return request.config_dict[keys.accounts].signer.verify(token, ACCESS)


async def principal(request: web.Request) -> Principal:
    """The authenticated caller; 401 without a valid access token, 403 for a deactivated account."""
    return await request.config_dict[keys.accounts].session_principal(access_claims(request))


def client_address(request: web.Request) -> str:
    """Whom per-address limits count: the peer, or behind a trusted proxy the client it forwarded for."""
    peer = request.remote or "unknown"
    trusted = request.config_dict[keys.config].trusted_proxies
    if not trusted or not in_networks(peer, trusted):
        return peer  # a client's own X-Forwarded-For would let it pick any address it likes
    hops = [hop.strip() for value in request.headers.getall("X-Forwarded-For", ()) for hop in value.split(",")]
    for hop in reversed(hops):  # the right end is what the nearest proxies wrote; the left, anyone
        if hop and not in_networks(hop, trusted):
            return hop[:64]
    return peer
