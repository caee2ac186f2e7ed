"""POST/GET /messages, GET/DELETE /messages/{id}."""

from __future__ import annotations

import functools

from aiohttp import web

from .. import keys
from ..errors import Invalid
from .responses import access_claims, json_body, json_response, principal, required

LIST_PARAMS = ("direction", "limit", "before", "since", "msg_type", "peer")


async def send(request: web.Request) -> web.Response:
    claims = access_claims(request)  # signature and expiry here; the session is checked inside the write
    body = await json_body(request, ("receiver_id", "content", "msg_type", "pattern", "client_msg_id"))
    authorize = functools.partial(request.app[keys.accounts].principal_in, claims=claims)
    message, created = await request.app[keys.mailbox].send(
        authorize, required(body, "receiver_id"), required(body, "content"), body.get("msg_type"),
        body.get("pattern"), body.get("client_msg_id"))
    return json_response(message, status=201 if created else 200)


async def mailbox(request: web.Request) -> web.Response:
    caller = await principal(request)
    query = request.query
    for name in query:
        if name not in LIST_PARAMS:
            raise Invalid(f"unknown query parameter {name!r}", code="unknown_field", field=name)
        if len(query.getall(name)) > 1:
            raise Invalid(f"{name} given more than once", field=name)
    page = await request.app[keys.mailbox].list(caller.bipupu_id, **{name: query.get(name) for name in LIST_PARAMS})
    return json_response(page)


async def get_message(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.mailbox].get(caller.bipupu_id, request.match_info["message_id"]))


async def delete_message(request: web.Request) -> web.Response:
    caller = await principal(request)
    await request.app[keys.mailbox].delete(caller.bipupu_id, request.match_info["message_id"])
    return web.Response(status=204)
