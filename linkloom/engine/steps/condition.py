"""The ``condition`` step: evaluate a condition and name the branch taken.

The output is ``{"result": bool, "branch": "then" | "else"}``; the planner skips the steps listed
under the branch not taken (and whatever depends only on them). ``condition`` is a template, a
bare expression (``inputs.amount > 100``) or a boolean word, read by
``linkloom.flows.templates.evaluate`` ("false", "0", "no", "off", "none", "null" and "" are
false).
"""

from __future__ import annotations

from typing import Any, ClassVar

from linkloom.engine.models import StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes


class ConditionExecutor:
    """Runs ``condition`` steps."""

    type_name: ClassVar[str] = "condition"

    async def execute(self, ctx: StepContext) -> StepResult:
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        result = outcomes.condition(ctx, step.condition)
        return StepResult(output={"result": result, "branch": "then" if result else "else"})
