"""An example Link Loom step-type plugin: ``type: hash`` digests a rendered value.

    - id: fingerprint
      type: hash
      algorithm: sha256          # sha256 | sha1 | md5 | blake2b
      value: "{{ steps.fetch.output }}"

The output is ``{"algorithm", "hexdigest", "bytes"}``. Objects and lists are hashed as canonical
JSON (sorted keys), so equal data always gives the same digest.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any, ClassVar, Literal

from linkloom.engine import rendering
from linkloom.engine.models import StepError, StepResult
from linkloom.engine.ports import StepContext
from linkloom.flows.spec import StepBase

__version__ = "0.1.0"


class HashStep(StepBase):
    """Digest a rendered value (text, or canonical JSON for other values)."""

    type: Literal["hash"]
    algorithm: Literal["sha256", "sha1", "md5", "blake2b"] = "sha256"
    value: Any = None


class HashExecutor:
    """Runs ``hash`` steps: pure computation, no I/O."""

    type_name: ClassVar[str] = "hash"
    config_model: ClassVar[type[StepBase]] = HashStep

    async def execute(self, ctx: StepContext) -> StepResult:
        step: Any = ctx.step
        try:
            value = rendering.render(step.value, ctx.template_context())
        except rendering.TemplateError as exc:
            return StepResult(
                error=StepError(kind="template", message=f"value: {exc}", retryable=False)
            )
        if isinstance(value, bytes):
            data = value
        elif isinstance(value, str):
            data = value.encode()
        else:
            data = json.dumps(value, sort_keys=True, separators=(",", ":")).encode()
        digest = hashlib.new(step.algorithm, data).hexdigest()
        ctx.log(f"{step.algorithm} of {len(data)} bytes")
        return StepResult(
            output={"algorithm": step.algorithm, "hexdigest": digest, "bytes": len(data)}
        )
