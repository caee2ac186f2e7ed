"""GET/PUT /me, PUT /me/password, GET /users/{bipupu_id}."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from ..identity import IMMUTABLE_FIELDS, PROFILE_RULES
from ..errors import Invalid
from ..protocol import SIGNED_OUT
from .responses import json_body, json_response, principal
from .shapes import MeUpdate, PasswordChange, present


async def get_me(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.accounts].me(caller))


async def put_me(request: web.Request) -> web.Response:
    caller = await principal(request)
    try:
        body = await json_body(request, MeUpdate)
    except Invalid as exc:
        if exc.code == "unknown_field" and exc.field in IMMUTABLE_FIELDS:
            raise Invalid(f"{exc.field} cannot be changed", code="immutable_field", field=exc.field) from None
        raise
    changes = {name: PROFILE_RULES[name](value) for name, value in present(body).items()}
    return json_response(await request.app[keys.accounts].update_me(caller, changes))


async def put_password(request: web.Request) -> web.Response:
    caller = await principal(request)
    body = await json_body(request, PasswordChange)
    ended = await request.app[keys.accounts].change_password(caller, body.old_password, body.new_password)
    request.app[keys.hub].close_sessions(ended, SIGNED_OUT, "password changed")
    return web.Response(status=204)


async def get_user(request: web.Request) -> web.Response:
    await principal(request)
    return json_response(await request.app[keys.accounts].public_card(request.match_info["bipupu_id"]))
