"""Semantic checks a schema cannot express: the DAG, branches, cron, URLs and operator policy.

The checks read the canonical *data* (not the model), so they run even when the schema check
failed and the user sees every problem at once. They tolerate any shape of data: a value of the
wrong type is the schema's problem, not theirs.
"""

from __future__ import annotations

import fnmatch
import functools
import re
import urllib.parse
import zoneinfo
from dataclasses import dataclass, field
from typing import Any

from croniter import croniter

from linkloom.flows import reference_checks, references
from linkloom.flows.diagnostics import Reporter, did_you_mean
from linkloom.flows.graph import StepGraph
from linkloom.flows.models import Policy

_TEMPLATE = re.compile(r"\{\{.*?\}\}|\{%.*?%\}", re.S)


@dataclass(slots=True, kw_only=True)
class SpecView:
    """The parts of the canonical data the checks share, read defensively."""

    data: dict[str, Any]
    steps: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # index, step
    first: dict[str, int] = field(default_factory=dict)  # step id → index of its first step
    graph: StepGraph = field(default_factory=lambda: StepGraph(ids=[], deps={}))
    upstream: dict[str, int] = field(default_factory=dict)  # see StepGraph.upstream
    by_index: dict[int, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def of(cls, data: dict[str, Any]) -> SpecView:
        view = cls(data=data)
        raw = data.get("steps")
        for n, step in enumerate(raw if isinstance(raw, list) else []):
            if isinstance(step, dict):
                view.steps.append((n, step))
                view.by_index[n] = step
                if isinstance(step.get("id"), str):
                    view.first.setdefault(step["id"], n)
        deps: dict[str, list[str]] = {}
        for n, step in view.steps:
            step_id = step.get("id")
            if isinstance(step_id, str) and view.first[step_id] == n:
                deps[step_id] = [d for d in strings(step.get("depends_on")) if d in view.first]
        view.graph = StepGraph(ids=list(view.first), deps=deps)
        return view

    def step_of(self, step_id: str) -> dict[str, Any]:
        return self.by_index[self.first[step_id]]

    def is_upstream(self, *, step: str, of: str) -> bool | None:
        """``None`` when unknown (``of`` is on or after a cycle)."""
        return self.graph.is_upstream(self.upstream, step=step, of=of)


def strings(value: Any) -> list[str]:
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def check(data: dict[str, Any], *, reporter: Reporter, policy: Policy | None) -> None:
    """Run every semantic check on canonical data, adding problems to ``reporter``."""
    view = SpecView.of(data)
    _duplicates(view, reporter)
    _dependencies(view, reporter)
    _cycles(view, view.graph.cycles(), reporter)
    view.upstream = view.graph.upstream()
    _branches(view, reporter)
    _merge_sources(view, reporter)
    _schedules(data, reporter)
    _urls(view, reporter, policy)
    _bodiless(view, reporter)
    if policy is not None:
        _policy(view, reporter, policy)
    reference_checks.check(view, reporter, policy)


def _duplicates(view: SpecView, reporter: Reporter) -> None:
    for n, step in view.steps:
        step_id = step.get("id")
        if isinstance(step_id, str) and view.first[step_id] != n:
            line, _ = reporter.document.position(
                reporter.source_path(("steps", view.first[step_id], "id"))
            )
            reporter.add(
                ("steps", n, "id"),
                f"duplicate step id {step_id!r} (first defined at line {line})",
                code="duplicate-step-id",
                hint="give every step its own id",
            )


def _dependencies(view: SpecView, reporter: Reporter) -> None:
    for n, step in view.steps:
        deps = step.get("depends_on")
        if not isinstance(deps, list):
            continue
        for k, dep in enumerate(deps):
            if isinstance(dep, str) and dep not in view.first:
                reporter.add(
                    ("steps", n, "depends_on", k),
                    f"step {step.get('id')!r} depends on unknown step {dep!r}",
                    code="unknown-step",
                    hint=did_you_mean(dep, view.first),
                )


def _cycles(view: SpecView, cycles: list[list[str]], reporter: Reporter) -> None:
    for cycle in cycles:
        head, before = cycle[0], cycle[-2]
        n = view.first[head]
        deps = view.step_of(head).get("depends_on")
        k = deps.index(before) if isinstance(deps, list) and before in deps else None
        path: tuple[str | int, ...] = ("steps", n, "depends_on")
        reporter.add(
            (*path, k) if k is not None else path,
            "dependency cycle: " + _cycle_text(cycle),
            code="cycle",
            hint="each step runs after the one before it in the cycle; remove one dependency",
        )


def _cycle_text(cycle: list[str]) -> str:
    if len(cycle) <= 12:
        return " → ".join(cycle)
    hidden = len(cycle) - 10
    return " → ".join([*cycle[:5], f"… {hidden} more …", *cycle[-5:]])


def _branches(view: SpecView, reporter: Reporter) -> None:
    for n, step in view.steps:
        if step.get("type") != "condition":
            continue
        owner = step.get("id")
        branches: dict[str, set[str]] = {}
        for branch in ("then", "else"):
            names = step.get(branch)
            branches[branch] = set(strings(names))
            for k, name in enumerate(names if isinstance(names, list) else []):
                if not isinstance(name, str):
                    continue
                where = ("steps", n, branch, k)
                if name not in view.first:
                    reporter.add(
                        where,
                        f"condition {owner!r} names unknown step {name!r} in '{branch}'",
                        code="unknown-step",
                        hint=did_you_mean(name, view.first),
                    )
                elif isinstance(owner, str) and view.is_upstream(step=owner, of=name) is False:
                    reporter.add(
                        where,
                        f"step {name!r} is on the '{branch}' branch of {owner!r} "
                        "but does not depend on it",
                        code="branch-not-downstream",
                        severity="warning",
                        hint=f"add {owner!r} to the depends_on of {name!r}",
                    )
        for name in sorted(branches["then"] & branches["else"]):
            reporter.add(
                ("steps", n, "else"),
                f"step {name!r} is on both branches of {owner!r}, so it never runs",
                code="unreachable",
                severity="warning",
            )
        condition = step.get("condition")
        constant = references.constant_condition(condition)
        if constant is not None:  # not a template, not a bare expression: a boolean word
            other = "else" if constant else "then"
            if branches[other]:
                reporter.add(
                    ("steps", n, "condition"),
                    f"the condition of {owner!r} is the constant {condition!r}, so its "
                    f"'{other}' branch never runs",
                    code="unreachable",
                    severity="warning",
                )
        _joins_across(view, step, branches, reporter)


def _joins_across(
    view: SpecView, condition: dict[str, Any], branches: dict[str, set[str]], reporter: Reporter
) -> None:
    if not branches["then"] or not branches["else"]:
        return
    for n, step in view.steps:
        deps = set(strings(step.get("depends_on")))
        join = step.get("join", "all_success")
        if join == "all_success" and deps & branches["then"] and deps & branches["else"]:
            reporter.add(
                ("steps", n, "depends_on"),
                f"step {step.get('id')!r} needs both branches of {condition.get('id')!r} to "
                "succeed, but only one branch runs, so it never runs",
                code="unreachable",
                severity="warning",
                hint="set 'join: one_success' (or 'none_failed') on this step",
            )


def _merge_sources(view: SpecView, reporter: Reporter) -> None:
    for n, step in view.steps:
        if step.get("type") != "merge" or not isinstance(step.get("sources"), list):
            continue
        for k, name in enumerate(step["sources"]):
            if not isinstance(name, str):
                continue
            if name not in view.first:
                reporter.add(
                    ("steps", n, "sources", k),
                    f"merge {step.get('id')!r} reads unknown step {name!r}",
                    code="unknown-step",
                    hint=did_you_mean(name, view.first),
                )
            elif (
                isinstance(step.get("id"), str)
                and view.is_upstream(step=name, of=step["id"]) is False
            ):
                reporter.add(
                    ("steps", n, "sources", k),
                    f"merge {step['id']!r} reads {name!r}, which is not upstream of it",
                    code="not-upstream",
                    hint=f"add {name!r} to the depends_on of {step['id']!r}",
                )


def _schedules(data: dict[str, Any], reporter: Reporter) -> None:
    schedules = data.get("schedules")
    for n, schedule in enumerate(schedules if isinstance(schedules, list) else []):
        if not isinstance(schedule, dict):
            continue
        cron = schedule.get("cron")
        if isinstance(cron, str) and not _valid_cron(cron):
            problem, hint = cron_problem(cron)
            reporter.add(
                ("schedules", n, "cron"),
                f"invalid cron expression {cron!r}" + (f": {problem}" if problem else ""),
                code="invalid-cron",
                hint=hint,
            )
        zone = schedule.get("timezone")
        if isinstance(zone, str) and not _valid_zone(zone):
            reporter.add(
                ("schedules", n, "timezone"),
                f"unknown time zone {zone!r}",
                code="invalid-timezone",
                hint=did_you_mean(zone, _zones()) or "use an IANA name such as 'Europe/Kyiv'",
            )


CRON_FIELDS = (
    ("minute", 0, 59, ()),
    ("hour", 0, 23, ()),
    ("day-of-month", 1, 31, ()),
    ("month", 1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct",
                      "nov", "dec")),
    ("day-of-week", 0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")),
)  # fmt: skip
_FIVE_FIELDS = (
    "use five fields: minute hour day-of-month month day-of-week, "
    "for example '0 3 * * *' (every day at 03:00)"
)


def cron_problem(expression: str) -> tuple[str | None, str]:
    """Why a cron expression is invalid, naming the field when one is out of range; and a hint."""
    fields = expression.split()
    if len(fields) != len(CRON_FIELDS):
        return f"it has {len(fields)} field(s)", _FIVE_FIELDS
    for position, (text, (name, low, high, names)) in enumerate(
        zip(fields, CRON_FIELDS, strict=True), start=1
    ):
        for part in text.split(","):
            base, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return (
                    f"the {name} field's step {step!r} is not a whole number above 0",
                    f"write a step as */N or A-B/N, e.g. '*/15' in the {name} field",
                )
            for value in base.split("-") if base not in ("*", "?") else ():
                if value.isdigit():
                    if not low <= int(value) <= high:
                        return (
                            f"{name} {value} is out of range",
                            f"the {name} field (field {position} of 5) takes {low}-{high}",
                        )
                elif value.lower() not in names:
                    allowed = f"{low}-{high}" + (f" or {names[0]}-{names[-1]}" if names else "")
                    return (
                        f"{value!r} is not a {name}",
                        f"the {name} field (field {position} of 5) takes {allowed}, * or */N",
                    )
    return None, _FIVE_FIELDS


def _valid_cron(expression: str) -> bool:
    text = expression.strip()
    if len(text) > 200:
        return False
    try:
        return bool(croniter.is_valid(text))
    except Exception:  # croniter raises assorted types on odd input; all mean "invalid"
        return False


def _valid_zone(name: str) -> bool:
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


@functools.cache
def _zones() -> frozenset[str]:
    return frozenset(zoneinfo.available_timezones())


def _urls(view: SpecView, reporter: Reporter, policy: Policy | None) -> None:
    for n, step in view.steps:
        key = {"http": "url", "llm": "base_url"}.get(str(step.get("type")))
        url = step.get(key) if key else None
        if key is None or not isinstance(url, str):
            continue
        problem, host = _url_problem(url)
        where = ("steps", n, key)
        if problem:
            reporter.add(where, f"invalid URL {url!r}: {problem}", code="invalid-url")
        elif policy is not None and policy.allowed_hosts:
            if host is None:
                reporter.add(
                    where,
                    "the host of this URL is a template, so it cannot be checked against "
                    "the allowed hosts",
                    code="policy-host",
                    hint="write the host literally; templates may follow in the path",
                )
            elif not any(fnmatch.fnmatch(host.lower(), p.lower()) for p in policy.allowed_hosts):
                reporter.add(
                    where,
                    f"host {host!r} is not allowed by the operator's policy",
                    code="policy-host",
                    hint="allowed hosts: " + ", ".join(policy.allowed_hosts),
                )


def _bodiless(view: SpecView, reporter: Reporter) -> None:
    for n, step in view.steps:
        method = str(step.get("method") or "POST").upper()
        if step.get("type") == "http" and method in ("GET", "HEAD") and "body" in step:
            if step["body"] is None:
                continue
            reporter.add(
                ("steps", n, "body"),
                f"a {method} request carries no body, so this body would never be sent",
                code="body-not-sent",
                hint="send the values as query: parameters, or use method: POST",
            )


def _url_problem(url: str) -> tuple[str | None, str | None]:
    """Check the static part of a URL; return (problem, host or None if the host is templated)."""
    if url.lstrip().startswith(("{{", "{%")):
        return None, None  # the whole base comes from a template
    static = _TEMPLATE.sub("x", url)
    if any(c.isspace() for c in static):
        return "it contains whitespace", None
    try:
        parts = urllib.parse.urlsplit(static)
        port = parts.port
    except ValueError as exc:
        return str(exc), None
    if parts.scheme not in ("http", "https"):
        return "the scheme must be http or https", None
    if not parts.hostname:
        return "it has no host", None
    del port
    host_templated = bool(_TEMPLATE.search(url.split("//", 1)[-1].split("/", 1)[0]))
    return None, None if host_templated else parts.hostname


def _policy(view: SpecView, reporter: Reporter, policy: Policy) -> None:
    defaults = view.data.get("defaults")
    defaults = defaults if isinstance(defaults, dict) else {}
    for n, step in view.steps:
        if policy.require_timeout and "timeout" not in defaults and "timeout" not in step:
            reporter.add(
                ("steps", n),
                f"step {step.get('id')!r} sets no timeout, which the operator's policy requires",
                code="policy-timeout",
                hint="set 'timeout' on the step or in the flow's 'defaults'",
            )
        if policy.require_retry and "retry" not in defaults and "retry" not in step:
            reporter.add(
                ("steps", n),
                f"step {step.get('id')!r} sets no retry policy, which the operator's policy "
                "requires",
                code="policy-retry",
                hint="set 'retry' on the step or in the flow's 'defaults'",
            )
        if not policy.shell_enabled and step.get("type") == "shell":
            reporter.add(
                ("steps", n, "type"),
                f"step {step.get('id')!r} is a shell step, and shell steps are disabled",
                code="policy-shell",
                hint="the operator enables them with LOOM_ENGINE__SHELL_ENABLED=true",
            )
