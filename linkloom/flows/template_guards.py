"""The sandbox templates render in, and the budget that bounds their work.

``LoomEnvironment`` is Jinja2's ``ImmutableSandboxedEnvironment`` tightened for workflow data:

* dict keys win over methods (``output.items`` is the key ``items`` when there is one);
* strings, lists and dicts expose only a whitelist of harmless methods; ``str.format`` is off;
* every loop iteration, call, attribute/item access, operator, filter and printed value charges
  the current ``Budget`` (operations, wall-clock deadline, characters produced);
* operators, filters and methods that could build huge values (``'a' * 10**10``, ``2 ** 10**9``,
  ``'%999999999d'``, ``range(10**9)``, ``replace``/``join`` bombs) check the size first.

The loop and output hooks are installed by rewriting the parsed tree before compilation:
``For.iter`` becomes ``iter | _loom_iter``, each printed expression ``expr | _loom_out`` and each
``a ~ b`` ``[a, b] | _loom_concat``. The hooks take the context, so Jinja never folds them at
compile time. ``a if b`` without ``else`` gets ``else none`` (printed as nothing) instead of an
undefined value that ``StrictUndefined`` would turn into an error.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import Callable, Generator, Iterable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar

import jmespath
from jinja2 import StrictUndefined, nodes
from jinja2.filters import FILTERS
from jinja2.runtime import Context, Undefined
from jinja2.sandbox import ImmutableSandboxedEnvironment
from jinja2.utils import Namespace, _PassArg, pass_context


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    """How much work one ``render`` call may do before it fails with ``TemplateError``."""

    time_limit: float = 1.0  # seconds of wall-clock time
    max_operations: int = 1_000_000  # loop iterations, calls, attribute lookups, operators
    max_string: int = 10_000_000  # characters in any one string a template builds
    max_items: int = 1_000_000  # items in any one list a template builds
    max_output: int = 20_000_000  # characters produced in total
    max_range: int = 10_000  # items in range(...)
    max_template: int = 256_000  # characters of template source
    max_int_bits: int = 4096  # size of integers built by * and **
    # Size of one built list/dict counting shared parts each time they occur (nodes plus string
    # characters): what printing or comparing it costs, e.g. for `[x, x]` doubled in a loop.
    max_expanded: int = 20_000_000


DEFAULT_LIMITS = Limits()


class BudgetExceeded(Exception):
    """A template used up its budget."""


class Budget:
    """The running totals of one render; shared by nested renders in the same context."""

    __slots__ = ("deadline", "exhausted", "keep", "limits", "operations", "produced", "sizes")

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.operations = 0
        self.produced = 0
        self.deadline = time.monotonic() + limits.time_limit
        self.exhausted: str | None = None
        # Expanded sizes of containers measured during this render, by id; ``keep`` holds the
        # containers so that no id is reused while the render runs.
        self.sizes: dict[int, int] = {}
        self.keep: list[Any] = []


_CURRENT: ContextVar[Budget | None] = ContextVar("loom_template_budget", default=None)
T = TypeVar("T")


@contextlib.contextmanager
def budget(limits: Limits) -> Iterator[Budget]:
    """Make a fresh budget current, unless a render is already running (nested renders share)."""
    current = _CURRENT.get()
    if current is not None:
        yield current
        return
    new = Budget(limits)
    token = _CURRENT.set(new)
    try:
        yield new
    finally:
        _CURRENT.reset(token)


def _limits() -> Limits:
    current = _CURRENT.get()
    return current.limits if current is not None else DEFAULT_LIMITS


def tick(cost: int = 1) -> None:
    """Charge ``cost`` operations; check the deadline every 128 operations."""
    current = _CURRENT.get()
    if current is None:
        return
    if current.exhausted:
        raise BudgetExceeded(current.exhausted)
    current.operations += cost
    if current.operations > current.limits.max_operations:
        _exhaust(current, f"the template did more than {current.limits.max_operations} operations")
    if current.operations & 127 == 0 and time.monotonic() > current.deadline:
        _exhaust(current, f"the template ran longer than {current.limits.time_limit:g}s")


def charge(value: T) -> T:
    """Count a value the template produced against the size limits; return it unchanged."""
    current = _CURRENT.get()
    limits = current.limits if current is not None else DEFAULT_LIMITS
    if isinstance(value, str):
        size = len(value)
        if size > limits.max_string:
            _fail(current, f"the template built a string longer than {limits.max_string} chars")
    elif isinstance(value, list | tuple | dict):
        size = len(value)
        if size > limits.max_items:
            _fail(current, f"the template built a list longer than {limits.max_items} items")
        expanded_size(value)
    else:
        size = 1
    if current is not None:
        current.produced += size
        if current.produced > limits.max_output:
            _exhaust(current, f"the template produced more than {limits.max_output} characters")
    return value


_CONTAINERS = (list, tuple, dict)


def expanded_size(value: Any) -> int:
    """Nodes plus string characters of ``value``, counting a shared part each time it occurs.

    Memoised per render by container identity, so measuring ``[x, x]`` after ``x`` costs two
    lookups, and a structure doubled in a loop is refused long before it could be printed.

    Raises:
        BudgetExceeded: the size passes ``Limits.max_expanded``.
    """
    if not isinstance(value, _CONTAINERS):
        return len(value) + 1 if isinstance(value, str) else 1
    current = _CURRENT.get()
    sizes: dict[int, int] = current.sizes if current is not None else {}
    keep: list[Any] = current.keep if current is not None else []
    limit = (current.limits if current is not None else DEFAULT_LIMITS).max_expanded
    if id(value) in sizes:
        return sizes[id(value)]
    stack: list[tuple[Any, bool]] = [(value, False)]
    work = 0
    while stack:
        node, children_done = stack.pop()
        if id(node) in sizes:
            continue
        parts = [*node.keys(), *node.values()] if isinstance(node, dict) else node
        work += len(parts) + 1
        if work > 65_536 and current is not None:
            work = 0
            if time.monotonic() > current.deadline:
                _exhaust(current, f"the template ran longer than {current.limits.time_limit:g}s")
        if not children_done:
            stack.append((node, True))
            stack.extend((c, False) for c in parts if isinstance(c, _CONTAINERS))
            continue
        total = 1
        for part in parts:
            if isinstance(part, str):
                total += len(part) + 1
            elif isinstance(part, _CONTAINERS):
                total += sizes.get(id(part), 1)
            else:
                total += 1
        sizes[id(node)] = total
        keep.append(node)
        if total > limit:
            _fail(current, f"the template built a value larger than {limit} (nodes + characters)")
    return sizes[id(value)]


def _exhaust(current: Budget, message: str) -> None:
    current.exhausted = message
    raise BudgetExceeded(message)


def _fail(current: Budget | None, message: str) -> None:
    if current is not None:
        _exhaust(current, message)
    raise BudgetExceeded(message)


def is_lazy_sequence(value: Any) -> bool:
    """Generators, iterators and dict views a filter may return: safe to turn into a list."""
    return isinstance(value, Iterator | type({}.keys()) | type({}.values()) | type({}.items()))


def to_text(value: Any) -> str:
    """How a printed value looks: JSON for containers, ``true``/``false``, empty for none."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list | tuple):
        return dumps(value)
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()
    return str(value)


