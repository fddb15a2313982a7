"""A real wired Link Loom server for tests: ``build_services`` on a SQLite file, the real API app
served by uvicorn on a fixed local port, and one worker. It can be stopped and started again on
the same database and port, like a server restart.

    async with LoomServer(tmp_path, secrets={"TOKEN": "s3cret"}) as server:
        run = await server.services.runs.trigger("flow", inputs={})
        await server.restart()
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from linkloom import signing
from linkloom.api.app import create_app
from linkloom.config import load_settings
from linkloom.wiring import Services, build_services
from tests.support.servers import free_port

SIGNING_KEY = "wired-server-signing-key"


class HostRewrite(httpx.AsyncBaseTransport):
    """Sends requests for the given hosts (``"crm.example.com"``, ``"user-backend:8080"``) to
    local servers (``"http://127.0.0.1:1234"``; a path there is prepended, ``".../crm"`` turns
    ``/orders`` into ``/crm/orders``), so seed specs run verbatim."""

    def __init__(self, hosts: dict[str, str]) -> None:
        self.hosts = {name: httpx.URL(url) for name, url in hosts.items()}
        self.inner = httpx.AsyncHTTPTransport()

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        netloc = request.url.netloc.decode()
        target = self.hosts.get(netloc) or self.hosts.get(request.url.host)
        if target is not None:
            request.url = request.url.copy_with(
                scheme=target.scheme,
                host=target.host,
                port=target.port,
                path=target.path.rstrip("/") + request.url.path,
            )
            request.headers["Host"] = f"{target.host}:{target.port}"
        return await self.inner.handle_async_request(request)

    async def aclose(self) -> None:
        await self.inner.aclose()


class LoomServer:
    """``services`` and ``url`` are valid between ``start()`` and ``stop()``."""

    def __init__(
        self,
        home: Path,
        *,
        secrets: dict[str, str] | None = None,
        hosts: dict[str, str] | None = None,
        engine: dict[str, Any] | None = None,
    ) -> None:
        self.home = home
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db_path = home / "loom.db"
        self.settings = load_settings(
            home=home,
            database={"url": f"sqlite+aiosqlite:///{self.db_path}"},
            security={"signing_key": SIGNING_KEY},
            server={"public_url": self.url, "auth": False},
            engine={"poll_interval": 0.05, "lease_seconds": 0.9, **(engine or {})},
            secrets=secrets or {},
        )
        self.hosts = hosts or {}
        self.services: Services
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> LoomServer:
        transport = HostRewrite(self.hosts) if self.hosts else None
        self.services = build_services(self.settings, http_transport=transport)
        await self.services.start()
        app = create_app(self.settings, self.services, start_services=False)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        async with asyncio.timeout(10):
            while not self._server.started:
                if self._task.done():
                    self._task.result()
                await asyncio.sleep(0.01)
        # The app's first request takes most of a second (lazy set-up); pay it now, not inside
        # a test's sub-second heartbeat deadline.
        body = b"{}"
        async with httpx.AsyncClient() as client:
            await client.post(
                f"{self.url}/api/v1/callbacks/warm.1.up",
                content=body,
                headers=signing.sign(SIGNING_KEY, body),
            )
        return self

    async def stop(self) -> None:
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await self._task
            self._server = self._task = None
        await self.services.stop(grace=0.5)

    async def restart(self) -> None:
        await self.stop()
        await self.start()

    async def __aenter__(self) -> LoomServer:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        if self.services.started:
            await self.stop()

    async def wait(self, run_id: str, *, within: float = 20) -> Any:
        async with asyncio.timeout(within):
            return await self.services.runs.wait(run_id, poll=0.05)

    async def steps(self, run_id: str) -> dict[str, Any]:
        steps = await self.services.runs.list_steps(run_id)
        return {s.step_id: s for s in steps if s.item_index is None}
