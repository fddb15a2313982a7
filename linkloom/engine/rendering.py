"""The engine's door to templating (``linkloom.flows.templates``): ``render``, ``evaluate``
(``when:`` conditions) and ``TemplateError``. One place to adapt if templating changes."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from linkloom.flows import templates

TemplateError = templates.TemplateError


def render(value: Any, context: Mapping[str, Any]) -> Any:
    """Render every template in ``value`` (a whole ``{{ expr }}`` keeps its JSON type).

    Raises:
        TemplateError: the template is invalid, unsafe, over budget, or names something undefined.
    """
    return templates.render(value, context)


def evaluate(condition: str, context: Mapping[str, Any]) -> bool:
    """Read a ``when:`` condition (template, bare expression or boolean word) as a boolean."""
    return templates.evaluate(condition, context)


def truthy(value: Any) -> bool:
    return templates.truthy(value)