def dumps(value: Any, indent: int | None = None) -> str:
    """Compact JSON as templates print it; non-ASCII text kept as is."""
    if indent is not None and not 0 <= indent <= 16:
        raise BudgetExceeded("tojson indent must be between 0 and 16")
    separators = None if indent is not None else (",", ":")
    return json.dumps(value, ensure_ascii=False, indent=indent, separators=separators)


# ---------------------------------------------------------------------------- size checks

_PERCENT = re.compile(r"%(?:\([^)]*\))?[#0 +\-]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")


def check_percent_format(fmt: Any) -> None:
    """Refuse ``%`` formats with huge or ``*`` widths (``'%999999999d'``)."""
    if not isinstance(fmt, str):
        return
    for m in _PERCENT.finditer(fmt):
        for part in m.groups():
            if part == "*" or (part and int(part) > 10_000):
                raise BudgetExceeded("a %-format width or precision above 10000 is not allowed")


def _check_binop(operator: str, left: Any, right: Any) -> None:
    limits = _limits()
    if operator == "*":
        seq, count = (left, right) if isinstance(right, int) else (right, left)
        if isinstance(seq, str | list | tuple) and isinstance(count, int):
            cap = limits.max_string if isinstance(seq, str) else limits.max_items
            if len(seq) * max(count, 0) > cap:
                raise BudgetExceeded(f"repeating a value would build more than {cap} items")
        elif (
            _is_int(left)
            and _is_int(right)
            and left.bit_length() + right.bit_length() > limits.max_int_bits
        ):
            raise BudgetExceeded("the product is too large a number")
    elif operator == "**":
        if _is_int(left) and _is_int(right) and abs(left) > 1 and right > 0:
            too_big = left.bit_length() * right > limits.max_int_bits
        else:
            too_big = isinstance(right, int | float) and abs(right) > limits.max_int_bits
        if too_big:
            raise BudgetExceeded("the power is too large a number")
    elif operator == "+":
        if isinstance(left, str | list | tuple) and isinstance(right, str | list | tuple):
            cap = limits.max_string if isinstance(left, str) else limits.max_items
            if len(left) + len(right) > cap:
                raise BudgetExceeded(f"the sum would be longer than {cap}")
    elif operator == "%" and isinstance(left, str):
        check_percent_format(left)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_width(width: Any) -> None:
    if isinstance(width, int) and width > _limits().max_string:
        raise BudgetExceeded("a width above the string size limit is not allowed")


