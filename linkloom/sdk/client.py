"""Clients of the Link Loom REST API: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Both speak to the same paths under ``/api/v1`` (listed in docs/sdk.md), send the token as
``Authorization: Bearer``, retry connection errors with exponential backoff (a POST only when the
connection was never made, so a run is never started twice), and raise a ``LinkloomAPIError``
subclass carrying the status, ``code`` and message of the server's RFC 9457 problem body.

    with Client("http://127.0.0.1:8080", token="...") as loom:
        loom.register_flow("flows/daily-report/flow.yaml")
        run = loom.trigger("daily-report", {"day": "2024-05-01"}, wait=True)
        assert run.succeeded, run.error
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import httpx

from linkloom.sdk import models
from linkloom.sdk.errors import RunWaitTimeout
from linkloom.sdk.operations import API, Call, Connection, Operations, decode, spec_payload

T = TypeVar("T")


class Client:
    """Blocking client (``httpx.Client``). Use as a context manager or call ``close()``."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self._settings = Connection(
            base_url,
            token=token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.base_url = self._settings.base_url
        self._http = httpx.Client(
            base_url=self.base_url + API,
            headers=self._settings.headers(),
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _do(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = self._http.request(
                    call.method, call.path, params=call.params or None, json=call.json
                )
            except httpx.TransportError as exc:
                delay = self._settings.retry_delay(call, attempt, error=exc, response=None)
                if delay is None:
                    raise self._settings.unreachable(exc) from exc
            else:
                delay = self._settings.retry_delay(call, attempt, error=None, response=response)
                if delay is None:
                    return decode(call, response)
            time.sleep(delay)

    def list_flows(self) -> list[models.FlowSummary]:
        return self._do(Operations.list_flows())

    def get_flow(self, flow_id: str) -> models.Flow:
        return self._do(Operations.get_flow(flow_id))

    def put_flow(self, flow_id: str, spec: dict[str, Any] | str) -> models.FlowVersion:
        """Create or update a flow from a spec dict or YAML/JSON text; returns the version."""
        return self._do(Operations.put_flow(flow_id, spec))

    def register_flow(
        self, path_or_spec: str | Path | Mapping[str, Any] | Any
    ) -> models.FlowVersion:
        """Register a flow from a spec file, YAML text, a dict or a ``FlowSpec`` (the seeds'
        ``registerWorkflow``). Registering an unchanged spec creates no new version."""
        flow_id, spec = spec_payload(path_or_spec)
        return self.put_flow(flow_id, spec)

    def delete_flow(self, flow_id: str) -> None:
        self._do(Operations.delete_flow(flow_id))

    def trigger(
        self,
        flow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float = 300.0,
        poll: float = 0.5,
    ) -> models.Run:
        """Start a run; with ``wait=True`` return it once it has ended."""
        run = self._do(Operations.trigger(flow_id, inputs))
        return self.wait_for_run(run.id, timeout=timeout, poll=poll) if wait else run

    def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.RunPage:
        return self._do(Operations.list_runs(flow, status, limit, cursor))

    def get_run(self, run_id: str) -> models.Run:
        return self._do(Operations.get_run(run_id))

    def run_events(self, run_id: str, *, after: int | str | None = None) -> list[models.Event]:
        return self._do(Operations.run_events(run_id, after))

    def cancel_run(self, run_id: str) -> models.Run:
        return self._do(Operations.cancel_run(run_id))

    def retry_run(self, run_id: str) -> models.Run:
        return self._do(Operations.retry_run(run_id))

    def create_proposal(
        self, title: str, files: Mapping[str, str], *, description: str | None = None
    ) -> models.Proposal:
        return self._do(Operations.create_proposal(title, files, description))

    def get_proposal(self, proposal_id: str) -> models.Proposal:
        return self._do(Operations.get_proposal(proposal_id))

    def iter_runs(
        self, *, flow: str | None = None, status: str | None = None, page_size: int = 100
    ) -> Iterator[models.Run]:
        """Every matching run, newest first, following ``next_cursor`` page by page."""
        cursor: str | None = None
        while True:
            page = self.list_runs(flow=flow, status=status, limit=page_size, cursor=cursor)
            yield from page.items
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    def follow(
        self, run_id: str, *, poll: float = 0.5, timeout: float | None = None
    ) -> Iterator[models.Event]:
        """Yield the run's events as they are recorded, until the run has ended."""
        deadline = None if timeout is None else time.monotonic() + timeout
        after: int | str | None = None
        while True:
            events = self.run_events(run_id, after=after)
            yield from events
            if events:
                after = events[-1].id
                continue
            run = self.get_run(run_id)
            if run.done:
                yield from self.run_events(run_id, after=after)
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise RunWaitTimeout(run_id=run_id, status=run.status, timeout=timeout)
            time.sleep(poll)

    def wait_for_run(self, run_id: str, *, timeout: float = 300.0, poll: float = 0.5) -> models.Run:
        """Poll until the run has ended; raises ``RunWaitTimeout`` after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            run = self.get_run(run_id)
            if run.done:
                return run
            if time.monotonic() >= deadline:
                raise RunWaitTimeout(run_id=run_id, status=run.status, timeout=timeout)
            time.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))


class AsyncClient:
    """Asyncio client (``httpx.AsyncClient``), with the same methods as ``Client``."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 30.0,
        retries: int = 3,
        backoff: float = 0.25,
        max_backoff: float = 5.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._settings = Connection(
            base_url,
            token=token,
            timeout=timeout,
            retries=retries,
            backoff=backoff,
            max_backoff=max_backoff,
        )
        self.base_url = self._settings.base_url
        self._http = httpx.AsyncClient(
            base_url=self.base_url + API,
            headers=self._settings.headers(),
            timeout=timeout,
            transport=transport,
        )

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _do(self, call: Call[T]) -> T:
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self._http.request(
                    call.method, call.path, params=call.params or None, json=call.json
                )
            except httpx.TransportError as exc:
                delay = self._settings.retry_delay(call, attempt, error=exc, response=None)
                if delay is None:
                    raise self._settings.unreachable(exc) from exc
            else:
                delay = self._settings.retry_delay(call, attempt, error=None, response=response)
                if delay is None:
                    return decode(call, response)
            await asyncio.sleep(delay)

    async def list_flows(self) -> list[models.FlowSummary]:
        return await self._do(Operations.list_flows())

    async def get_flow(self, flow_id: str) -> models.Flow:
        return await self._do(Operations.get_flow(flow_id))

    async def put_flow(self, flow_id: str, spec: dict[str, Any] | str) -> models.FlowVersion:
        return await self._do(Operations.put_flow(flow_id, spec))

    async def register_flow(
        self, path_or_spec: str | Path | Mapping[str, Any] | Any
    ) -> models.FlowVersion:
        flow_id, spec = await asyncio.to_thread(spec_payload, path_or_spec)
        return await self.put_flow(flow_id, spec)

    async def delete_flow(self, flow_id: str) -> None:
        await self._do(Operations.delete_flow(flow_id))

    async def trigger(
        self,
        flow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float = 300.0,  # noqa: ASYNC109 -- a polling deadline, same API as Client
        poll: float = 0.5,
    ) -> models.Run:
        run = await self._do(Operations.trigger(flow_id, inputs))
        return await self.wait_for_run(run.id, timeout=timeout, poll=poll) if wait else run

    async def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.RunPage:
        return await self._do(Operations.list_runs(flow, status, limit, cursor))

    async def get_run(self, run_id: str) -> models.Run:
        return await self._do(Operations.get_run(run_id))

    async def run_events(
        self, run_id: str, *, after: int | str | None = None
    ) -> list[models.Event]:
        return await self._do(Operations.run_events(run_id, after))

    async def cancel_run(self, run_id: str) -> models.Run:
        return await self._do(Operations.cancel_run(run_id))

    async def retry_run(self, run_id: str) -> models.Run:
        return await self._do(Operations.retry_run(run_id))

    async def create_proposal(
        self, title: str, files: Mapping[str, str], *, description: str | None = None
    ) -> models.Proposal:
        return await self._do(Operations.create_proposal(title, files, description))

    async def get_proposal(self, proposal_id: str) -> models.Proposal:
        return await self._do(Operations.get_proposal(proposal_id))

    async def iter_runs(
        self, *, flow: str | None = None, status: str | None = None, page_size: int = 100
    ) -> AsyncIterator[models.Run]:
        cursor: str | None = None
        while True:
            page = await self.list_runs(flow=flow, status=status, limit=page_size, cursor=cursor)
            for run in page.items:
                yield run
            if not page.next_cursor or not page.items:
                return
            cursor = page.next_cursor

    async def follow(
        self,
        run_id: str,
        *,
        poll: float = 0.5,
        timeout: float | None = None,  # noqa: ASYNC109 -- a polling deadline, same API as Client
    ) -> AsyncIterator[models.Event]:
        deadline = None if timeout is None else time.monotonic() + timeout
        after: int | str | None = None
        while True:
            events = await self.run_events(run_id, after=after)
            for event in events:
                yield event
            if events:
                after = events[-1].id
                continue
            run = await self.get_run(run_id)
            if run.done:
                for event in await self.run_events(run_id, after=after):
                    yield event
                return
            if deadline is not None and time.monotonic() >= deadline:
                raise RunWaitTimeout(run_id=run_id, status=run.status, timeout=timeout)
            await asyncio.sleep(poll)

    async def wait_for_run(
        self,
        run_id: str,
        *,
        timeout: float = 300.0,  # noqa: ASYNC109 -- a polling deadline, same API as Client
        poll: float = 0.5,
    ) -> models.Run:
        deadline = time.monotonic() + timeout
        while True:
            run = await self.get_run(run_id)
            if run.done:
                return run
            if time.monotonic() >= deadline:
                raise RunWaitTimeout(run_id=run_id, status=run.status, timeout=timeout)
            await asyncio.sleep(min(poll, max(deadline - time.monotonic(), 0.0)))


__all__ = ["AsyncClient", "Client", "spec_payload"]
