"""The ``transform`` step: build an output from templates, JMESPath or a data-adapter operation.

Exactly one of ``template``, ``jmespath`` or ``operation`` says how; with none of them the
(rendered) input passes through. The input is ``input`` rendered, or by default the outputs of
the step's dependencies: the single dependency's output when there is one, else a dict
``{step_id: output}``. Templates also see the input as ``input``.

Operations (the MBFlow DATA_ADAPTER node) work on a dict or on a list of dicts:

* ``map``: ``mapping`` is ``{new_field: source}``; the output has exactly the mapped fields. A
  source is a field name, a dotted path (``address.city``) or a template evaluated with ``item``
  (``"{{ item.first }} {{ item.last }}"``). MBFlow's ``{"username": "name"}`` reads ``name``
  into ``username``.
* ``rename``: ``mapping`` is ``{new_field: old_field}`` like ``map``, but every other field is kept.
* ``filter``: keeps the items for which ``where`` (a template or a bare expression, with ``item``
  and ``index``) is true; on a dict it filters its values by key (``item`` is ``{"key", "value"}``).
* ``pick``: keeps only ``fields``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import jmespath
from jmespath.exceptions import JMESPathError

from linkloom.engine.models import StepResult
from linkloom.engine.ports import StepContext
from linkloom.engine.steps import outcomes
from linkloom.engine.steps.outcomes import StepConfigError
from linkloom.flows import templates

_MISSING = object()


class TransformExecutor:
    """Runs ``transform`` steps; pure computation, no I/O."""

    type_name: ClassVar[str] = "transform"

    async def execute(self, ctx: StepContext) -> StepResult:
        return await outcomes.guarded(ctx, self._run)

    async def _run(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        modes = [m for m in ("template", "jmespath", "operation") if getattr(step, m) is not None]
        if len(modes) > 1:
            raise StepConfigError(f"a transform step takes one of {', '.join(modes)}, not several")
        data = outcomes.render(ctx, step.input) if step.input is not None else default_input(ctx)
        if step.template is not None:
            return StepResult(output=outcomes.render(ctx, step.template, input=data))
        if step.jmespath is not None:
            try:
                return StepResult(output=jmespath.search(step.jmespath, data))
            except JMESPathError as exc:
                raise StepConfigError(f"jmespath {step.jmespath!r}: {exc}") from exc
        if step.operation is not None:
            return StepResult(output=apply_operation(ctx, step, data))
        return StepResult(output=data)


def default_input(ctx: StepContext) -> Any:
    """The single dependency's output, or ``{step_id: output}`` for several."""
    names = list(ctx.step.depends_on) or list(ctx.upstream)
    outputs = {n: (ctx.upstream.get(n) or {}).get("output") for n in names}
    if len(outputs) == 1:
        return next(iter(outputs.values()))
    return outputs


def apply_operation(ctx: StepContext, step: Any, data: Any) -> Any:
    """Apply ``map``/``rename``/``filter``/``pick`` to a dict or to each dict of a list."""
    op = step.operation
    if op == "filter":
        if not step.where:
            raise StepConfigError("a 'filter' transform needs 'where'")
        return _filter(ctx, step.where, data)
    if op in ("map", "rename") and not step.mapping:
        raise StepConfigError(f"a {op!r} transform needs 'mapping' ({{new_field: source}})")
    if op == "pick" and not step.fields:
        raise StepConfigError("a 'pick' transform needs 'fields'")

    def one(record: Any, index: int | None) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise StepConfigError(
                f"a {op!r} transform works on objects; got {type(record).__name__}"
            )
        if op == "map":
            return {new: _source(ctx, record, src, index) for new, src in step.mapping.items()}
        if op == "rename":
            renamed = {new: record[old] for new, old in step.mapping.items() if old in record}
            taken = set(step.mapping.values())
            kept = {k: v for k, v in record.items() if k not in taken}
            return {**kept, **renamed}
        return {f: record[f] for f in step.fields if f in record}

    if isinstance(data, list):
        return [one(record, i) for i, record in enumerate(data)]
    return one(data, None)


def _source(ctx: StepContext, record: dict[str, Any], source: str, index: int | None) -> Any:
    if templates.is_template(source):
        return outcomes.render(ctx, source, item=record, index=index)
    value: Any = record
    for part in source.split("."):
        if isinstance(value, dict) and part in value:
            value = value[part]
        elif (
            isinstance(value, list)
            and part.lstrip("-").isdigit()
            and -len(value) <= int(part) < len(value)
        ):
            value = value[int(part)]
        else:
            return None
    return value


def _filter(ctx: StepContext, where: str, data: Any) -> Any:
    if isinstance(data, list):
        return [
            record
            for i, record in enumerate(data)
            if outcomes.condition(ctx, where, item=record, index=i)
        ]
    if isinstance(data, dict):
        return {
            key: value
            for i, (key, value) in enumerate(data.items())
            if outcomes.condition(ctx, where, item={"key": key, "value": value}, index=i)
        }
    raise StepConfigError(f"a 'filter' transform works on a list or an object; got {data!r:.80}")
