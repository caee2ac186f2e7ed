"""Who listens to each bipupu_id: sockets (bounded queues, a writer task while sending) and callbacks; publish never waits."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from typing import Any, Callable, Iterable, Protocol

from .protocol import GOING_AWAY, IDLE, REPLACED, TOO_SLOW, message_frame

log = logging.getLogger(__name__)

CLOSE_TIMEOUT_S = 2.0
PACE = 200  # writers a broadcast's pushes start per loop turn: pings and requests get their turn in between

Listener = Callable[[dict[str, Any]], None]  # handed each committed message; must not block (queue any I/O)


class Channel(Protocol):
    """The part of a WebSocket the hub uses (aiohttp's WebSocketResponse fits)."""

    async def send_str(self, data: str) -> None: ...
    async def close(self, *, code: int = ..., message: bytes = ...) -> bool: ...


class Pacer:
    """Starts the writers of pushed frames a slice at a time, one slice per turn of the loop.

    A broadcast pushes to thousands of sockets from one commit; started at once, their writers
    all run before anything else, and a phone's ping waited behind 10,000 of them (66 ms
    measured). Only when writers start is paced: each socket's frames are queued at once and in
    id order, and a socket's own replies (pong, errors) and its first frames start its writer
    immediately.
    """

    def __init__(self, per_turn: int = PACE):
        self.per_turn = per_turn
        self._waiting: deque[Socket] = deque()
        self._scheduled = False

    def __len__(self) -> int:
        return len(self._waiting)

    def wake(self, sock: Socket) -> None:
        self._waiting.append(sock)
        if not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._turn)

    def _turn(self) -> None:
        for _ in range(min(self.per_turn, len(self._waiting))):
            self._waiting.popleft().wake_now()
        if self._waiting:
            asyncio.get_running_loop().call_soon(self._turn)  # the next turn, after I/O
        else:
            self._scheduled = False


class Socket:
    """One live socket of one user. Only its writer task sends; the hub only enqueues.

    Lean, since a box holds thousands of them idle: slots, plain lists, and a writer task only
    while there is something to send (an idle socket holds no task, no queue, no event).
    """

    __slots__ = ("_abort", "_closed", "_closer", "_first", "_held", "_newest", "_pacer", "_paced", "_pending",
                 "_queue_size", "_stuck", "_writer", "bipupu_id", "channel", "close_code", "last_seen", "session_id")

    def __init__(self, channel: Channel, bipupu_id: str, session_id: str, *, queue_size: int, abort=None,
                 pacer: Pacer | None = None):
        self.channel = channel
        self.bipupu_id = bipupu_id
        self.session_id = session_id
        self._first: list[str] = []  # what start() sends first (auth_ok, the replay): not bounded by the queue
        self._pending: list[str] = []  # live frames not yet handed to the channel, oldest first: the bounded queue
        self._held: list[tuple[str, str]] | None = []  # (message id, frame) until start()
        self._newest = ""  # the greatest message id queued (or replayed): nothing at or below it is sent again
        self._queue_size = queue_size
        self._abort = abort  # drops the connection when a polite close cannot get through
        self._writer: asyncio.Task | None = None  # only while there is something to send
        self._stuck = False  # a send failed: the peer is gone, the reader side will clean up
        self._closer: asyncio.Task | None = None  # held so the close task is not garbage-collected mid-flight
        self._closed: asyncio.Event | None = None
        self._pacer = pacer  # who starts the writer of pushed frames (None: at once)
        self._paced = False  # waiting in the pacer's line
        self.close_code: int | None = None
        self.last_seen = time.monotonic()  # when the peer last sent a frame (the hub's idle sweep reads it)

    @property
    def closed(self) -> asyncio.Event:
        """Set once a close handshake has ended (made on first use: most sockets are never waited on)."""
        if self._closed is None:
            self._closed = asyncio.Event()
        return self._closed

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
        return self.send(data, paced=True)

    def send(self, data: str, *, paced: bool = False) -> bool:
        """Queue a frame; a pushed one (`paced`) may wait a few loop turns for its writer, a reply does not."""
        if self.close_code is not None:
            return True  # closing anyway: nothing more to say
        if len(self._pending) >= self._queue_size:
            return False
        self._pending.append(data)
        if paced and self._pacer is not None:
            if not self._paced and self._idle():
                self._paced = True
                self._pacer.wake(self)
        else:
            self.wake_now()
        return True

    def _idle(self) -> bool:
        return self._writer is None or self._writer.done()

    def wake_now(self) -> None:
        """A writer to send what waits, unless one is at it (there is never more than one: order is kept)."""
        self._paced = False
        if self._held is None and not self._stuck and self.close_code is None and self._idle() \
                and (self._first or self._pending):
            self._writer = asyncio.create_task(self._write(), name=f"ws-writer-{self.bipupu_id}")

    def start(self, first: Iterable[str], replayed_up_to: str | None) -> bool:
        """Send `first` frames, then the live frames held meanwhile; none at or below `replayed_up_to`."""
        held, self._held = self._held or [], None
        self._newest = replayed_up_to or ""
        self._first = list(first)
        self.wake_now()
        ok = True
        for message_id, data in held:
            ok = self.deliver(message_id, data) and ok
        return ok

    async def _write(self) -> None:
        try:
            while self._first or self._pending:
                await self.channel.send_str(self._first.pop(0) if self._first else self._pending.pop(0))
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the peer went away mid-send: the reader side will notice and clean up
            self._stuck = True
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


