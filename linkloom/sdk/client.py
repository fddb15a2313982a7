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
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import yaml

from linkloom import errors
from linkloom.sdk import models
from linkloom.sdk.errors import LinkloomAPIError, RunWaitTimeout, ServerUnreachable

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/v1"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class _Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


class _Calls:
    """The request for each API operation, shared by both clients."""

    @staticmethod
    def list_flows() -> _Call[list[models.FlowSummary]]:
        return _Call(method="GET", path="/flows", parse=_list_of(models.FlowSummary.from_json))

    @staticmethod
    def get_flow(flow_id: str) -> _Call[models.Flow]:
        return _Call(method="GET", path=f"/flows/{_q(flow_id)}", parse=models.Flow.from_json)

    @staticmethod
    def put_flow(flow_id: str, spec: dict[str, Any] | str) -> _Call[models.FlowVersion]:
        return _Call(
            method="PUT",
            path=f"/flows/{_q(flow_id)}",
            json={"spec": spec},
            parse=models.FlowVersion.from_json,
        )

    @staticmethod
    def delete_flow(flow_id: str) -> _Call[None]:
        return _Call(method="DELETE", path=f"/flows/{_q(flow_id)}", parse=lambda _: None)

    @staticmethod
    def trigger(flow_id: str, inputs: Mapping[str, Any] | None) -> _Call[models.Run]:
        return _Call(
            method="POST",
            path=f"/flows/{_q(flow_id)}/runs",
            json={"inputs": dict(inputs or {})},
            parse=models.Run.from_json,
        )

    @staticmethod
    def list_runs(
        flow: str | None, status: str | None, limit: int | None, cursor: str | None
    ) -> _Call[models.RunPage]:
        params = {"flow": flow, "status": status, "limit": limit, "cursor": cursor}
        return _Call(
            method="GET",
            path="/runs",
            params={k: v for k, v in params.items() if v is not None},
            parse=_run_page,
        )

    @staticmethod
    def get_run(run_id: str) -> _Call[models.Run]:
        return _Call(method="GET", path=f"/runs/{_q(run_id)}", parse=models.Run.from_json)

    @staticmethod
    def run_events(run_id: str, after: int | str | None) -> _Call[list[models.Event]]:
        return _Call(
            method="GET",
            path=f"/runs/{_q(run_id)}/events",
            params={} if after is None else {"after": after},
            parse=_list_of(models.Event.from_json),
        )

    @staticmethod
    def cancel_run(run_id: str) -> _Call[models.Run]:
        return _Call(method="POST", path=f"/runs/{_q(run_id)}/cancel", parse=models.Run.from_json)

    @staticmethod
    def retry_run(run_id: str) -> _Call[models.Run]:
        return _Call(method="POST", path=f"/runs/{_q(run_id)}/retry", parse=models.Run.from_json)

    @staticmethod
    def create_proposal(
        title: str, files: Mapping[str, str], description: str | None
    ) -> _Call[models.Proposal]:
        body: dict[str, Any] = {"title": title, "files": dict(files)}
        if description is not None:
            body["description"] = description
        return _Call(method="POST", path="/proposals", json=body, parse=models.Proposal.from_json)

    @staticmethod
    def get_proposal(proposal_id: str) -> _Call[models.Proposal]:
        return _Call(
            method="GET", path=f"/proposals/{_q(proposal_id)}", parse=models.Proposal.from_json
        )


class _Settings:
    """Connection settings and the retry decision, shared by both clients."""

    def __init__(
        self,
        base_url: str | None,
        *,
        token: str | None,
        timeout: float,
        retries: int,
        backoff: float,
        max_backoff: float,
    ) -> None:
        self.base_url = (base_url or os.environ.get("LOOM_SERVER_URL") or DEFAULT_URL).rstrip("/")
        self.token = token if token is not None else os.environ.get("LOOM_TOKEN")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff

    def headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": "linkloom-sdk"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def retry_delay(
        self,
        call: _Call[Any],
        attempt: int,
        *,
        error: Exception | None,
        response: httpx.Response | None,
    ) -> float | None:
        """Seconds to wait before trying ``call`` again, or None to stop."""
        if attempt > self.retries:
            return None
        delay = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
        if error is not None:
            # A POST is retried only when it cannot have reached the server.
            sent_maybe = not isinstance(error, httpx.ConnectError | httpx.ConnectTimeout)
            if call.method not in _IDEMPOTENT and sent_maybe:
                return None
            return delay
        assert response is not None
        if call.method in _IDEMPOTENT and response.status_code in _RETRY_STATUSES:
            after = response.headers.get("Retry-After", "")
            return min(float(after), self.max_backoff) if after.isdigit() else delay
        return None

    def unreachable(self, error: Exception) -> ServerUnreachable:
        reason = str(error) or type(error).__name__
        return ServerUnreachable(base_url=self.base_url, reason=reason)


