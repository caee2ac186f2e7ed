"""POST /auth/register, /auth/login, /auth/refresh, /auth/logout."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..errors import AppError, Invalid
from ..hub import SIGNED_OUT
from .responses import (bearer_token, client_address, json_body, json_response, optional_bool,
                        principal, required)


async def register(request: web.Request) -> web.Response:
    body = await json_body(request, ("username", "password", "nickname"))
    account = await request.app[keys.accounts].register(
        required(body, "username"), required(body, "password"), body.get("nickname"),
        address=client_address(request))
    return json_response(account, status=201)


async def login(request: web.Request) -> web.Response:
    body = await json_body(request, ("username", "password"))
    account = await request.app[keys.accounts].login(
        required(body, "username"), required(body, "password"), address=client_address(request))
    return json_response(account)


async def refresh(request: web.Request) -> web.Response:
    body = await json_body(request, ("refresh_token",))
    return json_response(await request.app[keys.accounts].refresh(required(body, "refresh_token")))


async def logout(request: web.Request) -> web.Response:
    body = await json_body(request, ("refresh_token", "all"), optional=True)
    everywhere = optional_bool(body, "all")
    refresh_token = body.get("refresh_token")
    if "refresh_token" in body and not isinstance(refresh_token, str):  # null is not "absent"
        raise Invalid("refresh_token must be a string", field="refresh_token")
    caller = None
    if bearer_token(request) is not None:
        try:
            caller = await principal(request)
        except AppError:
            if refresh_token is None:  # with a refresh token, an expired access token may still log out
                raise
    ended = await request.app[keys.accounts].logout(caller, refresh_token, everywhere)
    request.app[keys.hub].close_sessions(ended, SIGNED_OUT, "signed out")
    return web.Response(status=204)