def _check_replace(s: Any, old: Any, new: Any, count: Any = -1) -> None:
    if not (isinstance(s, str) and isinstance(old, str) and isinstance(new, str)):
        return
    bound = len(s) + 1 if old == "" else len(s) // len(old)
    if isinstance(count, int) and count >= 0:
        bound = min(bound, count)
    if len(s) + bound * max(0, len(new) - len(old)) > _limits().max_string:
        raise BudgetExceeded("the replacement would build too long a string")


def _check_join(sep: Any, items: Any) -> list[Any]:
    found: list[Any] = list(items)
    if isinstance(sep, str):
        total = len(sep) * max(len(found) - 1, 0)
        total += sum(len(x) for x in found if isinstance(x, str))
        if total > _limits().max_string:
            raise BudgetExceeded("the joined string would be too long")
    return found


# ---------------------------------------------------------------------------- methods

_STR_METHODS = frozenset(
    [
        "capitalize",
        "casefold",
        "center",
        "count",
        "endswith",
        "find",
        "index",
        "isalnum",
        "isalpha",
        "isdecimal",
        "isdigit",
        "islower",
        "isnumeric",
        "isspace",
        "istitle",
        "isupper",
        "join",
        "ljust",
        "lower",
        "lstrip",
        "partition",
        "removeprefix",
        "removesuffix",
        "replace",
        "rfind",
        "rindex",
        "rjust",
        "rpartition",
        "rsplit",
        "rstrip",
        "split",
        "splitlines",
        "startswith",
        "strip",
        "swapcase",
        "title",
        "upper",
        "zfill",
    ]
)
_DICT_METHODS = frozenset({"get", "items", "keys", "values"})
_SEQ_METHODS = frozenset({"count", "index"})


