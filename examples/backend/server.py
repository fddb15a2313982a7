"""Start the example backend on a real socket from tests or scripts: ``serve()``."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import uvicorn
from fastapi import FastAPI


@dataclass(frozen=True, slots=True, kw_only=True)
class RunningBackend:
    url: str  # e.g. http://127.0.0.1:54321
    port: int
    app: FastAPI

    @property
    def state(self) -> Any:
        """The ``BackendState`` (effects, call counts) of this instance."""
        return self.app.state.backend


@contextlib.contextmanager
def serve(
    port: int = 0, *, host: str = "127.0.0.1", app: FastAPI | None = None, **app_options: Any
) -> Iterator[RunningBackend]:
    """Run the example backend with uvicorn on a thread; ``port=0`` picks a free port.

    ``app_options`` go to ``create_app`` (``signing_key``, ``verify_signatures``,
    ``idempotency``, ``heartbeat_interval``).
    """
    from examples.backend.app import create_app

    application = app or create_app(**app_options)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    actual_port = sock.getsockname()[1]
    config = uvicorn.Config(application, log_level="warning", lifespan="off", access_log=False)
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="example-backend", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError(f"the example backend did not start on {host}:{actual_port}")
        time.sleep(0.01)
    try:
        yield RunningBackend(url=f"http://{host}:{actual_port}", port=actual_port, app=application)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
