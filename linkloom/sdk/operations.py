"""The API operations as data, shared by ``Client`` and ``AsyncClient``: each operation is a
``Call`` (method, path, query, JSON body, and how to read the answer), and ``Connection`` holds
the base URL, token and the retry decision. Also ``spec_payload`` for ``register_flow``.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx
import yaml

from linkloom import errors
from linkloom.sdk import models
from linkloom.sdk.errors import LinkloomAPIError, ServerUnreachable

T = TypeVar("T")
DEFAULT_URL = "http://127.0.0.1:8080"
API = "/api/v1"
_IDEMPOTENT = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS"})
_RETRY_STATUSES = frozenset({502, 503, 504})


@dataclass(frozen=True, slots=True, kw_only=True)
class Call(Generic[T]):
    """One API request and how to read its answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    params: dict[str, Any] = field(default_factory=dict)
    json: Any = None


class Operations:
    """The request for each API operation, shared by both clients."""

    @staticmethod
    def list_flows() -> Call[list[models.FlowSummary]]:
        return Call(method="GET", path="/flows", parse=_list_of(models.FlowSummary.from_json))

    @staticmethod
    def get_flow(flow_id: str) -> Call[models.Flow]:
        return Call(method="GET", path=f"/flows/{_q(flow_id)}", parse=models.Flow.from_json)

    @staticmethod
    def put_flow(flow_id: str, spec: dict[str, Any] | str) -> Call[models.FlowVersion]:
        return Call(
            method="PUT",
            path=f"/flows/{_q(flow_id)}",
            json={"spec": spec},
            parse=models.FlowVersion.from_json,
        )

    @staticmethod
    def delete_flow(flow_id: str) -> Call[None]:
        return Call(method="DELETE", path=f"/flows/{_q(flow_id)}", parse=lambda _: None)

    @staticmethod
    def trigger(flow_id: str, inputs: Mapping[str, Any] | None) -> Call[models.Run]:
        return Call(
            method="POST",
            path=f"/flows/{_q(flow_id)}/runs",
            json={"inputs": dict(inputs or {})},
            parse=models.Run.from_json,
        )

    @staticmethod
    def list_runs(
        flow: str | None, status: str | None, limit: int | None, cursor: str | None
    ) -> Call[models.RunPage]:
        params = {"flow": flow, "status": status, "limit": limit, "cursor": cursor}
        return Call(
            method="GET",
            path="/runs",
            params={k: v for k, v in params.items() if v is not None},
            parse=_run_page,
        )

    @staticmethod
    def get_run(run_id: str) -> Call[models.Run]:
        return Call(method="GET", path=f"/runs/{_q(run_id)}", parse=models.Run.from_json)

    @staticmethod
    def run_events(run_id: str, after: int | str | None) -> Call[list[models.Event]]:
        return Call(
            method="GET",
            path=f"/runs/{_q(run_id)}/events",
            params={} if after is None else {"after": after},
            parse=_list_of(models.Event.from_json),
        )

    @staticmethod
    def cancel_run(run_id: str) -> Call[models.Run]:
        return Call(method="POST", path=f"/runs/{_q(run_id)}/cancel", parse=models.Run.from_json)

    @staticmethod
    def retry_run(run_id: str) -> Call[models.Run]:
        return Call(method="POST", path=f"/runs/{_q(run_id)}/retry", parse=models.Run.from_json)

    @staticmethod
    def create_proposal(
        title: str, files: Mapping[str, str], description: str | None
    ) -> Call[models.Proposal]:
        body: dict[str, Any] = {"title": title, "files": dict(files)}
        if description is not None:
            body["description"] = description
        return Call(method="POST", path="/proposals", json=body, parse=models.Proposal.from_json)

    @staticmethod
    def get_proposal(proposal_id: str) -> Call[models.Proposal]:
        return Call(
            method="GET", path=f"/proposals/{_q(proposal_id)}", parse=models.Proposal.from_json
        )


class Connection:
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
        call: Call[Any],
        attempt: int,
        *,
        error: Exception | None,
        response: httpx.Response | None,
    ) -> float | None:
        """Seconds to wait before trying ``call`` again, or None to stop."""
        if attempt > self.retries:
            return None
        delay = min(self.backoff * 2.0 ** (attempt - 1), self.max_backoff)
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


def decode(call: Call[T], response: httpx.Response) -> T:
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
