"""Small helpers the built-in step executors share: rendering config and shaping results.

Executors never raise: ``guarded`` turns a ``TemplateError`` or a ``StepConfigError`` raised while
preparing a step into a failed ``StepResult`` (kind ``template`` or ``config``, not retryable).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from linkloom.engine.models import StepError, StepResult
from linkloom.engine.ports import StepContext
from linkloom.flows import templates


class StepConfigError(Exception):
    """The step's configuration cannot work at run time (a wrong type after rendering, …)."""


def failed(kind: str, message: str, *, retryable: bool = False, **extra: Any) -> StepResult:
    """A failed attempt; ``extra`` goes to ``StepResult`` (``output``, ``state``, …)."""
    return StepResult(error=StepError(kind=kind, message=message, retryable=retryable), **extra)


def render(ctx: StepContext, value: Any, **names: Any) -> Any:
    """Render ``value`` with the step's template context plus ``names`` (``item``, ``input``…)."""
    scope = ctx.template_context()
    scope.update(names)
    return templates.render(value, scope)


def condition(ctx: StepContext, text: str, **names: Any) -> bool:
    """Read a condition (template, bare expression or boolean word) with the step's context."""
    scope = ctx.template_context()
    scope.update(names)
    return templates.evaluate(text, scope)


async def guarded(
    ctx: StepContext, body: Callable[[StepContext], Awaitable[StepResult]]
) -> StepResult:
    """Run ``body``, turning template and configuration errors into failed results."""
    try:
        result = await body(ctx)
    except templates.TemplateError as exc:
        result = failed("template", exc.message)
    except StepConfigError as exc:
        result = failed("config", str(exc))
    # Logs stay in ``ctx.logs`` only (the engine adds ``result.logs`` to them); exchanges are
    # also put on the result, which the engine prefers over ``ctx.exchanges``.
    if ctx.exchanges and not result.exchanges:
        result = replace(result, exchanges=tuple(ctx.exchanges))
    return result
