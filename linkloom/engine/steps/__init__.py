"""Step executors, one module per step type; ``builtin_executors()`` is the registry.

Each executor implements ``linkloom.engine.ports.StepExecutor`` (class attribute ``type_name``,
``async execute(ctx) -> StepResult``). Modules are imported tolerantly so a missing optional
step type does not break the others.
"""

from __future__ import annotations

import importlib
from typing import Any

from linkloom.engine.ports import StepExecutor

# module name → class name
_BUILTIN = {
    "transform": "TransformExecutor",
    "condition": "ConditionExecutor",
    "merge": "MergeExecutor",
    "delay": "DelayExecutor",
    "shell": "ShellExecutor",
    "llm": "LlmExecutor",
    "subflow": "SubflowExecutor",
    "task": "TaskExecutor",
}


def builtin_executors(*, per_host_limit: int = 32, **_options: Any) -> dict[str, StepExecutor]:
    """Every built-in executor available in this installation, by step type."""
    from linkloom.engine.steps.http import HttpExecutor

    found: dict[str, StepExecutor] = {"http": HttpExecutor(per_host_limit=per_host_limit)}
    for module_name, class_name in _BUILTIN.items():
        try:
            module = importlib.import_module(f"linkloom.engine.steps.{module_name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"linkloom.engine.steps.{module_name}":
                raise
            continue
        cls = getattr(module, class_name, None)
        if cls is None:  # tolerate a different class name: take the module's executor class
            cls = next(
                (
                    v
                    for v in vars(module).values()
                    if isinstance(v, type)
                    and getattr(v, "type_name", None)
                    and v.__module__ == module.__name__
                ),
                None,
            )
        if cls is not None:
            executor = cls()
            found[executor.type_name] = executor
    # Step types installed packages add (entry points): importing the spec discovers them.
    from linkloom.flows import plugins, spec  # noqa: F401 (spec: imported for that)

    for type_name, executor in plugins.executors().items():
        found.setdefault(type_name, executor)
    return found
