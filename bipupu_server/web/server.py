"""The HTTP server around the app: a cap per client address, and parser errors in the one error shape.

aiohttp's own protocol takes any number of connections from one address and answers a request
it cannot parse with plain text that echoes the input (a token, say), which it also logs in
full. `Protocol` is that protocol with both mended; `Site` listens with it; `run` serves until
SIGTERM or Ctrl-C, as `web.run_app` would.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
from contextlib import suppress
from typing import Any, Callable, Iterable

import orjson
from aiohttp import web
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_runner import GracefulExit

log = logging.getLogger(__name__)

SERVER_NAME = "bipupu"  # the Server header of every answer: no versions (SPEC §4)
KEEPALIVE_TIMEOUT_S = 75.0  # an idle connection, or one still sending its headers, is closed after this
# After an answer given before the body was read (a 408, a 413), what still comes is drained this
# long before the connection is closed (aiohttp's default is 10 s: long, for a body too slow anyway).
LINGERING_S = 2.0
REFUSED_LINGER_S = 1.0  # a connection refused at the cap is gone after this, whatever its client does
SHUTDOWN_TIMEOUT_S = 10.0


def _error_body(code: str, message: str) -> bytes:
    return orjson.dumps({"error": {"code": code, "message": message}})


TOO_MANY_CONNECTIONS = _error_body(
    "too_many_connections", "too many open connections from your address; close some and try again")
TOO_MANY_RESPONSE = b"\r\n".join([
    b"HTTP/1.1 429 Too Many Requests", b"Content-Type: application/json", b"Retry-After: 5",
    b"Server: " + SERVER_NAME.encode(), b"Connection: close", b"Content-Length: %d" % len(TOO_MANY_CONNECTIONS),
    b"", TOO_MANY_CONNECTIONS])


def address_key(peername: Any) -> str:
    """Whose connection this is: the IPv4 address, or the /64 of an IPv6 one (one host holds a whole /64)."""
    host = peername[0] if isinstance(peername, tuple) and peername else str(peername)
    try:
        address = ipaddress.ip_address(host)
    except ValueError:  # a Unix socket, or something else without an IP address
        return str(host)
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def in_networks(host: str, networks: Iterable[Any]) -> bool:
    """Whether `host` (an address as text) lies in one of `networks`; False for anything not an address."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address in network for network in networks)


