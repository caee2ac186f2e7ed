"""GET /ws: live pushes of new messages (SPEC §5). Reading and deleting stay in REST."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from typing import Any

import orjson
from aiohttp import WSMsgType, web

from .. import keys
from ..accounts import Principal
from ..clock import rfc3339
from ..errors import AppError, BadRequest, Forbidden
from ..hub import CLOSE_TIMEOUT_S, Socket
from ..ids import is_message_id
from ..protocol import (AUTH, AUTH_OK, BAD_TOKEN, ERROR, PING, PONG, REPLAY_DONE, SIGNED_OUT, TOO_SLOW,
                        TRY_AGAIN_LATER, frame, message_frame)
from ..store import messages
from ..store.db import DatabaseError
from .responses import bearer_token

PONG_FRAME = frame(PONG)


class Refused(Exception):
    """The socket cannot be bound to a user; closes with `code`."""

    def __init__(self, code: int, reason: str):
        super().__init__(reason)
        self.code = code
        self.reason = reason


async def websocket(request: web.Request) -> web.WebSocketResponse:
    app = request.app
    config = app[keys.config]
    # No permessage-deflate: cards are tiny, and a zlib context per socket would cost a lot of
    # memory across thousands of idle phones on a small board.
    # aiohttp refuses frames of max_msg_size and more; frames of exactly 64 KiB are allowed.
    ws = web.WebSocketResponse(max_msg_size=config.max_body_bytes + 1, compress=False)
    if not ws.can_prepare(request).ok:
        raise BadRequest("/ws speaks WebSocket only: send an Upgrade request", code="websocket_required")
    await ws.prepare(request)
    hub = app[keys.hub]
    sock = None
    try:
        hub.waiting.add(ws)
        try:
            caller, since = await _authenticate(request, ws)
        except Refused as refused:
            await ws.close(code=refused.code, message=refused.reason.encode())
            return ws
        finally:
            hub.waiting.discard(ws)
        transport = request.transport
        app[keys.connections].proven(transport)  # bounded per user by the hub from here on
        sock = Socket(ws, caller.bipupu_id, caller.session_id, queue_size=hub.queue_size,
                      abort=transport.abort if transport is not None else None, pacer=hub.pacer)
        hub.attach(sock)  # from here live messages are held until the replay is queued
        try:
            replay = await app[keys.mailbox].since(caller.bipupu_id, since) if since is not None else []
        except (sqlite3.Error, DatabaseError):  # upgraded already: no HTTP 503 possible, so say it in the close
            hub.detach(sock)
            sock.close(TRY_AGAIN_LATER, "database unavailable; reconnect later")
            return ws
        first = [frame(AUTH_OK, bipupu_id=caller.bipupu_id, server_time=rfc3339(app[keys.clock].time()))]
        first += [message_frame(message) for message in replay]
        if since is not None:
            first.append(frame(REPLAY_DONE, count=len(replay), has_more=len(replay) == messages.MAX_REPLAY))
        if not sock.start(first, replay[-1]["id"] if replay else since):
            hub.detach(sock)
            sock.close(TOO_SLOW, "too slow: catch up with since")
        await _read(ws, sock)
    finally:
        if sock is not None:
            hub.detach(sock)
            await sock.stop()
            if sock.close_code is not None:  # let the close handshake finish before the handler ends
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(sock.closed.wait(), CLOSE_TIMEOUT_S + 1)
            elif not ws.closed:
                await ws.close()
    return ws


async def _authenticate(request: web.Request, ws: web.WebSocketResponse) -> tuple[Principal, str | None]:
    """Bind the socket to a user: Bearer header, ?token=, or a first {"type":"auth"} frame."""
    config = request.app[keys.config]
    since = request.query.get("since")
    try:
        token = bearer_token(request) or request.query.get("token")
    except AppError:
        raise Refused(BAD_TOKEN, "malformed Authorization header") from None
    if token is None:
        try:
            msg = await ws.receive(timeout=config.ws_auth_timeout_s)
        except asyncio.TimeoutError:
            raise Refused(BAD_TOKEN, "no auth frame in time") from None
        data = _json(msg.data) if msg.type == WSMsgType.TEXT else None
        if not isinstance(data, dict) or data.get("type") != AUTH or not isinstance(data.get("token"), str):
            raise Refused(BAD_TOKEN, 'expected {"type":"auth","token":"..."}')
        token, since = data["token"], data.get("since", since)
    if since is not None and (not isinstance(since, str) or not is_message_id(since)):
        raise Refused(BAD_TOKEN, "since must be a message id")
    try:
        return await request.app[keys.accounts].authenticate(token), since
    except Forbidden as exc:
        raise Refused(SIGNED_OUT, exc.message) from None
    except AppError as exc:
        if exc.code == "token_revoked":  # signed out: refreshing cannot help, so not 4001
            raise Refused(SIGNED_OUT, exc.message) from None
        raise Refused(BAD_TOKEN, exc.message) from None
    except (sqlite3.Error, DatabaseError):
        raise Refused(TRY_AGAIN_LATER, "database unavailable; reconnect later") from None


async def _read(ws: web.WebSocketResponse, sock: Socket) -> None:
    """The only reader of the socket: pings, and error frames for anything else. A socket silent for
    ws_idle_timeout_s is closed by the hub's sweep (app.close_idle_sockets), not by a timer of its own."""
    while sock.close_code is None:
        msg = await ws.receive()
        sock.last_seen = time.monotonic()
        if msg.type == WSMsgType.TEXT:
            reply = _answer(_json(msg.data))
        elif msg.type == WSMsgType.BINARY:
            reply = frame(ERROR, code="bad_json", message="frames are JSON text")
        else:  # CLOSE, CLOSING, CLOSED, ERROR (aiohttp already closed with 1009 for a frame too big)
            break
        if not sock.send(reply):
            sock.close(TOO_SLOW, "too slow: catch up with since")
            break


def _answer(data: Any) -> str:
    if not isinstance(data, dict):
        return frame(ERROR, code="bad_json", message="frames are JSON objects")
    kind = data.get("type")
    if kind == PING:
        return PONG_FRAME
    if kind == AUTH:
        return frame(ERROR, code="already_authenticated", message="this socket is already authenticated")
    return frame(ERROR, code="unknown_type", message="known frame types: ping")


_INVALID = object()


def _json(text: str) -> Any:
    try:
        return orjson.loads(text)
    except orjson.JSONDecodeError:
        return _INVALID
