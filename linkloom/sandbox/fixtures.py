"""Fixture cases: a production run's inputs, recorded exchanges and results, replayable.

A case is stored as YAML at ``flows/<flow-id>/fixtures/<name>.yaml`` in the flows repo::

    name: run-01HX…              # unique within the flow
    flow_id: daily-report
    description: exported from run 01HX…
    source: {run_id: 01HX…, flow_version: 3}
    recorded_at: '2026-11-22T09:00:00+00:00'   # the sandbox clock is frozen here
    inputs: {date: '2026-11-21'}
    exchanges:                   # in recorded order; replayed by method + URL + canonical body
      - step_id: fetch
        item_index: null
        method: POST
        url: http://127.0.0.1:8081/api/tasks/fetch-data?region=eu   # the query as sent
        request_headers: {content-type: application/json}           # never credentials
        request_body: {…}          # null for GET and HEAD: nothing was sent
        status: 200
        response_headers: {content-type: application/json}
        response_body: {status: SUCCESS, output: {…}}
        error: null              # a connection error production saw instead of a response
    expected:                    # production's step results
      fetch: {status: SUCCEEDED, output: {…}, outputs: {}}
    run_status: SUCCEEDED        # a failed run is a case too ("newly passing" needs one)
    run_outputs: {…}
    stubs: [...]                 # optional: answers for requests production never made
                                 # (``sandbox/stubs.py``; flow-wide ones live in stubs.yaml)

Everything is scrubbed (``sandbox/scrub.py``) before it is built into a case.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from linkloom.sandbox import stubs as stub_rules
from linkloom.sandbox.errors import InvalidFixture
from linkloom.sandbox.scrub import Scrubber, sensitive_header

_DROP_RESPONSE_HEADERS = frozenset(
    {"content-length", "content-encoding", "transfer-encoding", "connection", "date", "server"}
)
# Request headers worth keeping in a case: those that can change the answer (content type,
# accept, the step's own headers). Transport details and per-attempt metadata are not.
_DROP_REQUEST_HEADERS = frozenset(
    {
        "content-length",
        "host",
        "connection",
        "accept-encoding",
        "user-agent",
        "idempotency-key",
        "traceparent",
        "tracestate",
        "x-loom-timestamp",
    }
)


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordedExchange:
    """One recorded HTTP call: what was asked and what came back."""

    step_id: str | None = None
    item_index: int | None = None
    method: str
    url: str
    request_headers: dict[str, str] = field(default_factory=dict)
    request_body: Any = None
    status: int | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    response_body: Any = None
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "step_id": self.step_id,
            "item_index": self.item_index,
            "method": self.method,
            "url": self.url,
            "request_headers": dict(self.request_headers),
            "request_body": self.request_body,
            "status": self.status,
            "response_headers": dict(self.response_headers),
            "response_body": self.response_body,
            "error": self.error,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RecordedExchange:
        return cls(
            step_id=data.get("step_id"),
            item_index=data.get("item_index"),
            method=str(data.get("method", "GET")).upper(),
            url=str(data["url"]),
            request_headers={
                str(k).lower(): str(v) for k, v in (data.get("request_headers") or {}).items()
            },
            request_body=data.get("request_body"),
            status=data.get("status"),
            response_headers={
                str(k): str(v) for k, v in (data.get("response_headers") or {}).items()
            },
            response_body=data.get("response_body"),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class ExpectedStep:
    """A step's production result: what the proposed version is compared against."""

    status: str
    output: Any = None
    outputs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "output": self.output,
            "outputs": self.outputs,
        }
        if self.error:
            out["error"] = self.error
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ExpectedStep:
        return cls(
            status=str(data.get("status", "SUCCEEDED")),
            output=data.get("output"),
            outputs=dict(data.get("outputs") or {}),
            error=data.get("error"),
        )


