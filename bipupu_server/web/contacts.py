"""/contacts and /blocks."""

from __future__ import annotations

from aiohttp import web
from msgspec import UNSET

from .. import keys
from .responses import json_body, json_response, principal
from .shapes import AliasUpdate, BlockRequest, ContactRequest


async def add_contact(request: web.Request) -> web.Response:
    caller = await principal(request)
    body = await json_body(request, ContactRequest)
    contact = await request.app[keys.contacts].add(caller.bipupu_id, body.contact_id,
                                                   None if body.alias is UNSET else body.alias)
    return json_response(contact, status=201)


async def list_contacts(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.contacts].list(caller.bipupu_id))


async def rename_contact(request: web.Request) -> web.Response:
    caller = await principal(request)
    body = await json_body(request, AliasUpdate)
    contact = await request.app[keys.contacts].rename(caller.bipupu_id, request.match_info["contact_id"], body.alias)
    return json_response(contact)


async def remove_contact(request: web.Request) -> web.Response:
    caller = await principal(request)
    await request.app[keys.contacts].remove(caller.bipupu_id, request.match_info["contact_id"])
    return web.Response(status=204)


async def add_block(request: web.Request) -> web.Response:
    caller = await principal(request)
    body = await json_body(request, BlockRequest)
    block = await request.app[keys.contacts].block(caller.bipupu_id, body.blocked_id)
    return json_response(block, status=201)


async def list_blocks(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.contacts].blocks(caller.bipupu_id))


async def remove_block(request: web.Request) -> web.Response:
    caller = await principal(request)
    await request.app[keys.contacts].unblock(caller.bipupu_id, request.match_info["blocked_id"])
    return web.Response(status=204)
