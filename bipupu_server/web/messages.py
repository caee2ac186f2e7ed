"""POST/GET /messages, GET/DELETE /messages/{id}."""

from __future__ import annotations

import functools

from aiohttp import web
from msgspec import UNSET

from .. import keys
from ..errors import Invalid
from .responses import access_claims, json_body, json_response, principal
from .shapes import MessageQuery, SendMessage, builtins, convert, present


async def send(request: web.Request) -> web.Response:
    claims = access_claims(request)  # signature and expiry here; the session is checked inside the write
    body = await json_body(request, SendMessage)
    authorize = functools.partial(request.app[keys.accounts].principal_in, claims=claims)
    message, created = await request.app[keys.mailbox].send(
        authorize, body.receiver_id, body.content, body.msg_type,
        None if body.pattern is UNSET else builtins(body.pattern),
        None if body.client_msg_id is UNSET else body.client_msg_id)
    return json_response(message, status=201 if created else 200)


async def mailbox(request: web.Request) -> web.Response:
    caller = await principal(request)
    query = request.query
    for name in query:
        if len(query.getall(name)) > 1:
            raise Invalid(f"{name} given more than once", field=name)
    page = await request.app[keys.mailbox].list(caller.bipupu_id, **present(convert(dict(query), MessageQuery)))
    return json_response(page)


async def get_message(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.mailbox].get(caller.bipupu_id, request.match_info["message_id"]))


async def delete_message(request: web.Request) -> web.Response:
    caller = await principal(request)
    await request.app[keys.mailbox].delete(caller.bipupu_id, request.match_info["message_id"])
    return web.Response(status=204)