def _check_call(obj: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[Any, ...]:
    owner = getattr(obj, "__self__", None)
    if isinstance(owner, str):
        name = obj.__name__
        if name in ("ljust", "rjust", "center", "zfill") and args:
            _check_width(args[0])
        elif name == "replace" and len(args) >= 2:
            _check_replace(owner, *args[:3])
        elif name == "join" and args:
            return (_check_join(owner, args[0]), *args[1:])
    return args


# ---------------------------------------------------------------------------- filters


def _range(*args: int) -> range:
    rng = range(*args)
    limit = _limits().max_range
    if len(rng) > limit:
        raise BudgetExceeded(f"range() may produce at most {limit} items")
    return rng


def _counted(items: Iterable[Any]) -> Generator[Any, None, None]:
    for item in items:
        tick()
        yield charge(item) if isinstance(item, str) else item


def _ticking(items: Iterable[Any]) -> Generator[Any, None, None]:
    for item in items:
        tick()
        yield item


@pass_context
def _loom_iter(context: Context, value: Any) -> Any:
    tick()
    return _ticking(value)


@pass_context
def _loom_out(context: Context, value: Any) -> str:
    tick()
    return charge(to_text(value))


@pass_context
def _loom_build(context: Context, value: Any) -> Any:
    """A list, tuple or dict literal with computed parts: measure what it shares."""
    tick()
    return charge(value)


@pass_context
def _loom_concat(context: Context, parts: list[Any]) -> str:
    tick()
    texts = [to_text(p) for p in parts]
    if sum(len(t) for t in texts) > _limits().max_string:
        raise BudgetExceeded("the concatenated string would be too long")
    return charge("".join(texts))


def _tojson(value: Any, indent: int | None = None) -> str:
    return dumps(value, indent)


def _fromjson(value: str) -> Any:
    return json.loads(value)


def _jmespath(value: Any, expression: str) -> Any:
    return jmespath.search(expression, value)


def _guarded(func: Callable[..., Any], pre: Callable[..., None] | None = None) -> Any:
    """Wrap a filter so that it charges the budget, checks its arguments and counts its output."""
    pass_arg = _PassArg.from_obj(func)

    @pass_context
    def guarded(context: Context, *args: Any, **kwargs: Any) -> Any:
        tick()
        if pre is not None:
            pre(*args, **kwargs)
        if pass_arg is _PassArg.context:
            result = func(context, *args, **kwargs)
        elif pass_arg is _PassArg.eval_context:
            result = func(context.eval_ctx, *args, **kwargs)
        elif pass_arg is _PassArg.environment:
            result = func(context.environment, *args, **kwargs)
        else:
            result = func(*args, **kwargs)
        if isinstance(result, Iterator):
            return _counted(result)
        return charge(result)

    guarded.__name__ = getattr(func, "__name__", "filter")
    return guarded


def _pre_join(value: Any, d: str = "", attribute: Any = None) -> None:
    if attribute is None and isinstance(value, list | tuple):
        _check_join(d, value)


def _pre_replace(s: Any, old: Any, new: Any, count: Any = None) -> None:
    _check_replace(s, old, new, -1 if count is None else count)


def _pre_batch(value: Any, linecount: Any, fill_with: Any = None) -> None:
    if isinstance(linecount, int) and linecount > _limits().max_range:
        raise BudgetExceeded(f"batch size above {_limits().max_range} is not allowed")


def _pre_slice(value: Any, slices: Any, fill_with: Any = None) -> None:
    if isinstance(slices, int) and slices > _limits().max_items:
        raise BudgetExceeded("too many slices")


def _pre_format(value: Any, *args: Any, **kwargs: Any) -> None:
    check_percent_format(value)


_PLAIN_FILTERS = [
    "abs",
    "attr",
    "capitalize",
    "count",
    "d",
    "default",
    "dictsort",
    "first",
    "float",
    "groupby",
    "int",
    "items",
    "last",
    "length",
    "list",
    "lower",
    "map",
    "max",
    "min",
    "reject",
    "rejectattr",
    "reverse",
    "round",
    "select",
    "selectattr",
    "sort",
    "string",
    "sum",
    "title",
    "trim",
    "truncate",
    "unique",
    "upper",
    "urlencode",
    "wordcount",
]

_PRE_CHECKS: dict[str, Callable[..., None]] = {
    "batch": _pre_batch,
    "join": _pre_join,
    "replace": _pre_replace,
    "slice": _pre_slice,
    "format": _pre_format,
}


def _filters() -> dict[str, Any]:
    table: dict[str, Any] = {name: _guarded(FILTERS[name]) for name in _PLAIN_FILTERS}
    for name, pre in _PRE_CHECKS.items():
        table[name] = _guarded(FILTERS[name], pre)
    table["tojson"] = _guarded(_tojson)
    table["fromjson"] = _guarded(_fromjson)
    table["jmespath"] = _guarded(_jmespath)
    table["_loom_iter"] = _loom_iter
    table["_loom_out"] = _loom_out
    table["_loom_concat"] = _loom_concat
    table["_loom_build"] = _loom_build
    return table


# ---------------------------------------------------------------------------- environment


class _Namespace(Namespace):
    """``namespace()`` whose text form does not expand its attributes.

    Namespaces can nest each other without going through a measured literal, so printing their
    attributes could be exponentially large.
    """

    def __repr__(self) -> str:
        return "<namespace>"


class LoomEnvironment(ImmutableSandboxedEnvironment):
    """The sandbox every Link Loom template renders in (see the module docstring)."""

    intercepted_binops = frozenset({"+", "-", "*", "/", "//", "%", "**"})

    def __init__(self) -> None:
        super().__init__(
            undefined=StrictUndefined,
            autoescape=False,
            keep_trailing_newline=True,
            auto_reload=False,
            cache_size=0,  # compiled templates are cached by ``templates`` (an LRU keyed by text)
        )
        self.filters = _filters()
        self.globals = {"range": _range, "dict": dict, "namespace": _Namespace}

    # -- the hooks the sandbox calls from compiled code

    def getattr(self, obj: Any, attribute: str) -> Any:
        tick()
        if type(obj) is dict and attribute in obj:
            return obj[attribute]
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        tick()
        return super().getitem(obj, argument)

    def call(self, context: Context, obj: Any, /, *args: Any, **kwargs: Any) -> Any:
        tick()
        args = _check_call(obj, args, kwargs)
        result = super().call(context, obj, *args, **kwargs)
        return charge(result)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        tick()
        _check_binop(operator, left, right)
        return charge(self.binop_table[operator](left, right))

    def wrap_str_format(self, value: Any) -> None:
        """``str.format`` is not offered at all: use ``~`` or the ``format`` filter."""
        return None

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str):
            return attr in _STR_METHODS
        if isinstance(obj, dict):
            return attr in _DICT_METHODS
        if isinstance(obj, list | tuple):
            return attr in _SEQ_METHODS
        if isinstance(obj, int | float):
            return False
        return super().is_safe_attribute(obj, attr, value)

    # -- install the loop, output and concatenation hooks before code generation

    def _generate(
        self, source: nodes.Template, name: Any, filename: Any, defer_init: bool = False
    ) -> str:
        _install_hooks(source)
        source.set_environment(self)
        return super()._generate(source, name, filename, defer_init=defer_init)


