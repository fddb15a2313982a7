"""Sandboxed Jinja2 templates: the only way values flow between steps.

A spec value containing ``{{ … }}`` or ``{% … %}`` is a template. ``render`` renders every
string inside a JSON structure; a string that is exactly one ``{{ expr }}`` keeps the JSON type of
the expression (a list stays a list), anything else renders to text. Go-template style references
(``{{ .steps.fetch.output }}``) are accepted: ``normalize`` drops the leading dots.

Templates cannot run Python: rendering uses Jinja2's ``ImmutableSandboxedEnvironment`` with
``StrictUndefined``, a curated filter set and no loaders. Hostile templates end in
``TemplateError`` within bounded time and memory: every loop iteration, call, attribute access and
operator charges a per-render budget (operations, wall-clock time, characters produced), and
operators, filters and string methods that could build huge values check their size first
(``guards`` in ``linkloom.flows.template_guards``). Rendering never logs values.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from types import TracebackType
from typing import Any

from jinja2 import TemplateSyntaxError, nodes
from jinja2.exceptions import TemplateError as JinjaTemplateError
from jinja2.parser import Parser
from jinja2.runtime import Undefined

from linkloom.errors import InvalidInput
from linkloom.flows import taint
from linkloom.flows import template_guards as guards

Limits = guards.Limits
DEFAULT_LIMITS = guards.DEFAULT_LIMITS

__all__ = [
    "DEFAULT_LIMITS",
    "Limits",
    "TemplateError",
    "evaluate",
    "is_template",
    "normalize",
    "parse",
    "references",
    "render",
    "truthy",
]


class TemplateError(InvalidInput):
    """Template error{where}: {detail}"""

    code = "template_error"

    def __init__(self, detail: str, *, line: int | None = None) -> None:
        where = f" at line {line}" if line else ""
        super().__init__(detail=detail, line=line, where=where)


# ---------------------------------------------------------------------------- normalisation

_BLOCK = re.compile(r"(\{\{-?|\{%-?)(.*?)(-?\}\}|-?%\})", re.DOTALL)
_KEYWORDS_BEFORE_VALUE = frozenset({"not", "and", "or", "in", "if", "else", "is", "elif"})


@lru_cache(maxsize=8192)
def normalize(text: str) -> str:
    """Accept Go-template style references by dropping the dot that starts a path.

    ``{{ .steps.a.output }}`` becomes ``{{ steps.a.output }}``; dots after an operator, an opening
    bracket, a comma or a keyword (``not .x``, ``a and .b``) are dropped too. Dots inside string
    literals and attribute dots (``a.b``, ``f().x``) are kept.
    """
    if "." not in text or ("{{" not in text and "{%" not in text):
        return text
    return _BLOCK.sub(lambda m: m.group(1) + _drop_leading_dots(m.group(2)) + m.group(3), text)


def _drop_leading_dots(inner: str) -> str:
    out: list[str] = []
    quote: str | None = None
    i = 0
    while i < len(inner):
        ch = inner[i]
        if quote:
            out.append(ch)
            if ch == "\\" and i + 1 < len(inner):
                out.append(inner[i + 1])
                i += 1
            elif ch == quote:
                quote = None
        elif ch in "'\"":
            quote = ch
            out.append(ch)
        elif ch == "." and i + 1 < len(inner) and (inner[i + 1].isalpha() or inner[i + 1] == "_"):
            if not _continues_value("".join(out)):
                i += 1
                continue
            out.append(ch)
        else:
            out.append(ch)
        i += 1
    return "".join(out)


def _continues_value(before: str) -> bool:
    """True when a dot after ``before`` is an attribute access (``a.b``, ``f().b``, ``x[0].b``)."""
    stripped = before.rstrip()
    if not stripped:
        return False
    last = stripped[-1]
    if last in ")]}'\"":
        return True
    if not (last.isalnum() or last == "_"):
        return False
    word = re.search(r"[A-Za-z0-9_]+$", stripped)
    if word and word.group(0) in _KEYWORDS_BEFORE_VALUE and len(stripped) < len(before):
        return False
    return not (word and word.group(0).isdigit() and len(stripped) < len(before))


def is_template(value: Any) -> bool:
    """True when ``value`` is a string that contains template syntax."""
    return isinstance(value, str) and ("{{" in value or "{%" in value or "{#" in value)


# ---------------------------------------------------------------------------- parsing

_ENV = guards.LoomEnvironment()


def parse(text: str) -> nodes.Template:
    """Parse a template (after ``normalize``), check it compiles, and return its syntax tree.

    Compiling catches unknown filters and tests (``{{ x | center }}``) before a run does.

    Raises:
        TemplateError: the template is too long, not valid Jinja2, or uses a filter or test
            that does not exist; ``line`` says where.
    """
    tree = _parse(_checked_source(text))
    _compiled(text)
    return tree


def _parse(source: str) -> nodes.Template:
    try:
        return _ENV.parse(source)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or str(exc), line=exc.lineno) from None
    except RecursionError:
        raise TemplateError("the template is nested too deeply") from None


def references(text: str) -> list[tuple[str, ...]]:
    """The context paths a template reads, in order of first appearance, without duplicates.

    ``"{{ steps.fetch.outputs.orders | length }} {{ inputs['x'] }}"`` gives
    ``[('steps', 'fetch', 'outputs', 'orders'), ('inputs', 'x')]``. A path stops at the first
    computed subscript (``steps[name]`` gives ``('steps',)``). Names the template defines itself
    (``{% set %}``, loop variables, macro arguments) and the globals (``range``, ``dict``,
    ``namespace``) are not references.

    Raises:
        TemplateError: the template does not parse.
    """
    if not is_template(text):
        return []
    tree = _parse(_checked_source(text))
    declared = {n.name for n in tree.find_all(nodes.Name) if n.ctx in ("store", "param")}
    declared.update(n.name for n in tree.find_all(nodes.Macro))
    skip = declared | set(_ENV.globals) | {"loop", "caller", "varargs", "kwargs", "self"}
    found: dict[tuple[str, ...], None] = {}
    _collect(tree, found, skip)
    return list(found)


def _collect(node: nodes.Node, found: dict[tuple[str, ...], None], skip: set[str]) -> None:
    if isinstance(node, nodes.Getattr | nodes.Getitem | nodes.Name):
        path, rest = _path(node)
        if path is not None:
            if path[0] not in skip:
                found.setdefault(path, None)
            for child in rest:
                _collect(child, found, skip)
            return
    for child in node.iter_child_nodes():
        _collect(child, found, skip)


def _path(node: nodes.Node) -> tuple[tuple[str, ...] | None, list[nodes.Node]]:
    """The static path of an attribute/item chain, and the sub-expressions left to visit.

    Once a computed subscript stops the chain (``rest`` is not empty), later links are ignored.
    """
    if isinstance(node, nodes.Name):
        return ((node.name,), []) if node.ctx == "load" else (None, [])
    if isinstance(node, nodes.Getattr):
        base, rest = _path(node.node)
        if base is None:
            return None, [node.node]
        return (base, rest) if rest else ((*base, node.attr), rest)
    if isinstance(node, nodes.Getitem):
        base, rest = _path(node.node)
        if base is None:
            return None, [node.node, node.arg]
        arg = node.arg
        if isinstance(arg, nodes.Const) and isinstance(arg.value, str | int) and not rest:
            return (*base, str(arg.value)), rest
        return base, [*rest, node.arg]
    return None, [node]


# ---------------------------------------------------------------------------- rendering

_FALSE_WORDS = frozenset({"", "false", "0", "no", "off", "none", "null"})
_TRUE_WORDS = frozenset({"true", "1", "yes", "on"})


def truthy(value: Any) -> bool:
    """How a condition's value reads: the strings "false", "0", "no", "off", "none", "null"
    and "" are false (any case, surrounding spaces ignored); other values as in Python."""
    if isinstance(value, str):
        return value.strip().lower() not in _FALSE_WORDS
    return bool(value)


def evaluate(text: str, context: Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS) -> bool:
    """Read a ``when:``/``condition:``/``where:`` value as a boolean.

    ``text`` is a template (``{{ inputs.n > 3 }}``), a bare expression (``inputs.n > 3``) or a
    boolean word (``true``, ``no``, …).

    Raises:
        TemplateError: as ``render``.
    """
    if not is_template(text):
        word = text.strip().lower()
        if word in _FALSE_WORDS or word in _TRUE_WORDS:
            return word in _TRUE_WORDS
        text = "{{ " + text + " }}"
    return truthy(render(text, context, limits=limits))


def render(value: Any, context: Mapping[str, Any], *, limits: Limits = DEFAULT_LIMITS) -> Any:
    """Render every template inside ``value``; non-template values pass through unchanged.

    Dicts and lists are rendered recursively (string keys too). A string that is exactly one
    ``{{ expr }}`` (surrounding whitespace allowed) evaluates to the expression's JSON value;
    other templates render to text, with dicts and lists printed as JSON, booleans as
    ``true``/``false`` and ``none`` as the empty string. One budget covers the whole call.

    Raises:
        TemplateError: a syntax error, an undefined name, a blocked (unsafe) operation, or a
            template that exceeded ``limits`` (time, operations, size).
    """
    if isinstance(value, str):
        if not is_template(value):
            return value
        compiled = _compiled(value)
        if compiled.reads_secrets:
            pass  # the secrets view is no plain dict: the fast paths cannot read it
        elif compiled.lookup is not None:  # the hot path: "{{ steps.a.output }}"
            found = _fast_lookup(compiled.lookup, context)
            if found is not _MISS:
                return found
        elif compiled.pieces is not None:  # "Report for {{ inputs.day }}"
            text = _fast_text(compiled.pieces, context)
            if text is not None:
                return text
    scope = {**_ENV.globals, **context}
    with guards.budget(limits):
        try:
            return _render_value(value, scope)
        except TemplateError:
            raise
        except guards.BudgetExceeded as exc:
            raise TemplateError(str(exc), line=_template_line(exc.__traceback__)) from None
        except RecursionError:
            raise TemplateError("the template recursed too deeply") from None
        except JinjaTemplateError as exc:
            line = getattr(exc, "lineno", None) or _template_line(exc.__traceback__)
            raise TemplateError(exc.message or str(exc), line=line) from None
        except Exception as exc:  # any failure of user-controlled code is a template error
            detail = f"{type(exc).__name__}: {exc}"
            raise TemplateError(detail, line=_template_line(exc.__traceback__)) from None


def _render_value(value: Any, scope: dict[str, Any]) -> Any:
    if isinstance(value, str):
        return _render_string(value, scope) if is_template(value) else value
    if isinstance(value, dict):
        return {
            (_render_string(k, scope) if is_template(k) else k): _render_value(v, scope)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [_render_value(v, scope) for v in value]
    return value


def _render_string(text: str, scope: dict[str, Any]) -> Any:
    compiled = _compiled(text)
    if compiled.reads_secrets:  # whatever a template makes of a secret is masked when stored
        return taint.mark(_evaluate(compiled, scope))
    return _evaluate(compiled, scope)


def _evaluate(compiled: _Compiled, scope: dict[str, Any]) -> Any:
    if compiled.lookup is not None:
        found = _fast_lookup(compiled.lookup, scope)
        if found is not _MISS:
            return found
    # ``shared=True`` uses ``scope`` (globals already merged in) without copying it.
    ctx = compiled.template.new_context(scope, shared=True)
    if not compiled.whole:
        return "".join(compiled.template.root_render_func(ctx))
    for _ in compiled.template.root_render_func(ctx):
        pass
    result = ctx.vars["result"]
    if compiled.pure_path and type(result) in _JSON_SCALARS_AND_CONTAINERS:
        return result
    return _to_json(result)


_JSON_SCALARS_AND_CONTAINERS = frozenset({dict, list, str, int, float, bool, type(None)})
_MISS = object()


def _fast_text(pieces: tuple[str | _Lookup, ...], scope: Mapping[str, Any]) -> str | None:
    out: list[str] = []
    for piece in pieces:
        if isinstance(piece, str):
            out.append(piece)
            continue
        value = _fast_lookup(piece, scope)
        if value is _MISS:
            return None
        out.append(guards.to_text(value))
    return "".join(out)


def _fast_lookup(lookup: _Lookup, scope: Mapping[str, Any]) -> Any:
    """``steps.a.output.items[0]`` over plain JSON data, without Jinja (the hot path).

    Gives up (``_MISS``) on anything unusual — a missing key, a non-dict mapping, a non-JSON
    value — and the caller then evaluates through the sandbox, which raises the proper errors.
    """
    root, keys = lookup
    value = scope.get(root, _MISS)
    for key in keys:
        kind = type(value)
        if kind is dict:
            value = value.get(key, _MISS)
        elif kind is list and type(key) is int and -len(value) <= key < len(value):
            value = value[key]
        else:
            return _MISS
        if value is _MISS:
            return _MISS
    guards.tick(len(keys) + 1)
    return value if type(value) in _JSON_SCALARS_AND_CONTAINERS else _MISS


def _to_json(value: Any) -> Any:
    """Turn an expression's value into JSON data (tuples, ranges, generators become lists)."""
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {k: _to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | range) or guards.is_lazy_sequence(value):
        guards.tick()
        return [_to_json(v) for v in value]
    raise TemplateError(
        f"the value is a {type(value).__name__!r}, not JSON data; "
        "select a field, or convert it with a filter such as '| list' or '| string'"
    )


