"""What templates see: inputs, upstream steps, the run, secrets; and rendering declared outputs.

Step outputs see the step's ``output`` (and ``response`` for http steps) besides the usual names;
flow outputs see every step. Rendered values are scrubbed of secret values before they persist.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from linkloom.engine import rendering
from linkloom.engine.models import StepStatus
from linkloom.engine.ports import SecretResolver, _SecretsView
from linkloom.engine.records import Run, RunSnapshot
from linkloom.engine.redaction import scrub, secret_values
from linkloom.flows.spec import FlowSpec


def upstream(snapshot: RunSnapshot) -> dict[str, dict[str, Any]]:
    """step id → {"status", "output", "outputs"} for every finished logical step."""
    view: dict[str, dict[str, Any]] = {}
    for step in snapshot.steps:
        if step.item_index is None and step.status.terminal:
            view[step.step_id] = {
                "status": step.status.value,
                "output": step.output if step.status is StepStatus.SUCCEEDED else None,
                "outputs": step.outputs or {},
            }
    return view


def run_view(run: Run) -> dict[str, Any]:
    return {
        "id": run.id,
        "flow": run.flow_id,
        "version": run.version,
        "trigger": run.trigger,
        "scheduled_at": run.fire_time.isoformat() if run.fire_time else None,
        "sandbox": run.sandbox,
    }


def base_context(run: Run, snapshot: RunSnapshot, secrets: SecretResolver) -> dict[str, Any]:
    return {
        "inputs": run.inputs,
        "steps": upstream(snapshot),
        "run": run_view(run),
        "secrets": _SecretsView(secrets),
    }


def render_step_outputs(
    declared: Mapping[str, Any], context: Mapping[str, Any], secrets: SecretResolver
) -> dict[str, Any] | None:
    """Render a step's ``outputs`` templates; None when it declares none."""
    if not declared:
        return None
    rendered = rendering.render(dict(declared), context)
    outputs: dict[str, Any] = scrub(rendered, secret_values(secrets))
    return outputs


def flow_outputs_renderer(
    spec: FlowSpec, secrets: SecretResolver
) -> Callable[[RunSnapshot], dict[str, Any] | None]:
    def render(snapshot: RunSnapshot) -> dict[str, Any] | None:
        if not spec.outputs:
            return None
        context = base_context(snapshot.run, snapshot, secrets)
        outputs: dict[str, Any] = scrub(
            rendering.render(dict(spec.outputs), context), secret_values(secrets)
        )
        return outputs

    return render


def fanout_outputs_renderer(
    spec: FlowSpec, secrets: SecretResolver
) -> Callable[[str, Any, RunSnapshot], dict[str, Any] | None]:
    def render(step_id: str, output: Any, snapshot: RunSnapshot) -> dict[str, Any] | None:
        declared = spec.step(step_id).outputs
        if not declared:
            return None
        context = {**base_context(snapshot.run, snapshot, secrets), "output": output}
        return render_step_outputs(declared, context, secrets)

    return render
