"""The fast template reader agrees with Jinja, and never accepts what Jinja rejects."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from linkloom.flows import expressions, references, templates

TOKENS = [
    "steps",
    "inputs",
    "a",
    "b",
    "x",
    "item",
    "range",
    "loop",
    "true",
    "none",
    "and",
    "or",
    "not",
    "in",
    "is",
    "if",
    "else",
    "defined",
    "length",
    "default",
    "tojson",
    "upper",
    "nosuch",
    "0",
    "12",
    "1.5",
    "2e3",
    "'s'",
    '"t"',
    "'\\''",
    ".",
    "[",
    "]",
    "(",
    ")",
    ",",
    "|",
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "~",
    "==",
    "!=",
    "<",
    ">=",
    "=",
    ":",
    "{",
    "}",
    "'open",
]


def _jinja(text: str) -> set[tuple[str, ...]] | None:
    try:
        templates.parse(text)
    except Exception:  # TemplateError, or whatever Jinja's constant folding raises
        return None
    return set(templates.references(text))


@pytest.mark.parametrize(
    ("text", "refs"),
    [
        ("{{ steps.fetch.outputs.orders }}", {("steps", "fetch", "outputs", "orders")}),
        (
            "n={{ inputs.limit * 3 }} {{ steps.a.output | tojson }}",
            {("inputs", "limit"), ("steps", "a", "output")},
        ),
        ("{{ (steps.s1.output.total | default(0)) + 4 }}", {("steps", "s1", "output", "total")}),
        ("{{ steps['a'].outputs[0] }}", {("steps", "a", "outputs", "0")}),
        ("{{ steps[inputs.k].output }}", {("steps",), ("inputs", "k")}),
        ("{{ x.items() if x is defined else [] }}", {("x", "items"), ("x",)}),
        ("{{ a not in [b, 1] and not c }}", {("a",), ("b",), ("c",)}),
        ("{{- range(3) | list -}}", set()),
    ],
)
def test_fast_reader_finds_the_same_references_as_jinja(text, refs):
    fast = expressions.references(text)
    assert fast is not None
    assert set(fast) == refs == _jinja(text)


@pytest.mark.parametrize(
    "text",
    [
        "{{ }}",
        "{{ a + }}",
        "{{ a | nosuch }}",
        "{{ a is nosuch }}",
        "{{ a b }}",
        "{% if a %}x{% endif %}",
        "{{ a }} {# c #}",
        "{{ f(x=1) }}",
        "{{ {'a': 1} }}",
        "{{ a[1:2] }}",
        "{{ 'x' 'y' }}",
        "no template",
    ],
)
def test_fast_reader_refuses_what_it_does_not_handle(text):
    assert expressions.references(text) is None


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), min_size=1, max_size=9), st.sampled_from(["", "x "]))
def test_fast_reader_never_accepts_what_jinja_rejects(tokens, prefix):
    text = prefix + "{{ " + " ".join(tokens) + " }}"
    fast = expressions.references(text)
    if fast is not None:
        jinja = _jinja(text)
        assert jinja is not None, f"accepted {text!r}, which Jinja rejects"
        assert set(fast) == jinja


ATOMS = [
    "a",
    "steps.x.output",
    "inputs['k']",
    "b[0]",
    "1",
    "2.5",
    "'s'",
    "true",
    "none",
    "range(2)",
    "x.y(z)",
    "[a, b]",
    "(a)",
    "a[b]",
    "loop.index",
]
BINARY = [
    "+",
    "-",
    "*",
    "/",
    "//",
    "%",
    "**",
    "~",
    "==",
    "!=",
    "<",
    ">=",
    "and",
    "or",
    "in",
    "not in",
]
POSTFIX = [
    "| length",
    "| default(0)",
    "| tojson",
    "is defined",
    "is not none",
    "| nosuch",
    ".attr",
    "[1]",
    "()",
    "is divisibleby(2)",
    "is divisibleby 2",
]
expressions_st = st.recursive(
    st.sampled_from(ATOMS),
    lambda inner: st.one_of(
        st.tuples(inner, st.sampled_from(BINARY), inner).map(" ".join),
        inner.map("not {}".format),
        st.tuples(inner, inner, inner).map(lambda t: f"{t[0]} if {t[1]} else {t[2]}"),
        inner.map("({})".format),
        inner.map("-{}".format),
        st.tuples(inner, st.sampled_from(POSTFIX)).map(" ".join),
    ),
    max_leaves=8,
)


@pytest.mark.slow
@settings(max_examples=400, deadline=None)
@given(expressions_st, st.data())
def test_fast_reader_agrees_with_jinja_on_generated_expressions(expression, data):
    words = expression.split()
    if words and data.draw(st.booleans()):  # sometimes break it
        del words[data.draw(st.integers(0, len(words) - 1))]
    text = "{{ " + " ".join(words) + " }}"
    fast = expressions.references(text)
    if fast is not None:
        assert _jinja(text) == set(fast), text


PIECES = [
    "{{",
    "}}",
    "{%",
    "%}",
    " ",
    ".",
    "a",
    "b",
    "1",
    "(",
    ")",
    "[",
    "]",
    ",",
    "'",
    '"',
    "not",
    "and",
    "in",
    "|",
    "+",
    "_",
    "\n",
    "x.y",
    "\\",
]


@pytest.mark.slow
@settings(max_examples=500, deadline=None)
@given(st.lists(st.sampled_from(PIECES), max_size=14).map("".join))
def test_normalize_shortcut_gives_what_templates_normalize_gives(text):
    assert references.normalize(text) == templates.normalize(text)