_Lookup = tuple[str, tuple[str | int, ...]]


@dataclass(frozen=True, slots=True)
class _Compiled:
    template: Any  # jinja2.Template
    whole: bool  # the text is one ``{{ expr }}``: the result keeps its JSON type
    pure_path: bool  # a plain name/attribute/item chain: its value comes straight from the context
    # For a pure path: the root name and the keys after it, for a lookup without Jinja.
    lookup: _Lookup | None = None
    # For text made of literal pieces and pure paths only: the pieces, rendered without Jinja.
    pieces: tuple[str | _Lookup, ...] | None = None
    reads_secrets: bool = False  # the template loads the name ``secrets``: its result is marked


_WHOLE = re.compile(r"\A\s*\{\{[-+]?(.*?)[-+]?\}\}\s*\Z", re.DOTALL)


@lru_cache(maxsize=4096)
def _compiled(text: str) -> _Compiled:
    source = _checked_source(text)
    whole = _WHOLE.match(source)
    if whole and not any(t in whole.group(1) for t in ("{{", "}}", "{%", "{#")):
        return _compile_expression(whole.group(1))
    tree = _parse(source)
    pieces = _text_pieces(tree)  # before compiling: compiling rewrites the tree
    secret = _reads_secrets(tree)
    try:
        template = _ENV.from_string(tree)
    except TemplateSyntaxError as exc:  # unknown filters and tests are found when compiling
        raise TemplateError(exc.message or str(exc), line=exc.lineno) from None
    return _Compiled(
        template=template, whole=False, pure_path=False, pieces=pieces, reads_secrets=secret
    )


