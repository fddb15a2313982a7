"""What a template refers to, found by parsing it (never by rendering it).

The validator needs three things from a template string: Go-style references normalised
(``{{ .steps.x }}`` → ``{{ steps.x }}``), syntax errors with their line, and the attribute paths
rooted at context names (``('steps', 'fetch', 'outputs', 'orders')``). Names a template binds
itself (``{% for x in … %}``, ``{% set … %}``) are not references.
"""

from __future__ import annotations

import functools
import re

from jinja2 import TemplateSyntaxError, nodes
from jinja2.sandbox import SandboxedEnvironment

_ENV = SandboxedEnvironment()
_BLOCK = re.compile(r"(\{\{-?|\{%-?)(.*?)(-?\}\}|-?%\})", re.S)
_GO_DOT = re.compile(r"(?<![\w)\]}'\"])\.(?=[A-Za-z_])")
MAX_TEMPLATE_CHARS = 100_000
# Most templates are text around plain ``{{ a.b.c }}`` lookups: read those without Jinja.
_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_SIMPLE_BLOCK = re.compile(r"\{\{-?\s*(" + _NAME + r"(?:\." + _NAME + r")*)\s*-?\}\}")
_OTHER_SYNTAX = re.compile(r"\{[{%#]")

Reference = tuple[str | int, ...]


class TemplateSyntax(Exception):
    """A template that does not parse; ``lineno`` is 1-based within the template."""

    def __init__(self, message: str, lineno: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.lineno = lineno


def is_template(text: str) -> bool:
    return "{{" in text or "{%" in text


def normalize(text: str) -> str:
    """Drop Go-template leading dots inside ``{{ }}``/``{% %}`` (``{{ .a.b }}`` → ``{{ a.b }}``)."""
    if not is_template(text):
        return text
    return _BLOCK.sub(lambda m: m.group(1) + _GO_DOT.sub("", m.group(2)) + m.group(3), text)


# Names Jinja itself provides (``range``, ``namespace``, ``loop`` …): never references.
JINJA_NAMES = frozenset(_ENV.globals) | {"loop", "self", "varargs", "kwargs", "caller"}


@functools.lru_cache(maxsize=4096)
def references(text: str) -> tuple[Reference, ...]:
    """The paths a template reads, rooted at names it does not bind itself.

    Raises:
        TemplateSyntax: the template does not parse (or is too large or too deep to parse).
    """
    if len(text) > MAX_TEMPLATE_CHARS:
        raise TemplateSyntax(f"the template is longer than {MAX_TEMPLATE_CHARS:,} characters")
    simple = _simple(text)
    if simple is not None:
        return simple
    try:
        tree = _ENV.parse(text)
    except TemplateSyntaxError as exc:
        raise TemplateSyntax(exc.message or "invalid template", exc.lineno or 1) from None
    except (RecursionError, MemoryError):
        raise TemplateSyntax("the template is nested too deeply") from None
    bound = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    found: list[Reference] = []
    stack: list[nodes.Node] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
            path, rest = _chain(node)
            if path and path[0] not in bound and path not in found:
                found.append(path)
            stack.extend(rest)
            continue
        stack.extend(node.iter_child_nodes())
    return tuple(p for p in found if p[0] not in JINJA_NAMES)


def _simple(text: str) -> tuple[Reference, ...] | None:
    """The references of a template made only of ``{{ dotted.name }}`` blocks, else ``None``."""
    paths = [tuple(m.group(1).split(".")) for m in _SIMPLE_BLOCK.finditer(text)]
    if not paths or _OTHER_SYNTAX.search(_SIMPLE_BLOCK.sub("", text)):
        return None
    return tuple(dict.fromkeys(p for p in paths if p[0] not in JINJA_NAMES))


def _chain(node: nodes.Node) -> tuple[Reference | None, list[nodes.Node]]:
    """Follow ``a.b["c"][0]`` down to its root name; return the path and nodes left to visit."""
    parts: list[str | int] = []
    rest: list[nodes.Node] = []
    while True:
        if isinstance(node, nodes.Getattr):
            parts.append(node.attr)
            node = node.node
        elif isinstance(node, nodes.Getitem):
            arg = node.arg
            if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int):
                parts.append(arg.value)
            else:
                parts.clear()  # a computed key: only the part before it is known
                rest.append(arg)
            node = node.node
        elif isinstance(node, nodes.Name):
            if node.ctx != "load":
                return None, rest
            return (node.name, *reversed(parts)), rest
        else:
            rest.append(node)
            return None, rest
