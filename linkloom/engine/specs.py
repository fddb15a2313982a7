"""Flow versions as the engine uses them: the parsed spec and its plan, cached (immutable)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from linkloom.engine import dag
from linkloom.engine.errors import FlowVersionNotFound
from linkloom.flows.spec import FlowSpec

if TYPE_CHECKING:
    from linkloom.engine.store_port import RunStore


@dataclass(frozen=True, slots=True, kw_only=True)
class CompiledFlow:
    spec: FlowSpec
    plan: dag.Plan
    version: int


def spec_to_json(spec: FlowSpec) -> dict[str, Any]:
    return spec.model_dump(mode="json", by_alias=True, exclude_none=True)


def content_hash(spec: FlowSpec) -> str:
    """sha256 of the canonical JSON of the spec (key order and formatting do not matter)."""
    canonical = json.dumps(spec_to_json(spec), sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def compile_flow(spec: FlowSpec, version: int = 0) -> CompiledFlow:
    return CompiledFlow(spec=spec, plan=dag.plan_from_spec(spec), version=version)


class SpecCache:
    """Parsed specs by (flow, version). Versions never change, so entries never go stale."""

    def __init__(self, store: RunStore, *, max_entries: int = 512) -> None:
        self._store = store
        self._max = max_entries
        self._cache: dict[tuple[str, int], CompiledFlow] = {}

    async def get(self, flow_id: str, version: int) -> CompiledFlow:
        key = (flow_id, version)
        found = self._cache.get(key)
        if found is not None:
            return found
        stored = await self._store.get_flow_version(flow_id, version)
        if stored is None:
            raise FlowVersionNotFound(flow_id=flow_id, version=version)
        compiled = compile_flow(FlowSpec.model_validate(stored.spec), version)
        if len(self._cache) >= self._max:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = compiled
        return compiled
