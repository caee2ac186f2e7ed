"""POST /auth/register, /auth/login, /auth/refresh, /auth/logout."""

from __future__ import annotations

from aiohttp import web
from msgspec import UNSET

from .. import keys
from ..errors import AppError
from ..protocol import SIGNED_OUT
from .responses import bearer_token, client_address, json_body, json_response, principal
from .shapes import LoginRequest, LogoutRequest, RefreshRequest, RegisterRequest


async def register(request: web.Request) -> web.Response:
    body = await json_body(request, RegisterRequest)
    account = await request.app[keys.accounts].register(
        body.username, body.password, None if body.nickname is UNSET else body.nickname,
        address=client_address(request))
    return json_response(account, status=201)


async def login(request: web.Request) -> web.Response:
    body = await json_body(request, LoginRequest)
    account = await request.app[keys.accounts].login(body.username, body.password, address=client_address(request))
    return json_response(account)


async def refresh(request: web.Request) -> web.Response:
    body = await json_body(request, RefreshRequest)
    return json_response(await request.app[keys.accounts].refresh(body.refresh_token))


async def logout(request: web.Request) -> web.Response:
    body = await json_body(request, LogoutRequest, optional=True)
    refresh_token = None if body.refresh_token is UNSET else body.refresh_token
    caller = None
    if bearer_token(request) is not None:
        try:
            caller = await principal(request)
        except AppError:
            if refresh_token is None:  # with a refresh token, an expired access token may still log out
                raise
    ended = await request.app[keys.accounts].logout(caller, refresh_token, body.all)
    request.app[keys.hub].close_sessions(ended, SIGNED_OUT, "signed out")
    return web.Response(status=204)
