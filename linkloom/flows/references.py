"""What a template refers to, as the validator needs it: fast, cached, and never raising oddly.

The template language itself lives in ``linkloom.flows.templates`` (the engine renders with
it); this module adapts it for validation. Most templates are read by the fast subset parser
in ``expressions``; everything else is parsed by Jinja in the templates' own environment
(unknown filters and tests are reported as compiling would, without its cost). Results are
cached by text, because the same templates recur across steps and specs.
"""

from __future__ import annotations

import difflib
import functools
import re
from collections.abc import Iterable

from jinja2 import TemplateSyntaxError, nodes

from linkloom.flows import expressions, templates

FAST_LIMIT = 256_000  # characters the fast reader takes (it is linear); the engine's maximum
JINJA_LIMIT = 20_000  # characters of one template Jinja parses during validation
# Jinja work per spec, in characters with each template counted as at least JINJA_MIN_COST;
# templates past the budget are not checked (a warning says so).
JINJA_BUDGET = 500_000
JINJA_MIN_COST = 200
# Where ``templates.normalize`` could drop a Go-style dot: after the block start, an operator,
# a bracket or comma, a keyword or a number (a superset: strings and text are not excluded).
_MAYBE_GO_DOT = re.compile(
    r"(?:(?:^|[^\w)\]}'\"\s])\s*|\b(?:not|and|or|in|if|else|is|elif|\d+)\s+)\.[A-Za-z_]"
)

Reference = tuple[str, ...]


class TemplateSyntax(Exception):
    """A template that does not parse; ``lineno`` is 1-based within the template, ``offset``
    (0-based, when known) the character of the template the problem is at."""

    def __init__(
        self, message: str, lineno: int = 1, *, hint: str | None = None, offset: int | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno
        self.hint = hint
        self.offset = offset


_PAIRS = (("{{", "}}"), ("{%", "%}"), ("{#", "#}"))


def unclosed(text: str) -> TemplateSyntax | None:
    """The first ``{{``, ``{%`` or ``{#`` with no closing partner, as a problem at it."""
    for opener, closer in _PAIRS:
        at = text.find(opener)
        while at != -1:
            end = text.find(closer, at + 2)
            if end == -1:
                line = text.count("\n", 0, at) + 1
                return TemplateSyntax(
                    f"{opener!r} at character {at + 1} is never closed",
                    line,
                    hint=f"add {closer!r} after the expression",
                    offset=at if line == 1 else None,
                )
            at = text.find(opener, end + 2)
    return None


def _close_name(name: str, known: Iterable[str]) -> str | None:
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.6)
    return f"did you mean {close[0]!r}?" if close else None


def is_template(text: str) -> bool:
    return templates.is_template(text)


# Words ``templates.evaluate`` reads as booleans (a unit test keeps the two in step).
TRUE_WORDS = frozenset({"true", "1", "yes", "on"})
FALSE_WORDS = frozenset({"", "false", "0", "no", "off", "none", "null"})


def constant_condition(value: object) -> bool | None:
    """The value of a ``when``/``condition``/``where`` that reads nothing: a boolean or a
    boolean word. None for a template or a bare expression (``inputs.amount > 100``)."""
    if isinstance(value, bool):
        return value
    if not isinstance(value, str) or is_template(value):
        return None
    word = value.strip().lower()
    if word in TRUE_WORDS or word in FALSE_WORDS:
        return word in TRUE_WORDS
    return None


def condition_template(text: str) -> str | None:
    """The template a ``when``/``condition``/``where`` text stands for, as
    ``templates.evaluate`` reads it: a template as it is, a bare expression inside ``{{ }}``,
    None for a boolean word."""
    if is_template(text):
        return text
    if constant_condition(text) is not None:
        return None
    return "{{ " + text + " }}"


def normalize(text: str) -> str:
    """Go-template references made Jinja: ``{{ .a.b }}`` → ``{{ a.b }}``."""
    if not _MAYBE_GO_DOT.search(text):
        return text  # nothing to drop: skip the character-by-character pass
    return templates.normalize(text)


def references(text: str) -> tuple[Reference, ...]:
    """The paths a template reads, rooted at names it does not bind itself.

    Raises:
        TemplateSyntax: the template does not parse, uses an unknown filter or test, or is too
            large or too deeply nested.
    """
    fast = fast_references(text)
    return fast if fast is not None else jinja_references(text)


@functools.lru_cache(maxsize=8192)
def fast_references(text: str) -> tuple[Reference, ...] | None:
    """The references when the fast reader handles the template (linear time), else ``None``."""
    if len(text) > FAST_LIMIT:
        return None
    return expressions.references(text)


@functools.lru_cache(maxsize=4096)
def jinja_references(text: str) -> tuple[Reference, ...]:
    """The references found by parsing the template with Jinja.

    Raises:
        TemplateSyntax: as ``references``; also for templates over ``JINJA_LIMIT`` characters,
            which Jinja cannot check in bounded time.
    """
    if len(text) > JINJA_LIMIT:
        raise TemplateSyntax(
            f"the template is {len(text):,} characters long; templates that use more than "
            f"plain {{{{ … }}}} expressions may have at most {JINJA_LIMIT:,}"
        )
    try:
        tree = expressions.ENV.parse(text)
        # What compiling would catch, without its cost: filters and tests that do not exist.
        for node in tree.find_all((nodes.Filter, nodes.Test)):
            is_filter = isinstance(node, nodes.Filter)
            known = expressions.FILTERS if is_filter else expressions.TESTS
            if node.name not in known:
                kind = "filter" if is_filter else "test"
                raise TemplateSyntax(
                    f"No {kind} named {node.name!r}.",
                    node.lineno,
                    hint=_close_name(node.name, known),
                )
        return tuple(templates.references(text))
    except TemplateSyntaxError as exc:
        raise unclosed(text) or TemplateSyntax(
            exc.message or "invalid template", exc.lineno or 1
        ) from None
    except templates.TemplateError as exc:
        detail = str(exc.fields.get("detail", exc.message))
        raise TemplateSyntax(detail, exc.fields.get("line") or 1) from None
    except (RecursionError, MemoryError):
        raise TemplateSyntax("the template is nested too deeply") from None
    except TemplateSyntax:
        raise
    except Exception as exc:  # Jinja is a third party; any failure means "not valid here"
        raise TemplateSyntax(f"the template cannot be read: {exc}") from None
