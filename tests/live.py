"""The real server on 127.0.0.1, for tests whose client is an outside program (schemathesis, a generated client)."""

from __future__ import annotations

import asyncio
import threading

from bipupu_server import keys
from bipupu_server.app import init_app
from bipupu_server.config import Config
from bipupu_server.web import server


class LiveServer:
    """The real app on 127.0.0.1 (a free port), served from a thread running its own event loop."""

    def __init__(self, config: Config):
        self.config = config
        self.url = ""
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="live-server", daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(timeout=30)
        if not self.url:
            self._thread.join(timeout=30)
            raise RuntimeError("the live server did not start") from self._error

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(timeout=30)
        assert not self._thread.is_alive(), "the live server thread did not stop"
        if self._error is not None:
            raise RuntimeError("the live server failed") from self._error

    def _run(self) -> None:
        try:
            asyncio.run(self._serve())  # also shuts down async generators and the default executor
        except BaseException as exc:  # handed to the test thread, which raises it
            self._error = exc
        finally:
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = init_app(self.config)
        # The server's own listener and protocol, as `python run.py` serves (connection cap, HTTP refusals).
        runner, site = await server.start(app, app[keys.connections], "127.0.0.1", 0, access_log=None)
        try:
            host, port = site.addresses[0][:2]
            self.url = f"http://{host}:{port}"
            self._ready.set()
            await self._stop.wait()
        finally:
            await runner.cleanup()  # on_shutdown (sockets), then the cleanup contexts (scheduler, database)