def _decode(call: _Call[T], response: httpx.Response) -> T:
    if not response.is_success:
        raise LinkloomAPIError.from_response(response)
    if response.status_code == 204 or not response.content:
        return call.parse(None)
    try:
        data = response.json()
    except ValueError as exc:
        raise errors.Unavailable(
            f"the server answered {call.method} {call.path} with non-JSON; is "
            f"{response.url} a Link Loom server?"
        ) from exc
    return call.parse(data)


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
        self._settings = _Settings(
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

    def _do(self, call: _Call[T]) -> T:
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
                    return _decode(call, response)
            time.sleep(delay)

    def list_flows(self) -> list[models.FlowSummary]:
        return self._do(_Calls.list_flows())

    def get_flow(self, flow_id: str) -> models.Flow:
        return self._do(_Calls.get_flow(flow_id))

    def put_flow(self, flow_id: str, spec: dict[str, Any] | str) -> models.FlowVersion:
        """Create or update a flow from a spec dict or YAML/JSON text; returns the version."""
        return self._do(_Calls.put_flow(flow_id, spec))

    def register_flow(
        self, path_or_spec: str | Path | Mapping[str, Any] | Any
    ) -> models.FlowVersion:
        """Register a flow from a spec file, YAML text, a dict or a ``FlowSpec`` (the seeds'
        ``registerWorkflow``). Registering an unchanged spec creates no new version."""
        flow_id, spec = spec_payload(path_or_spec)
        return self.put_flow(flow_id, spec)

    def delete_flow(self, flow_id: str) -> None:
        self._do(_Calls.delete_flow(flow_id))

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
        run = self._do(_Calls.trigger(flow_id, inputs))
        return self.wait_for_run(run.id, timeout=timeout, poll=poll) if wait else run

    def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.RunPage:
        return self._do(_Calls.list_runs(flow, status, limit, cursor))

    def get_run(self, run_id: str) -> models.Run:
        return self._do(_Calls.get_run(run_id))

    def run_events(self, run_id: str, *, after: int | str | None = None) -> list[models.Event]:
        return self._do(_Calls.run_events(run_id, after))

    def cancel_run(self, run_id: str) -> models.Run:
        return self._do(_Calls.cancel_run(run_id))

    def retry_run(self, run_id: str) -> models.Run:
        return self._do(_Calls.retry_run(run_id))

    def create_proposal(
        self, title: str, files: Mapping[str, str], *, description: str | None = None
    ) -> models.Proposal:
        return self._do(_Calls.create_proposal(title, files, description))

    def get_proposal(self, proposal_id: str) -> models.Proposal:
        return self._do(_Calls.get_proposal(proposal_id))

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
        self._settings = _Settings(
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

    async def _do(self, call: _Call[T]) -> T:
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
                    return _decode(call, response)
            await asyncio.sleep(delay)

    async def list_flows(self) -> list[models.FlowSummary]:
        return await self._do(_Calls.list_flows())

    async def get_flow(self, flow_id: str) -> models.Flow:
        return await self._do(_Calls.get_flow(flow_id))

    async def put_flow(self, flow_id: str, spec: dict[str, Any] | str) -> models.FlowVersion:
        return await self._do(_Calls.put_flow(flow_id, spec))

    async def register_flow(
        self, path_or_spec: str | Path | Mapping[str, Any] | Any
    ) -> models.FlowVersion:
        flow_id, spec = await asyncio.to_thread(spec_payload, path_or_spec)
        return await self.put_flow(flow_id, spec)

    async def delete_flow(self, flow_id: str) -> None:
        await self._do(_Calls.delete_flow(flow_id))

    async def trigger(
        self,
        flow_id: str,
        inputs: Mapping[str, Any] | None = None,
        *,
        wait: bool = False,
        timeout: float = 300.0,  # noqa: ASYNC109 -- a polling deadline, same API as Client
        poll: float = 0.5,
    ) -> models.Run:
        run = await self._do(_Calls.trigger(flow_id, inputs))
        return await self.wait_for_run(run.id, timeout=timeout, poll=poll) if wait else run

    async def list_runs(
        self,
        *,
        flow: str | None = None,
        status: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> models.RunPage:
        return await self._do(_Calls.list_runs(flow, status, limit, cursor))

    async def get_run(self, run_id: str) -> models.Run:
        return await self._do(_Calls.get_run(run_id))

    async def run_events(
        self, run_id: str, *, after: int | str | None = None
    ) -> list[models.Event]:
        return await self._do(_Calls.run_events(run_id, after))

    async def cancel_run(self, run_id: str) -> models.Run:
        return await self._do(_Calls.cancel_run(run_id))

    async def retry_run(self, run_id: str) -> models.Run:
        return await self._do(_Calls.retry_run(run_id))

    async def create_proposal(
        self, title: str, files: Mapping[str, str], *, description: str | None = None
    ) -> models.Proposal:
        return await self._do(_Calls.create_proposal(title, files, description))

    async def get_proposal(self, proposal_id: str) -> models.Proposal:
        return await self._do(_Calls.get_proposal(proposal_id))

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


def spec_payload(
    path_or_spec: str | Path | Mapping[str, Any] | Any,
) -> tuple[str, dict[str, Any] | str]:
    """Return ``(flow_id, spec)`` for ``PUT /flows/{id}`` from a file path, YAML/JSON text, a
    dict or a pydantic ``FlowSpec``. YAML text is sent as text so the server can report errors
    with line numbers."""
    spec: dict[str, Any] | str
    if hasattr(path_or_spec, "model_dump"):
        spec = path_or_spec.model_dump(mode="json", exclude_none=True, by_alias=True)
        parsed: Any = spec
    elif isinstance(path_or_spec, Mapping):
        spec = dict(path_or_spec)
        parsed = spec
    elif isinstance(path_or_spec, Path) or (
        isinstance(path_or_spec, str)
        and "\n" not in path_or_spec
        and _looks_like_path(path_or_spec)
    ):
        path = Path(path_or_spec)
        try:
            spec = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise errors.InvalidInput(f"cannot read flow spec {path}: {exc.strerror}") from exc
        parsed = _parse_text(spec, source=str(path))
    elif isinstance(path_or_spec, str):
        spec = path_or_spec
        parsed = _parse_text(spec, source="the spec text")
    else:
        raise errors.InvalidInput(
            f"register_flow takes a path, YAML/JSON text, a dict or a FlowSpec, "
            f"not {type(path_or_spec).__name__}"
        )
    flow_id = parsed.get("id") if isinstance(parsed, dict) else None
    if not flow_id:
        raise errors.InvalidInput("the flow spec has no 'id'; add 'id: <slug>' at the top level")
    return str(flow_id), spec


def _looks_like_path(text: str) -> bool:
    return Path(text).is_file() or text.lower().endswith((".yaml", ".yml", ".json"))


def _parse_text(text: str, *, source: str) -> Any:
    try:
        return yaml.safe_load(text)  # JSON is YAML too
    except yaml.YAMLError as exc:
        raise errors.InvalidInput(f"{source} is not valid YAML/JSON: {exc}") from exc


def _q(segment: str) -> str:
    return quote(str(segment), safe="")


def _items(data: Any) -> list[Any]:
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for key in ("items", "data", "results"):
            if isinstance(data.get(key), list):
                return list(data[key])
    return []


def _list_of(parse: Callable[[dict[str, Any]], T]) -> Callable[[Any], list[T]]:
    return lambda data: [parse(item) for item in _items(data) if isinstance(item, dict)]


def _run_page(data: Any) -> models.RunPage:
    cursor = data.get("next_cursor") if isinstance(data, dict) else None
    runs = tuple(models.Run.from_json(item) for item in _items(data) if isinstance(item, dict))
    return models.RunPage(items=runs, next_cursor=None if cursor is None else str(cursor))


__all__ = ["AsyncClient", "Client", "spec_payload"]
