"""GET /services, and POST /services/{service_id}/broadcast for admins' scripts."""

from __future__ import annotations

from aiohttp import web

from msgspec import UNSET

from .. import keys
from ..admin import Actor, Admin
from ..errors import Forbidden
from .responses import client_address, json_body, json_response, principal
from .shapes import BroadcastRequest, builtins


async def listing(request: web.Request) -> web.Response:
    caller = await principal(request)
    return json_response(await request.app[keys.services].listing(caller.bipupu_id))


async def broadcast(request: web.Request) -> web.Response:
    """Broadcast now with an admin's bearer token: to a service's subscribers, or everyone for bipupu.notice."""
    caller = await principal(request)
    if not caller.is_admin:
        raise Forbidden("broadcasting needs an admin account", code="not_admin")
    body = await json_body(request, BroadcastRequest)
    service_id = request.match_info["service_id"]
    broadcaster = request.app[keys.broadcaster]
    sent = await broadcaster.broadcast_now(service_id, body.content,
                                           None if body.pattern is UNSET else builtins(body.pattern))
    # The audit log keeps who by bipupu_id and address; a bearer token carries no username.
    by = Actor(Admin(user_id=caller.user_id, bipupu_id=caller.bipupu_id, username=""), client_address(request))
    await request.app[keys.admin].record(by, "service.broadcast", service_id, sent=sent, via="api")
    return json_response({"service_id": service_id, "sent": sent, "duration_s": round(broadcaster.last.duration_s, 3)})
