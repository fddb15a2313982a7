"""The ``merge`` step: combine upstream outputs (the MBFlow MERGE node).

Sources are ``sources`` in order, by default ``depends_on`` in order. Sources that produced no
output (skipped, e.g. the branch not taken) are left out.

* ``mode: object`` deep-merges objects: later sources win, nested objects are merged key by key,
  anything else (lists included) is replaced.
* ``mode: concat`` concatenates lists; a source whose output is not a list adds one item.
"""

from __future__ import annotations

from typing import Any, ClassVar

from linkloom.engine.models import StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes
from linkloom.engine.steps.outcomes import StepConfigError


class MergeExecutor:
    """Runs ``merge`` steps; pure computation, no I/O."""

    type_name: ClassVar[str] = "merge"

    async def execute(self, ctx: StepContext) -> StepResult:
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        names = list(step.sources or step.depends_on or ctx.upstream)
        unknown = [n for n in names if n not in ctx.upstream]
        if unknown and step.sources:
            raise StepConfigError(
                f"merge sources {unknown} are not upstream of {step.id!r}; add them to depends_on"
            )
        present = [
            (n, ctx.upstream[n].get("output"))
            for n in names
            if n in ctx.upstream and ctx.upstream[n].get("output") is not None
        ]
        if step.mode == "concat":
            out: list[Any] = []
            for _, value in present:
                out.extend(value if isinstance(value, list) else [value])
            return StepResult(output=out)
        merged: dict[str, Any] = {}
        for name, value in present:
            if not isinstance(value, dict):
                raise StepConfigError(
                    f"merge mode 'object' needs objects; the output of {name!r} is a "
                    f"{type(value).__name__} (use mode: concat for lists)"
                )
            merged = deep_merge(merged, value)
        return StepResult(output=merged)


def deep_merge(base: dict[str, Any], update: dict[str, Any]) -> dict[str, Any]:
    """A new dict: ``update`` over ``base``, merging nested dicts recursively."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = value
    return out