@dataclass(frozen=True, slots=True, kw_only=True)
class FixtureCase:
    """One replayable case of a flow."""

    name: str
    flow_id: str = ""
    description: str = ""
    source: dict[str, Any] = field(default_factory=dict)
    recorded_at: datetime
    inputs: dict[str, Any] = field(default_factory=dict)
    exchanges: tuple[RecordedExchange, ...] = ()
    expected: dict[str, ExpectedStep] = field(default_factory=dict)
    run_status: str | None = None
    run_outputs: dict[str, Any] = field(default_factory=dict)
    stubs: tuple[stub_rules.Stub, ...] = ()

    @property
    def version(self) -> int | None:
        """The flow version that recorded the case (None: written by hand)."""
        value = self.source.get("flow_version")
        return value if isinstance(value, int) and not isinstance(value, bool) else None

    def to_dict(self) -> dict[str, Any]:
        out = {
            "name": self.name,
            "flow_id": self.flow_id,
            "description": self.description,
            "source": dict(self.source),
            "recorded_at": self.recorded_at.isoformat(),
            "inputs": self.inputs,
            "exchanges": [e.to_dict() for e in self.exchanges],
            "expected": {k: v.to_dict() for k, v in self.expected.items()},
            "run_status": self.run_status,
            "run_outputs": self.run_outputs,
        }
        if self.stubs:
            out["stubs"] = [s.to_dict() for s in self.stubs]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, name: str | None = None) -> FixtureCase:
        if not isinstance(data, Mapping):
            raise InvalidFixture(name=name or "?", reason="a case must be a mapping")
        case_name = str(data.get("name") or name or "")
        if not case_name:
            raise InvalidFixture(name="?", reason="the case has no 'name'")
        try:
            return cls(
                name=case_name,
                flow_id=str(data.get("flow_id") or ""),
                description=str(data.get("description") or ""),
                source=dict(data.get("source") or {}),
                recorded_at=_parse_time(data.get("recorded_at")),
                inputs=dict(data.get("inputs") or {}),
                exchanges=tuple(RecordedExchange.from_dict(e) for e in data.get("exchanges") or ()),
                expected={
                    str(k): ExpectedStep.from_dict(v)
                    for k, v in (data.get("expected") or {}).items()
                },
                run_status=data.get("run_status"),
                run_outputs=dict(data.get("run_outputs") or {}),
                stubs=stub_rules.parse_list(data.get("stubs"), where=f"case {case_name}"),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidFixture(name=case_name, reason=str(exc) or type(exc).__name__) from exc


def dumps(case: FixtureCase) -> str:
    """The YAML text of a case (stable key order, unicode kept)."""
    return yaml.safe_dump(
        _plain(case.to_dict()), sort_keys=False, allow_unicode=True, default_flow_style=False
    )


def loads(text: str, *, name: str | None = None) -> FixtureCase:
    """Parse YAML (or JSON) case text."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidFixture(name=name or "?", reason=f"not valid YAML: {exc}") from exc
    return FixtureCase.from_dict(data, name=name)


def save(case: FixtureCase, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{case.name}.yaml"
    path.write_text(dumps(case))
    return path


def load(path: Path) -> FixtureCase:
    return loads(path.read_text(), name=path.stem)


def load_dir(directory: Path) -> list[FixtureCase]:
    """Every ``*.yaml``/``*.yml``/``*.json`` case in a directory, sorted by name."""
    if not directory.is_dir():
        return []
    paths = sorted(p for p in directory.iterdir() if p.suffix in (".yaml", ".yml", ".json"))
    return [load(p) for p in paths]


def cases_from_texts(texts: Mapping[str, str]) -> list[FixtureCase]:
    """Parse ``{name: yaml text}`` (what ``FlowsRepo.fixture_files`` returns), sorted by name.

    ``stubs`` (the flow-wide stubs file) is not a case: ``stubs_from_texts`` reads it.
    """
    return [loads(texts[name], name=name) for name in sorted(texts) if name != STUBS_FILE]


STUBS_FILE = "stubs"  # flows/<id>/fixtures/stubs.yaml: the flow's stubs, not a case


def stubs_from_texts(texts: Mapping[str, str]) -> tuple[stub_rules.Stub, ...]:
    """The flow-wide stubs of ``flows/<id>/fixtures/stubs.yaml`` (none when absent)."""
    text = texts.get(STUBS_FILE)
    return () if text is None else stub_rules.loads(text)


def case_from_run(
    *,
    run: Any,
    steps: Iterable[Any],
    exchanges: Iterable[Any],
    name: str | None = None,
    secrets: Iterable[str] = (),
    description: str | None = None,
) -> FixtureCase:
    """Build a scrubbed case from a recorded production run.

    Accepts the engine's records (``Run``, ``StepRun``, ``ExchangeRecord``) or plain dicts with the
    same field names; an exchange's request/response may be nested (``request: {headers, body}``)
    or flat (``request_body``, ``response_body``, ``response_headers``). Fan-out children
    (``item_index`` set) are folded into their parent's expected result.
    """
    scrub = Scrubber.with_secrets(secrets)
    run_id = str(field_of(run, "id", "run_id", default=""))
    recorded_at = field_of(run, "started_at", "created_at", "scheduled_at", default=None)
    expected: dict[str, ExpectedStep] = {}
    for step in steps:
        if field_of(step, "item_index", default=None) is not None:
            continue
        status = field_of(step, "status", default="SUCCEEDED")
        error = field_of(step, "error", default=None)
        if isinstance(error, Mapping):
            error = error.get("message") or json.dumps(error, sort_keys=True)
        expected[str(field_of(step, "step_id", "id"))] = ExpectedStep(
            status=str(getattr(status, "value", status)),
            output=scrub.data(field_of(step, "output", default=None)),
            outputs=scrub.data(dict(field_of(step, "outputs", default=None) or {})),
            error=scrub.text(str(error)) if error else None,
        )
    recorded = [exchange_from_record(e, scrub) for e in exchanges]
    run_status = field_of(run, "status", default=None)
    return FixtureCase(
        name=name or f"run-{run_id}",
        flow_id=str(field_of(run, "flow_id", default="")),
        description=description or f"recorded from production run {run_id}",
        source={"run_id": run_id, "flow_version": field_of(run, "version", default=None)},
        recorded_at=_parse_time(recorded_at),
        inputs=scrub.data(dict(field_of(run, "inputs", default=None) or {})),
        exchanges=tuple(recorded),
        expected=expected,
        run_status=str(getattr(run_status, "value", run_status)) if run_status else None,
        run_outputs=scrub.data(dict(field_of(run, "outputs", default=None) or {})),
    )


def exchange_from_record(exchange: Any, scrub: Scrubber) -> RecordedExchange:
    request = field_of(exchange, "request", default=None) or {}
    response = field_of(exchange, "response", default=None) or {}
    request_body = field_of(exchange, "request_body", default=None)
    if request_body is None and isinstance(request, Mapping):
        request_body = request.get("body")
    response_body = field_of(exchange, "response_body", default=None)
    if response_body is None and isinstance(response, Mapping):
        response_body = response.get("body")
    headers = field_of(exchange, "response_headers", default=None)
    if headers is None and isinstance(response, Mapping):
        headers = response.get("headers")
    kept = {
        str(k).lower(): str(v)
        for k, v in (headers or {}).items()
        if str(k).lower() not in _DROP_RESPONSE_HEADERS
    }
    sent = field_of(exchange, "request_headers", default=None)
    if sent is None and isinstance(request, Mapping):
        sent = request.get("headers")
    error = field_of(exchange, "error", default=None)
    method = str(field_of(exchange, "method", default="GET")).upper()
    return RecordedExchange(
        step_id=field_of(exchange, "step_id", default=None),
        item_index=field_of(exchange, "item_index", "index", default=None),
        method=method,
        url=scrub.url(str(field_of(exchange, "url"))),
        request_headers=request_headers(sent),
        request_body=None if method in ("GET", "HEAD") else scrub.data(request_body),
        status=field_of(exchange, "status", default=None),
        response_headers=scrub.headers(kept),
        response_body=scrub.data(response_body),
        error=scrub.text(str(error)) if error else None,
    )


def request_headers(headers: Mapping[str, Any] | None) -> dict[str, str]:
    """The request headers a case keeps: those that can change the answer, never credentials
    (sensitive names are dropped, not masked) nor per-attempt metadata (``X-Loom-*`` ids)."""
    kept: dict[str, str] = {}
    for name, value in (headers or {}).items():
        lowered = str(name).lower()
        if lowered in _DROP_REQUEST_HEADERS or sensitive_header(lowered):
            continue
        if lowered.startswith("x-loom-"):
            continue
        kept[lowered] = str(value)
    return kept


def field_of(obj: Any, *names: str, default: Any = ...) -> Any:
    for name in names:
        if isinstance(obj, Mapping):
            if name in obj:
                return obj[name]
        elif hasattr(obj, name):
            return getattr(obj, name)
    if default is ...:
        raise InvalidFixture(name="?", reason=f"the record has none of {list(names)}")
    return default


def _parse_time(value: Any) -> datetime:
    if value is None:
        return datetime(2000, 1, 1, tzinfo=UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _plain(value: Any) -> Any:
    """Make data YAML-safe: tuples → lists, datetimes → ISO strings, other objects → str."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)