class Connections:
    """Per client address, the open connections that have proven nothing: all but authenticated WebSockets.

    Those are what a client can open for free (a request still being read, a socket that has not
    authenticated, an idle keep-alive); an authenticated socket is bounded per user by the hub
    instead, so many phones behind one address keep working.
    """

    def __init__(self, limit: int, trusted: Iterable[Any] = ()):
        self.limit = limit  # 0: no cap
        self.trusted = tuple(trusted)  # reverse proxies: their connections are everyone's, never capped
        self._by_address: dict[str, int] = {}
        self._counted: dict[Any, str] = {}  # transport -> its address key, while it counts

    def unproven(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def admit(self, transport: Any) -> bool:
        """Count a new connection; False (and not counted) when its address is at the cap."""
        peer = transport.get_extra_info("peername")
        key = address_key(peer)
        count = self._by_address.get(key, 0)
        if self.limit and count >= self.limit and not (
                self.trusted and isinstance(peer, tuple) and in_networks(peer[0], self.trusted)):
            return False
        self._by_address[key] = count + 1
        self._counted[transport] = key
        return True

    def proven(self, transport: Any) -> None:
        """The connection is now an authenticated WebSocket: it no longer counts against its address."""
        key = self._counted.pop(transport, None)
        if key is not None:
            remaining = self._by_address[key] - 1
            if remaining:
                self._by_address[key] = remaining
            else:
                del self._by_address[key]

    def lost(self, transport: Any) -> None:
        self.proven(transport)  # the same bookkeeping: it stops counting


class Protocol(RequestHandler):
    """aiohttp's HTTP protocol, refusing connections past the cap and answering parse errors as JSON."""

    __slots__ = ("_connections", "_refused", "_counted")

    def __init__(self, manager: web.Server, connections: Connections, **kwargs: Any):
        super().__init__(manager, **kwargs)
        self._connections = connections
        self._refused = False
        self._counted: Any = None  # our own hold on the transport: aiohttp drops self.transport on force_close

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if not self._connections.admit(transport):
            # Refused before anything is parsed. The answer goes out with a FIN; what the client
            # sends meanwhile is read and dropped (closing on unread bytes would reset the
            # connection and lose the answer), and the descriptor is given back within a second.
            self._refused = True
            transport.write(TOO_MANY_RESPONSE)  # type: ignore[attr-defined]
            transport.write_eof()  # type: ignore[attr-defined]
            asyncio.get_running_loop().call_later(REFUSED_LINGER_S, transport.abort)  # type: ignore[attr-defined]
            return
        self._counted = transport
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if not self._refused:
            super().data_received(data)

    def eof_received(self) -> bool | None:
        if self._refused:
            return False  # the client is done too: close now
        return super().eof_received()

    def connection_lost(self, exc: BaseException | None) -> None:
        if self._refused:
            return
        if self._counted is not None:
            self._connections.lost(self._counted)
            self._counted = None
        super().connection_lost(exc)

    def handle_error(self, request: web.BaseRequest, status: int = 500, exc: BaseException | None = None,
                     message: str | None = None) -> web.StreamResponse:
        """A request aiohttp could not parse, or a failure outside every middleware: never echo the input."""
        # The exception's text holds the offending bytes, which may be a token: only its type is logged.
        what = type(exc).__name__ if exc is not None else "no exception"
        if status >= 500:
            log.error("error outside the request handlers for %s: %s", request.remote, what)
            body = _error_body("internal_error", "the server could not answer this request")
        else:
            log.info("refused an unparsable request from %s: %d %s", request.remote, status, what)
            body = _error_body("malformed_request", "the request is not valid HTTP (a line or a header is too long, "
                                                    "or holds bytes HTTP does not allow)")
        if request.writer.output_size > 0:  # the answer has begun: the connection can only be dropped
            raise ConnectionError("response already started")
        response = web.Response(status=status, body=body, content_type="application/json",
                                headers={"Server": SERVER_NAME})
        response.force_close()
        return response


class Site(web.BaseSite):
    """A TCP listener whose connections are served by `Protocol`."""

    __slots__ = ("_host", "_port", "_protocol")

    def __init__(self, runner: web.BaseRunner, host: str, port: int, protocol: Callable[[], Protocol]):
        super().__init__(runner)
        self._host, self._port, self._protocol = host, port, protocol

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(self._protocol, self._host, self._port, backlog=self._backlog,
                                                reuse_address=True)

    @property
    def addresses(self) -> list[Any]:
        return [sock.getsockname() for sock in self._server.sockets] if self._server is not None else []


async def start(app: web.Application, connections: Connections, host: str, port: int, *,
                handle_signals: bool = False, **handler: Any) -> tuple[web.AppRunner, Site]:
    """Start the app (its startup and cleanup contexts) and listen; `runner.cleanup()` stops it all."""
    runner = web.AppRunner(app, handle_signals=handle_signals, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    loop = asyncio.get_running_loop()
    manager = runner.server
    assert manager is not None

    def protocol() -> Protocol:
        return Protocol(manager, connections, loop=loop, keepalive_timeout=KEEPALIVE_TIMEOUT_S,
                        lingering_time=LINGERING_S, **handler)

    site = Site(runner, host, port, protocol)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site


def run(app: web.Application, connections: Connections, host: str, port: int, *,
        loop: asyncio.AbstractEventLoop, listening: Callable[[], None], **handler: Any) -> None:
    """Serve until SIGTERM or Ctrl-C, then shut down cleanly (what `web.run_app` does, with `Protocol`)."""

    async def serve() -> None:
        runner, _ = await start(app, connections, host, port, handle_signals=True, **handler)
        try:
            listening()
            await asyncio.Event().wait()  # until a signal raises GracefulExit out of the loop
        finally:
            await runner.cleanup()  # stop listening, close sockets, finish requests, cleanup contexts

    asyncio.set_event_loop(loop)
    main = loop.create_task(serve())
    try:
        loop.run_until_complete(main)
    except (GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            main.cancel()
            with suppress(asyncio.CancelledError):
                loop.run_until_complete(main)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            loop.close()
            asyncio.set_event_loop(None)


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
