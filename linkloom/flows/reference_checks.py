"""Template checks: syntax, what each template reads, and what nothing reads.

Every template in a step may read ``inputs``, ``steps``, ``run`` and ``secrets``; ``item`` and
``index`` exist in steps with ``for_each`` (not in ``for_each`` itself); a step's ``outputs``
also see ``output`` (its result) and, for http steps, ``response``. A transform's ``template``
also sees ``input`` (the transform's input), and its ``where`` and ``mapping`` templates see the
record at hand as ``item`` and its position as ``index`` (engine/steps/transform.py). ``when``,
``condition`` and ``where`` may also be bare expressions (``inputs.amount > 100``), checked as
the template they stand for. A step may only read ``steps.<id>`` of steps it depends on,
directly or transitively. The flow's ``outputs`` may read any step.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from linkloom.flows import references
from linkloom.flows.diagnostics import Reporter, did_you_mean
from linkloom.flows.source import Path

if TYPE_CHECKING:
    from linkloom.flows.checks import SpecView
    from linkloom.flows.models import Policy

ROOTS = ("inputs", "steps", "run", "secrets")
STEP_KEYS = ("output", "outputs", "status")
RUN_KEYS = ("id", "flow", "version", "trigger", "scheduled_at", "sandbox")
_NOT_TEMPLATES = frozenset({"id", "type", "name", "description", "depends_on", "then", "else"})
_CONDITIONS = frozenset({"when", "condition", "where"})  # templates or bare expressions


@dataclass(slots=True, kw_only=True)
class _Reads:
    """What the templates read, for the unused-thing warnings."""

    inputs: set[str] = field(default_factory=set)
    all_inputs: bool = False
    outputs: set[tuple[str, str]] = field(default_factory=set)
    all_outputs: set[str] = field(default_factory=set)
    every_step: bool = False  # some template reads the whole ``steps`` mapping
    jinja_cost: int = 0  # Jinja work so far (bounded per spec, see references.JINJA_BUDGET)
    jinja_seen: set[str] = field(default_factory=set)
    policy: Policy | None = None  # for the server's secret names


def check(view: SpecView, reporter: Reporter, policy: Policy | None = None) -> None:
    """Check every template of the spec and warn about inputs and outputs nobody reads.

    With ``policy.secret_names`` known, a reference to any other secret is reported too.
    """
    reads = _Reads(policy=policy)
    inputs = view.data.get("inputs", {})
    declared_inputs = set(inputs) if isinstance(inputs, dict) else None  # None: unknown
    for n, step in view.steps:
        owner = step.get("id") if isinstance(step.get("id"), str) else None
        each = step.get("for_each") is not None
        for key, value in step.items():
            if key in _NOT_TEMPLATES:
                continue
            extra: set[str] = set()
            if key == "outputs":
                extra = {"output"} | ({"response"} if step.get("type") == "http" else set())
            transform = step.get("type") == "transform"
            if key == "where" or (key == "mapping" and transform) or (each and key != "for_each"):
                extra |= {"item", "index"}
            if key == "template" and transform:
                extra |= {"input"}
            if key in _CONDITIONS and isinstance(value, str):
                text = references.condition_template(value)
                found: list[tuple[Path, str]] = (
                    [(("steps", n, key), text)] if text is not None else []
                )
            else:
                found = list(_templates(value, ("steps", n, key)))
            for path, text in found:
                for ref in _references(text, path, reporter, reads):
                    _reference(
                        ref,
                        path=path,
                        owner=owner,
                        extra=extra,
                        view=view,
                        reporter=reporter,
                        reads=reads,
                        inputs=declared_inputs,
                    )
    for path, text in _templates(view.data.get("outputs"), ("outputs",)):
        for ref in _references(text, path, reporter, reads):
            _reference(
                ref,
                path=path,
                owner=None,
                extra=set(),
                view=view,
                reporter=reporter,
                reads=reads,
                inputs=declared_inputs,
            )
    for key in ("triggers", "schedules"):
        for path, text in _templates(view.data.get(key), (key,)):
            _references(text, path, reporter, reads)
    _unused(view, reporter, reads, declared_inputs)


def _templates(value: Any, path: Path) -> Iterator[tuple[Path, str]]:
    stack: list[tuple[Path, Any]] = [(path, value)]
    while stack:
        where, node = stack.pop()
        if isinstance(node, str):
            if references.is_template(node):
                yield where, node
        elif isinstance(node, dict):
            stack.extend(((*where, k), v) for k, v in reversed(node.items()))
        elif isinstance(node, list):
            stack.extend(((*where, i), v) for i, v in reversed(list(enumerate(node))))


def _references(
    text: str, path: Path, reporter: Reporter, reads: _Reads
) -> tuple[references.Reference, ...]:
    fast = references.fast_references(text)
    if fast is not None:
        return fast
    if len(text) <= references.JINJA_LIMIT and text not in reads.jinja_seen:
        cost = max(len(text), references.JINJA_MIN_COST)  # longer ones fail without parsing
        if reads.jinja_cost + cost > references.JINJA_BUDGET:
            reporter.add(
                path,
                "template not checked: this spec's templates exceed the validation budget of "
                f"{references.JINJA_BUDGET:,} characters",
                code="template-unchecked",
                severity="warning",
                hint="it is checked when it runs; smaller templates are checked here",
            )
            return ()
        reads.jinja_cost += cost
        reads.jinja_seen.add(text)
    try:
        return references.jinja_references(text)
    except references.TemplateSyntax as exc:
        where = f" (line {exc.lineno} of the template)" if exc.lineno > 1 else ""
        reporter.add(
            path,
            f"template syntax error: {exc.message}{where}",
            code="template-syntax",
            hint=exc.hint,
            line_in_value=exc.lineno,
            column_in_value=exc.offset,
        )
        return ()


def _reference(
    ref: references.Reference,
    *,
    path: Path,
    owner: str | None,
    extra: set[str],
    view: SpecView,
    reporter: Reporter,
    reads: _Reads,
    inputs: set[str] | None,
) -> None:
    root = ref[0]
    if root in extra:
        return
    if root not in ROOTS:
        allowed = [*ROOTS, *sorted(extra)]
        if root in ("item", "index"):
            message = (
                f"'{root}' is not defined here: it exists in steps with 'for_each' "
                "(but not in 'for_each' itself)"
            )
            hint = None
        else:
            message = f"unknown name {root!r} in template"
            hint = did_you_mean(root, allowed) or "templates here can use: " + ", ".join(allowed)
        reporter.add(path, message, code="unknown-reference", hint=hint)
    elif root == "inputs":
        _input(ref, path=path, reporter=reporter, reads=reads, inputs=inputs)
    elif root == "steps":
        _step(ref, path=path, owner=owner, view=view, reporter=reporter, reads=reads)
    elif root == "secrets":
        _secret(ref, path=path, reporter=reporter, policy=reads.policy)
    elif root == "run" and len(ref) > 1 and ref[1] not in RUN_KEYS:
        reporter.add(
            path,
            f"run.{ref[1]} does not exist",
            code="unknown-reference",
            hint=did_you_mean(ref[1], RUN_KEYS) or "run has: " + ", ".join(RUN_KEYS),
        )


def _secret(
    ref: references.Reference, *, path: Path, reporter: Reporter, policy: Policy | None
) -> None:
    if policy is None or policy.secret_names is None:
        return
    known = policy.secret_names
    if len(ref) < 2 or not isinstance(ref[1], str) or ref[1] in known:
        return
    name = ref[1]
    same = [k for k in known if k.lower() == name.lower()]
    if same:
        hint = f"secret names are case-sensitive: did you mean {same[0]!r}?"
    else:
        hint = did_you_mean(name, known) or (
            f"set LOOM_SECRETS__{name} on the server"
            + (f" (it has: {', '.join(sorted(known))})" if known else " (it has none)")
        )
    reporter.add(
        path,
        f"secret {name!r} does not exist on the server",
        code="unknown-secret",
        severity=policy.unknown_secret,
        hint=hint,
    )


def _input(
    ref: references.Reference,
    *,
    path: Path,
    reporter: Reporter,
    reads: _Reads,
    inputs: set[str] | None,
) -> None:
    if len(ref) == 1:
        reads.all_inputs = True
        return
    name = ref[1]
    if inputs is None or not isinstance(name, str):
        return
    if name in inputs:
        reads.inputs.add(name)
        return
    reporter.add(
        path,
        f"unknown input {name!r}",
        code="unknown-input",
        hint=did_you_mean(name, inputs) or f"declare it under 'inputs:' as '{name}'",
    )


def _step(
    ref: references.Reference,
    *,
    path: Path,
    owner: str | None,
    view: SpecView,
    reporter: Reporter,
    reads: _Reads,
) -> None:
    if len(ref) == 1:
        reads.every_step = True
        return
    target = ref[1]
    if not isinstance(target, str) or target not in view.first:
        reporter.add(
            path,
            f"template reads unknown step {target!r}",
            code="unknown-step",
            hint=did_you_mean(target, view.first),
        )
        return
    if owner is not None and target == owner:
        reporter.add(
            path,
            f"step {owner!r} reads its own result before it exists",
            code="not-upstream",
            hint="in 'outputs', read the step's own result as 'output' (http: 'response')",
        )
        return
    if owner is not None and view.is_upstream(step=target, of=owner) is False:
        reporter.add(
            path,
            f"step {owner!r} reads steps.{target}, but {target!r} is not upstream of it",
            code="not-upstream",
            hint=f"add {target!r} to the depends_on of {owner!r}",
        )
    if len(ref) == 2:
        reads.all_outputs.add(target)
        return
    key = ref[2]
    if key not in STEP_KEYS:
        reporter.add(
            path,
            f"steps.{target}.{key} does not exist",
            code="unknown-reference",
            hint=did_you_mean(key, STEP_KEYS)
            or f"use steps.{target}.output (its result) or steps.{target}.outputs.<name>",
        )
        return
    if key != "outputs":
        return
    if len(ref) == 3:
        reads.all_outputs.add(target)
        return
    name = ref[3]
    declared = view.step_of(target).get("outputs")
    names = set(declared) if isinstance(declared, dict) else set()
    if name in names:
        reads.outputs.add((target, str(name)))
        return
    reporter.add(
        path,
        f"step {target!r} declares no output {name!r}",
        code="unknown-output",
        hint=did_you_mean(name, names)
        or (
            f"its outputs are: {', '.join(sorted(names))}"
            if names
            else f"it declares no outputs; read its whole result as steps.{target}.output"
        ),
    )


def _unused(view: SpecView, reporter: Reporter, reads: _Reads, inputs: set[str] | None) -> None:
    """Warn about inputs and outputs nothing reads, counting the task envelope as a reader."""
    envelope = [
        step
        for _, step in view.steps
        if (step.get("type") == "http" and step.get("body") is None)
        or (step.get("type") == "task" and step.get("payload") is None)
    ]
    if inputs and not reads.all_inputs and not envelope:
        for name in inputs:
            if name not in reads.inputs:
                reporter.add(
                    ("inputs", name),
                    f"input {name!r} is never used",
                    code="unused-input",
                    severity="warning",
                    key=True,
                    hint=f"read it as {{{{ inputs.{name} }}}} or remove it",
                )
    reached = 0  # steps whose results reach a backend in the task envelope
    for step in envelope:
        if isinstance(step.get("id"), str) and step["id"] in view.upstream:
            reached |= view.upstream[step["id"]]
    for n, step in view.steps:
        outputs, owner = step.get("outputs"), step.get("id")
        if not isinstance(outputs, dict) or not isinstance(owner, str):
            continue
        if reads.every_step or owner in reads.all_outputs:
            continue
        if owner not in view.upstream or view.first.get(owner) != n:
            continue  # on a cycle: what reads it is unknown
        if reached >> view.graph.index[owner] & 1:
            continue
        for name in outputs:
            if (owner, name) not in reads.outputs:
                reporter.add(
                    ("steps", n, "outputs", name),
                    f"output {name!r} of step {owner!r} is never read",
                    code="unused-output",
                    severity="warning",
                    key=True,
                    hint=f"read it as {{{{ steps.{owner}.outputs.{name} }}}} in a later step "
                    "or in the flow's 'outputs'",
                )