def _install_hooks(tree: nodes.Node) -> None:
    for loop in tree.find_all(nodes.For):
        loop.iter = _filter_node(loop.iter, "_loom_iter")
    for out in tree.find_all(nodes.Output):
        out.nodes = [
            n if isinstance(n, nodes.TemplateData) else _filter_node(n, "_loom_out")
            for n in out.nodes
        ]
    _wrap_literals(tree)
    for cond in tree.find_all(nodes.CondExpr):
        if cond.expr2 is None:  # `a if b` without else: none, not an undefined that raises
            cond.expr2 = nodes.Const(None, lineno=cond.lineno)
    _replace_concat(tree)


def _replace_concat(node: nodes.Node) -> None:
    for field in node.fields:
        value = getattr(node, field, None)
        if isinstance(value, nodes.Concat):
            setattr(node, field, _concat_node(value))
        elif isinstance(value, list):
            setattr(
                node,
                field,
                [_concat_node(v) if isinstance(v, nodes.Concat) else v for v in value],
            )
    for child in node.iter_child_nodes():
        _replace_concat(child)


def _wrap_literals(node: nodes.Node) -> None:
    """Route list/tuple/dict literals with computed parts through ``_loom_build`` (post-order).

    Assignment targets (``{% set a, b = … %}``, ``{% for k, v in … %}``) are tuples too, in the
    ``store`` context; they are left alone.
    """
    for field in node.fields:
        value = getattr(node, field, None)
        if isinstance(value, nodes.Node):
            _wrap_literals(value)
            if _is_built_literal(value):
                setattr(node, field, _filter_node(value, "_loom_build"))
        elif isinstance(value, list):
            wrapped = []
            for item in value:
                if isinstance(item, nodes.Node):
                    _wrap_literals(item)
                    if _is_built_literal(item):
                        item = _filter_node(item, "_loom_build")
                wrapped.append(item)
            setattr(node, field, wrapped)


def _is_built_literal(node: Any) -> bool:
    if isinstance(node, nodes.Tuple) and node.ctx != "load":
        return False
    if not isinstance(node, nodes.List | nodes.Tuple | nodes.Dict):
        return False
    try:
        node.as_const()
    except Exception:  # not constant: built at run time
        return True
    return False


def _concat_node(node: nodes.Concat) -> nodes.Filter:
    parts = nodes.List(list(node.nodes), lineno=node.lineno)
    return _filter_node(parts, "_loom_concat")


def _filter_node(node: nodes.Node, name: str) -> nodes.Filter:
    return nodes.Filter(node, name, [], [], None, None, lineno=node.lineno)
