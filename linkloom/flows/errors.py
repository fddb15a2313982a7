"""Errors the flows package raises.

InvalidInput
└── SpecInvalid        a flow spec failed to load or validate; ``problems`` lists them all
"""

from __future__ import annotations

from typing import Any

from linkloom.errors import InvalidInput


class SpecInvalid(InvalidInput):
    """Flow spec {filename} is invalid: {summary}; run 'loom validate {filename}' for details."""

    code = "spec_invalid"

    def __init__(self, message: str | None = None, /, **fields: Any) -> None:
        problems = list(fields.get("problems", []))
        errors = [p for p in problems if p.severity == "error"] or problems
        fields.setdefault("filename", errors[0].file if errors else "<spec>")
        if errors:
            first = errors[0]
            more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
            fields.setdefault("summary", f"{first.line}:{first.column}: {first.message}{more}")
        else:
            fields.setdefault("summary", "no details")
        super().__init__(message, **fields)
        self.problems = problems

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "message": self.message,
            "problems": [p.to_dict() for p in self.problems],
        }
