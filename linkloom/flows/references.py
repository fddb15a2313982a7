"""What a template refers to, as the validator needs it: fast, cached, and never raising oddly.

The template language itself lives in ``linkloom.flows.templates`` (the engine renders with
it); this module adapts it for validation. Most templates are read by the fast subset parser
in ``expressions``; everything else is parsed (and compiled, so unknown filters are caught) by
``templates``. Results are cached by text, because the same templates recur across steps and
specs.
"""

from __future__ import annotations

import functools
import re

from linkloom.flows import expressions, templates

_FAST_LIMIT = 20_000  # characters; longer templates always go to Jinja
# Where ``templates.normalize`` could drop a Go-style dot: after the block start, an operator,
# a bracket or comma, a keyword or a number (a superset: strings and text are not excluded).
_MAYBE_GO_DOT = re.compile(
    r"(?:(?:^|[^\w)\]}'\"\s])\s*|\b(?:not|and|or|in|if|else|is|elif|\d+)\s+)\.[A-Za-z_]"
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
    if not _MAYBE_GO_DOT.search(text):
        return text  # nothing to drop: skip the character-by-character pass
    return templates.normalize(text)


@functools.lru_cache(maxsize=8192)
def references(text: str) -> tuple[Reference, ...]:
    """The paths a template reads, rooted at names it does not bind itself.

    Raises:
        TemplateSyntax: the template does not parse, uses an unknown filter or test, or is too
            large or too deeply nested.
    """
    if len(text) <= _FAST_LIMIT:
        fast = expressions.references(text)
        if fast is not None:
            return fast
    try:
        templates.parse(text)
        return tuple(templates.references(text))
    except templates.TemplateError as exc:
        detail = str(exc.fields.get("detail", exc.message))
        raise TemplateSyntax(detail, exc.fields.get("line") or 1) from None
    except (RecursionError, MemoryError):
        raise TemplateSyntax("the template is nested too deeply") from None
    except Exception as exc:  # Jinja's compiler folds constants and can fail in odd ways
        raise TemplateSyntax(f"the template cannot be compiled: {exc}") from None
