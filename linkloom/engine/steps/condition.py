"""The ``condition`` step: evaluate a condition and name the branch taken.

The output is ``{"result": bool, "branch": "then" | "else"}``; the planner skips the steps listed
under the branch not taken (and whatever depends only on them). ``condition`` is a template or a
bare expression (``inputs.amount > 100``); strings read as booleans the way ``when:`` reads them
("false", "0", "no", "off", "none", "null" and "" are false).
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
        value = outcomes.render(ctx, outcomes.expression(step.condition))
        result = outcomes.truthy(value)
        return StepResult(output={"result": result, "branch": "then" if result else "else"})
