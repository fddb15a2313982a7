"""What a template refers to, as the validator needs it: fast, cached, and never raising oddly.

The template language itself lives in ``linkloom.flows.templates`` (the engine renders with
it); this module adapts it for validation. Most templates are text around plain
``{{ a.b.c }}`` lookups, which are read here without Jinja; everything else is parsed (and
compiled, so unknown filters are caught) by ``templates``. Results are cached by text, because
the same templates recur across steps and specs.
"""

from __future__ import annotations

import functools
import re

from linkloom.flows import templates

_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SIMPLE_BLOCK = re.compile(r"\{\{-?\s*(" + _NAME + r"(?:\." + _NAME + r")*)\s*-?\}\}")
_OTHER_SYNTAX = re.compile(r"\{[{%#]")
# Names Jinja itself provides, and its literals, are never references.
_JINJA_NAMES = frozenset(
    {"range", "dict", "lipsum", "cycler", "joiner", "namespace", "loop"}
    | {"true", "false", "none", "True", "False", "None"}
)

Reference = tuple[str, ...]


class TemplateSyntax(Exception):
    """A template that does not parse; ``lineno`` is 1-based within the template."""

    def __init__(self, message: str, lineno: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


def is_template(text: str) -> bool:
    return templates.is_template(text)


def normalize(text: str) -> str:
    """Go-template references made Jinja: ``{{ .a.b }}`` → ``{{ a.b }}``."""
    return templates.normalize(text)


@functools.lru_cache(maxsize=8192)
def references(text: str) -> tuple[Reference, ...]:
    """The paths a template reads, rooted at names it does not bind itself.

    Raises:
        TemplateSyntax: the template does not parse, uses an unknown filter or test, or is too
            large or too deeply nested.
    """
    simple = _simple(text)
    if simple is not None:
        return simple
    try:
        templates.parse(text)
        return tuple(templates.references(text))
    except templates.TemplateError as exc:
        detail = str(exc.fields.get("detail", exc.message))
        raise TemplateSyntax(detail, exc.fields.get("line") or 1) from None
    except (RecursionError, MemoryError):
        raise TemplateSyntax("the template is nested too deeply") from None


def _simple(text: str) -> tuple[Reference, ...] | None:
    """The references of a template made only of ``{{ dotted.name }}`` blocks, else ``None``."""
    paths = [tuple(m.group(1).split(".")) for m in _SIMPLE_BLOCK.finditer(text)]
    if not paths or _OTHER_SYNTAX.search(_SIMPLE_BLOCK.sub("", text)):
        return None
    return tuple(dict.fromkeys(p for p in paths if p[0] not in _JINJA_NAMES))
