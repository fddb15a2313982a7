"""The engine's door to templating: ``render``, ``truthy`` and ``TemplateError``.

Uses ``linkloom.flows.templates`` (Jinja2 sandbox with budgets). Until that module is available
a minimal sandboxed stand-in keeps the engine usable; it is never used once the real one imports.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from linkloom.errors import InvalidInput

try:  # the real templating module (step-types engineer)
    from linkloom.flows import templates as _templates
except ImportError:  # pragma: no cover - only while templates.py is missing
    _templates = None  # type: ignore[assignment]


class _StandInTemplateError(InvalidInput):
    """Template error: {detail}"""

    code = "template_error"


TemplateError: type[Exception] = (
    _templates.TemplateError if _templates is not None else _StandInTemplateError
)

_WHOLE = re.compile(r"\A\s*\{\{(.*?)\}\}\s*\Z", re.DOTALL)


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template in ``value`` (a whole ``{{ expr }}`` keeps its JSON type).

    Raises:
        TemplateError: the template is invalid, unsafe, or names something undefined.
    """
    if _templates is not None:
        return _templates.render(value, context)
    return _stand_in_render(value, context)  # pragma: no cover


def truthy(value: Any) -> bool:
    """How ``when:`` and ``condition`` results read: "false", "0", "no", "" and empty are false."""
    if isinstance(value, str):
        return value.strip().lower() not in ("", "false", "0", "no", "off", "none", "null")
    return bool(value)


def _stand_in_render(value: Any, context: Mapping[str, Any]) -> Any:  # pragma: no cover
    from jinja2 import StrictUndefined
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=StrictUndefined)
    if isinstance(value, str):
        if "{{" not in value and "{%" not in value:
            return value
        try:
            whole = _WHOLE.match(value)
            if whole:
                return env.compile_expression(whole.group(1).strip().lstrip("."))(**context)
            return env.from_string(value).render(**context)
        except Exception as exc:
            raise _StandInTemplateError(detail=str(exc)) from None
    if isinstance(value, dict):
        return {k: _stand_in_render(v, context) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_stand_in_render(v, context) for v in value]
    return value
