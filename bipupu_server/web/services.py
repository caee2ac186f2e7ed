"""GET /services."""

from __future__ import annotations

from aiohttp import web

from .. import keys
from .responses import json_response, principal


async def listing(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.services].listing(caller.bipupu_id))