def _reads_secrets(node: nodes.Node) -> bool:
    return any(n.name == "secrets" and n.ctx == "load" for n in node.find_all(nodes.Name)) or (
        isinstance(node, nodes.Name) and node.name == "secrets"
    )


def _text_pieces(tree: nodes.Template) -> tuple[str | _Lookup, ...] | None:
    """Text with only plain ``{{ a.b.c }}`` lookups in it, as literal pieces and lookups."""
    if len(tree.body) != 1 or not isinstance(tree.body[0], nodes.Output):
        return None
    pieces: list[str | _Lookup] = []
    for node in tree.body[0].nodes:
        if isinstance(node, nodes.TemplateData):
            pieces.append(node.data)
            continue
        lookup = _lookup_keys(node)
        if lookup is None:
            return None
        pieces.append(lookup)
    return tuple(pieces)


def _compile_expression(expression: str) -> _Compiled:
    try:
        parser = Parser(_ENV, expression, state="variable")
        expr = parser.parse_expression()
        if not parser.stream.eos:
            raise TemplateSyntaxError(
                "unexpected text after the expression", parser.stream.current.lineno, None, None
            )
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or str(exc), line=exc.lineno) from None
    except RecursionError:
        raise TemplateError("the expression is nested too deeply") from None
    path, rest = _path(expr)
    secret = _reads_secrets(expr)
    body = [nodes.Assign(nodes.Name("result", "store"), expr, lineno=1)]
    tree = nodes.Template(body, lineno=1)
    tree.set_environment(_ENV)
    try:
        template = _ENV.from_string(tree)
    except TemplateSyntaxError as exc:
        raise TemplateError(exc.message or str(exc), line=exc.lineno) from None
    pure = path is not None and not rest
    return _Compiled(
        template=template,
        whole=True,
        pure_path=pure,
        lookup=_lookup_keys(expr) if pure else None,
        reads_secrets=secret,
    )


def _lookup_keys(node: nodes.Node) -> _Lookup | None:
    keys: list[str | int] = []
    while not isinstance(node, nodes.Name):
        if isinstance(node, nodes.Getattr):
            keys.append(node.attr)
        elif isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
            if type(node.arg.value) not in (str, int):
                return None
            keys.append(node.arg.value)
        else:
            return None
        node = node.node
    if node.name in _ENV.globals:
        return None
    return node.name, tuple(reversed(keys))


def _checked_source(text: str) -> str:
    limit = DEFAULT_LIMITS.max_template
    if len(text) > limit:
        raise TemplateError(f"the template is longer than {limit} characters")
    return normalize(text)


def _template_line(tb: TracebackType | None) -> int | None:
    """The template line of the innermost frame that runs compiled template code, if any."""
    line = None
    while tb is not None:
        template = tb.tb_frame.f_globals.get("__jinja_template__")
        if template is not None:
            with contextlib.suppress(Exception):  # debug info is best effort
                line = int(template.get_corresponding_lineno(tb.tb_lineno))
        tb = tb.tb_next
    return line