class _Subscription:
    """One callback listening to one user: the newest id it was handed, and whether it was unsubscribed."""

    __slots__ = ("active", "bipupu_id", "callback", "failed", "newest")

    def __init__(self, bipupu_id: str, callback: Listener):
        self.bipupu_id = bipupu_id
        self.callback = callback
        self.newest = ""  # as a socket's: nothing at or below it is handed over again
        self.failed = False  # its first failure is logged in full, the later ones quietly
        self.active = True


class Hub:
    """bipupu_id → its listeners. Publishing only enqueues or calls back, so one slow phone never delays others.

    Two kinds of listener: sockets (attach: at most max_per_user, counted by len() and
    sockets_of, closed by close_user/close_sessions/close_all, handed the frame encoded once per
    publish) and callbacks (subscribe: the BLE relay, handed the message dict, never closed here).
    """

    def __init__(self, *, max_per_user: int = 5, queue_size: int = 256):
        self.max_per_user = max_per_user
        self.queue_size = queue_size
        self._sockets: dict[str, list[Socket]] = {}
        self._subscriptions: dict[str, list[_Subscription]] = {}
        self.waiting: set[Channel] = set()  # upgraded, not yet authenticated: shutdown closes them too
        self.pacer = Pacer()  # starts the writers of pushed frames a slice per loop turn

    def __len__(self) -> int:
        return sum(len(socks) for socks in self._sockets.values())

    def subscribe(self, bipupu_id: str, callback: Listener) -> Callable[[], None]:
        """Call `callback` with each message committed for bipupu_id, in id order; returns the unsubscribe."""
        sub = _Subscription(bipupu_id, callback)
        self._subscriptions.setdefault(bipupu_id, []).append(sub)

        def unsubscribe() -> None:
            if not sub.active:
                return
            sub.active = False
            subs = self._subscriptions.get(bipupu_id)
            if subs and sub in subs:
                subs.remove(sub)
                if not subs:
                    del self._subscriptions[bipupu_id]

        return unsubscribe

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
        """Hand a committed message to every listener of its receiver; returns how many took it."""
        socks = self._sockets.get(bipupu_id)
        subs = self._subscriptions.get(bipupu_id)
        taken = 0
        if socks:
            data = message_frame(message)  # encoded once, whatever the number of sockets
            for sock in list(socks):
                if sock.deliver(message["id"], data):
                    taken += 1
                else:
                    self.detach(sock)
                    sock.close(TOO_SLOW, "too slow: catch up with since")
        if subs:
            taken += self._call_back(tuple(subs), message)
        return taken

    @staticmethod
    def _call_back(subs: tuple[_Subscription, ...], message: dict[str, Any]) -> int:
        taken = 0
        for sub in subs:
            if not sub.active:  # unsubscribed by an earlier callback of this very publish
                continue
            if message["id"] <= sub.newest:
                taken += 1
                continue
            sub.newest = message["id"]
            try:
                sub.callback(message)
            except Exception as exc:  # a listener's bug must not cost the other listeners their cards
                if sub.failed:
                    log.debug("listener %r of %s failed again: %r", sub.callback, sub.bipupu_id, exc)
                else:
                    sub.failed = True
                    log.exception("listener %r of %s failed (its later failures are logged at debug level)",
                                  sub.callback, sub.bipupu_id)
            else:
                taken += 1
        return taken

    def sockets_of(self, bipupu_id: str) -> int:
        """How many live sockets a user has."""
        return len(self._sockets.get(bipupu_id, ()))

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

    def close_idle(self, silent_since: float) -> int:
        """Close the sockets whose peer sent no frame since `silent_since` (time.monotonic()).

        One sweep for all, instead of a receive timeout (an asyncio timer) per socket: idle sockets
        are what a box holds most of, and each timer was half a KiB and a reschedule per frame.
        """
        idle = [sock for group in self._sockets.values() for sock in group if sock.last_seen < silent_since]
        for sock in idle:
            self.detach(sock)
            sock.close(IDLE, "idle: no frame for too long")
        return len(idle)

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
