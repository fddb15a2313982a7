"""Real HTTP servers on 127.0.0.1 for the tests, each in a daemon thread with its own event loop,
so they keep answering whatever the test's loop (or the process under test) is doing.

* ``free_port()``: a port nobody listens on right now.
* ``ThreadedAiohttpServer``: subclass it and write ``async def handle(self, request)``; every
  method and path reaches it. ``with Backend() as server: server.url`` (http://127.0.0.1:<port>).
* ``ThreadedUvicorn``: an ASGI app (the Link Loom API, a FastAPI fake) behind uvicorn. The port is
  reserved when it is created, so settings can name it before the app exists::

      server = ThreadedUvicorn()
      app = create_app(load_settings(server={"port": server.port}), services)
      with server.serving(app):
          ...  # server.url
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Self

from aiohttp import web

START_TIMEOUT = 20.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ThreadedAiohttpServer:
    """Serves ``self.handle`` for every route on 127.0.0.1:``port`` (0: a free one)."""

    client_max_size = 16 * 1024 * 1024

    def __init__(self, *, port: int = 0) -> None:
        self.port = port
        self.url = ""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None

    async def handle(self, request: web.Request) -> web.StreamResponse:  # pragma: no cover
        raise NotImplementedError

    def __enter__(self) -> Self:
        self._ready.clear()
        self._error = None
        self._thread = threading.Thread(target=self._main, name=type(self).__name__, daemon=True)
        self._thread.start()
        if not self._ready.wait(START_TIMEOUT) or self._error is not None:
            raise RuntimeError(f"{type(self).__name__} did not start: {self._error!r}")
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _main(self) -> None:
        try:
            asyncio.run(self._serve())
        except BaseException as exc:  # reported by __enter__
            self._error = exc
            self._ready.set()

    async def _serve(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=self.client_max_size)
        app.router.add_route("*", "/{tail:.*}", self.handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self.port, backlog=1024, reuse_address=True)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{self.port}"
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()


class ThreadedUvicorn:
    """An ASGI app served by uvicorn on a port reserved at creation, in a daemon thread."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    @contextmanager
    def serving(self, app: Any, *, lifespan: str = "on", **options: Any) -> Iterator[Self]:
        """Serve ``app`` for the ``with`` block; uvicorn's own logging stays off."""
        import uvicorn

        config = uvicorn.Config(
            app, log_config=None, access_log=False, lifespan=lifespan, **options
        )
        server = uvicorn.Server(config)
        thread = threading.Thread(
            target=server.run, kwargs={"sockets": [self._sock]}, name="uvicorn", daemon=True
        )
        thread.start()
        deadline = time.monotonic() + START_TIMEOUT
        try:
            while not server.started:
                if not thread.is_alive() or time.monotonic() > deadline:
                    raise RuntimeError(f"the ASGI server on {self.url} did not start")
                time.sleep(0.02)
            yield self
        finally:
            server.should_exit = True
            thread.join(timeout=15)
            self._sock.close()
