"""Domain types of the flows package: validation problems, their result, the operator policy."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from linkloom.flows.spec import FlowSpec

Severity = Literal["error", "warning"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Problem:
    """One thing wrong with a spec, pointing at the source node the user wrote.

    ``line`` and ``column`` are 1-based; ``path`` is a JSON path into the source document
    (``$.steps[2].depends_on[0]``); ``code`` is a stable kebab-case identifier.
    """

    file: str
    line: int
    column: int
    path: str
    message: str
    hint: str | None = None
    severity: Severity = "error"  # 'error' fails validation; 'warning' does not
    code: str = "invalid"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def format(self) -> str:
        """``file:line:col: severity: message`` and, if any, the hint indented below."""
        text = f"{self.file}:{self.line}:{self.column}: {self.severity}: {self.message}"
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckResult:
    """The outcome of checking one spec: the model when it is valid, and every problem."""

    spec: FlowSpec | None
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True, slots=True, kw_only=True)
class Policy:
    """Operator rules a spec must follow on top of the schema.

    ``allowed_hosts`` holds host names or shell-style patterns (``*.example.com``); empty
    means any host.
    """

    allowed_hosts: list[str] = field(default_factory=list)
    require_timeout: bool = False  # every step (or the flow's defaults) sets a timeout
    require_retry: bool = False  # every step (or the flow's defaults) sets a retry policy
    shell_enabled: bool = True  # False makes every shell step an error
    # The server's secret names (case matters); None: unknown, references are not checked.
    secret_names: frozenset[str] | None = None
    # How a reference to a secret outside ``secret_names`` is reported: a warning where the
    # names were only looked up (``loom validate --secret``), an error where the server decides.
    unknown_secret: Literal["warning", "error"] = "warning"
