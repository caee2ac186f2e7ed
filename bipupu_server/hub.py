"""Live sockets per bipupu_id: bounded send queues, one writer task each, publish never waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any, Iterable, Protocol

import orjson

log = logging.getLogger(__name__)

# Close codes (SPEC §5).
GOING_AWAY = 1001
TOO_BIG = 1009
BAD_TOKEN = 4001
SIGNED_OUT = 4003
REPLACED = 4008
TOO_SLOW = 4009
IDLE = 1000
TRY_AGAIN_LATER = 1013  # the database is unavailable: reconnect later

CLOSE_TIMEOUT_S = 2.0


class Channel(Protocol):
    """The part of a WebSocket the hub uses (aiohttp's WebSocketResponse fits)."""

    async def send_str(self, data: str) -> None: ...
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


def frame(kind: str, **fields: Any) -> str:
    return orjson.dumps({"type": kind, **fields}).decode()


def message_frame(message: dict[str, Any]) -> str:
    return frame("new_message", payload=message)


class Socket:
    """One live socket of one user. Only its writer task sends; the hub only enqueues."""

    def __init__(self, channel: Channel, bipupu_id: str, session_id: str, *, queue_size: int, abort=None):
        self.channel = channel
        self.bipupu_id = bipupu_id
        self.session_id = session_id
        self._queue: asyncio.Queue[str] = asyncio.Queue(queue_size)
        self._held: deque[tuple[str, str]] | None = deque()  # (message id, frame) until start()
        self._newest = ""  # the greatest message id queued (or replayed): nothing at or below it is sent again
        self._queue_size = queue_size
        self._abort = abort  # drops the connection when a polite close cannot get through
        self._writer: asyncio.Task | None = None
        self._closer: asyncio.Task | None = None  # held so the close task is not garbage-collected mid-flight
        self.close_code: int | None = None
        self.closed = asyncio.Event()

    def deliver(self, message_id: str, data: str) -> bool:
        """Queue a message frame once, in id order; False if the socket cannot keep up."""
        if self._held is not None:
            if len(self._held) >= self._queue_size:
                return False
            self._held.append((message_id, data))
            return True
        # A card committed just before the replay's read is in the replay, and its sender may
        # publish it only after start(): the id, not the timing, says it was queued already.
        if message_id <= self._newest:
            return True
        self._newest = message_id
        return self.send(data)

    def send(self, data: str) -> bool:
        if self.close_code is not None:
            return True  # closing anyway: nothing more to say
        try:
            self._queue.put_nowait(data)
        except asyncio.QueueFull:
            return False
        return True

    def start(self, first: Iterable[str], replayed_up_to: str | None) -> bool:
        """Send `first` frames, then the live frames held meanwhile; none at or below `replayed_up_to`."""
        held, self._held = self._held or deque(), None
        self._newest = replayed_up_to or ""
        ok = True
        self._writer = asyncio.create_task(self._write(list(first)), name=f"ws-writer-{self.bipupu_id}")
        for message_id, data in held:
            ok = self.deliver(message_id, data) and ok
        return ok

    async def _write(self, first: list[str]) -> None:
        try:
            for data in first:
                await self.channel.send_str(data)
            while True:
                await self.channel.send_str(await self._queue.get())
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send: the reader side will notice and clean up
            log.debug("socket writer for %s stopped: %s", self.bipupu_id, exc)

    def close(self, code: int, reason: str = "") -> None:
        """Close once, in the background: the caller never waits on a slow peer."""
        if self.close_code is not None:
            return
        self.close_code = code
        self._closer = asyncio.create_task(self._close(code, reason), name=f"ws-close-{self.bipupu_id}")

    async def _close(self, code: int, reason: str) -> None:
        if self._writer is not None:
            self._writer.cancel()
        try:
            await asyncio.wait_for(self.channel.close(code=code, message=reason.encode()), CLOSE_TIMEOUT_S)
        except (asyncio.TimeoutError, ConnectionError, RuntimeError):
            if self._abort is not None:
                self._abort()
        finally:
            self.closed.set()

    async def stop(self) -> None:
        """Stop the writer (the handler is ending; the connection is gone or closing)."""
        if self._writer is not None and not self._writer.done():
            self._writer.cancel()
            try:
                await self._writer
            except asyncio.CancelledError:
                pass


class Hub:
    """bipupu_id → live sockets. Publishing only enqueues, so one slow phone never delays others."""

    def __init__(self, *, max_per_user: int = 5, queue_size: int = 256):
        self.max_per_user = max_per_user
        self.queue_size = queue_size
        self._sockets: dict[str, list[Socket]] = {}
        self.waiting: set[Channel] = set()  # upgraded, not yet authenticated: shutdown closes them too

    def __len__(self) -> int:
        return sum(len(socks) for socks in self._sockets.values())

    def attach(self, sock: Socket) -> None:
        """Register a socket; beyond the per-user limit the oldest one is replaced (4008)."""
        socks = self._sockets.setdefault(sock.bipupu_id, [])
        socks.append(sock)
        while len(socks) > self.max_per_user:
            oldest = socks.pop(0)
            oldest.close(REPLACED, "replaced by a newer connection")

    def detach(self, sock: Socket) -> None:
        socks = self._sockets.get(sock.bipupu_id)
        if socks and sock in socks:
            socks.remove(sock)
            if not socks:
                del self._sockets[sock.bipupu_id]

    def publish(self, bipupu_id: str, message: dict[str, Any]) -> int:
        """Queue a committed message to every socket of its receiver; returns how many took it."""
        socks = self._sockets.get(bipupu_id)
        if not socks:
            return 0
        data = message_frame(message)  # encoded once, whatever the number of sockets
        taken = 0
        for sock in list(socks):
            if sock.deliver(message["id"], data):
                taken += 1
            else:
                self.detach(sock)
                sock.close(TOO_SLOW, "too slow: catch up with since")
        return taken

    def session_ids(self) -> list[str]:
        """The sessions that have a live socket."""
        return list({sock.session_id for group in self._sockets.values() for sock in group})

    def close_user(self, bipupu_id: str, code: int, reason: str) -> int:
        """Close every socket of a user (deactivated)."""
        socks = self._sockets.pop(bipupu_id, [])
        for sock in socks:
            sock.close(code, reason)
        return len(socks)

    def close_sessions(self, session_ids: Iterable[str], code: int, reason: str) -> int:
        """Close the sockets opened with these sessions (signed out); rare, so a scan is fine."""
        ended = set(session_ids)
        chosen = [s for group in self._sockets.values() for s in group if s.session_id in ended]
        for sock in chosen:
            self.detach(sock)
            sock.close(code, reason)
        return len(chosen)

    async def close_all(self, code: int = GOING_AWAY, reason: str = "server shutting down") -> None:
        socks = [sock for group in self._sockets.values() for sock in group]
        self._sockets.clear()
        for sock in socks:
            sock.close(code, reason)
        for channel in list(self.waiting):  # their handlers see the close and stop waiting for auth
            with contextlib.suppress(asyncio.TimeoutError, ConnectionError, RuntimeError):
                await asyncio.wait_for(channel.close(code=code, message=reason.encode()), CLOSE_TIMEOUT_S)
        if socks:
            await asyncio.wait([asyncio.ensure_future(s.closed.wait()) for s in socks], timeout=CLOSE_TIMEOUT_S + 1)
