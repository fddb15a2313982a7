"""Templates: type-preserving rendering, Go-style references, references, and hostile input."""

from __future__ import annotations

import time

import pytest

from linkloom.flows import templates
from linkloom.flows.templates import Limits, TemplateError


def make_context(**overrides):
    ctx = {
        "inputs": {"x": 3, "name": "Bob", "flag": True},
        "steps": {
            "fetch": {
                "status": "SUCCEEDED",
                "output": {"items": [1, 2, 3], "data": {"a": 1}, "total": 2.5},
                "outputs": {"orders": [{"id": 1, "paid": True}, {"id": 2, "paid": False}]},
            }
        },
        "run": {"id": "r1", "flow": "f", "version": 1},
        "secrets": {"TOKEN": "s3cret"},
    }
    ctx.update(overrides)
    return ctx


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.fetch.output.items }}", [1, 2, 3]),
        ("{{ steps.fetch.output.data }}", {"a": 1}),
        ("{{ steps.fetch.output.total }}", 2.5),
        ("{{ inputs.x }}", 3),
        ("{{ inputs.flag }}", True),
        ("{{ none }}", None),
        ("  {{ inputs.x + 1 }}\n", 4),
        ("{{ steps.fetch.outputs.orders | map(attribute='id') | list }}", [1, 2]),
        ("{{ steps.fetch.outputs.orders | selectattr('paid') | map(attribute='id') }}", [1]),
        ("{{ range(3) }}", [0, 1, 2]),
        ("{{ (1, 'a') }}", [1, "a"]),
        ("{{ {'k': inputs.name} }}", {"k": "Bob"}),
        ("{{ steps.fetch.output | jmespath('items[-1]') }}", 3),
        ("{{ '{\"a\": [1]}' | fromjson }}", {"a": [1]}),
    ],
)
def test_render_whole_expression_keeps_json_type(template, expected):
    assert templates.render(template, make_context()) == expected


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("Hello {{ inputs.name }}!", "Hello Bob!"),
        ("n={{ inputs.x }}", "n=3"),
        ("{{ inputs.x }}{{ inputs.x }}", "33"),
        ("d={{ steps.fetch.output.data }}", 'd={"a":1}'),
        ("b={{ inputs.flag }} n={{ none }}", "b=true n="),
        ("{% for o in steps.fetch.outputs.orders %}{{ o.id }};{% endfor %}", "1;2;"),
        ("{{ steps.fetch.output | tojson }}", '{"items":[1,2,3],"data":{"a":1},"total":2.5}'),
        ("{{ inputs.name ~ '-' ~ inputs.x }}", "Bob-3"),
        ("{% if inputs.x > 2 %}big{% else %}small{% endif %}", "big"),
        ("{{ 'Ünïcode' | upper }}", "ÜNÏCODE"),
    ],
)
def test_render_mixed_text_is_a_string(template, expected):
    assert templates.render(template, make_context()) == expected


def test_render_walks_dicts_and_lists_and_passes_other_values_through():
    value = {
        "a": ["{{ inputs.x }}", "x", 5, None, True],
        "{{ inputs.name }}": {"deep": "{{ steps.fetch.output.items[0] }}"},
        "n": 1.5,
    }
    assert templates.render(value, make_context()) == {
        "a": [3, "x", 5, None, True],
        "Bob": {"deep": 1},
        "n": 1.5,
    }


def test_render_prefers_dict_keys_over_methods():
    ctx = make_context(inputs={"d": {"items": [9], "keys": "k"}})
    assert templates.render("{{ inputs.d.items }}", ctx) == [9]
    assert templates.render("{{ inputs.d.keys }}", ctx) == "k"


def test_render_reads_secrets_from_a_mapping():
    assert templates.render("Bearer {{ secrets.TOKEN }}", make_context()) == "Bearer s3cret"


def test_render_fan_out_item_and_index():
    ctx = make_context(item={"id": 7}, index=2)
    assert templates.render("{{ item.id * 10 + index }}", ctx) == 72


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ .steps.fetch.output.items }}", [1, 2, 3]),
        ("{{ .response.body.data }}", {"x": 1}),
        ("{{ .inputs.x | default(.inputs.y) }}", 3),
        ("{% if not .inputs.flag %}no{% else %}yes{% endif %}", "yes"),
        ("{{ .inputs.x + .inputs.x }}", 6),
    ],
)
def test_render_accepts_go_template_dots(template, expected):
    ctx = make_context(response={"body": {"data": {"x": 1}}})
    assert templates.render(template, ctx) == expected


def test_normalize_keeps_attribute_dots_string_literals_and_numbers():
    text = "{{ a.b }} {{ f().c }} {{ x[0].y }} {{ 'keep .this' }} {{ .5 }} {{ .top }}"
    assert templates.normalize(text) == (
        "{{ a.b }} {{ f().c }} {{ x[0].y }} {{ 'keep .this' }} {{ .5 }} {{ top }}"
    )
    assert templates.normalize("no template .here") == "no template .here"


def test_references_lists_context_paths_in_order():
    text = (
        "{{ .steps.fetch.outputs.orders | length }} {{ inputs['x'] }}"
        "{% for o in steps.a.output.rows %}{{ o.id }}{{ loop.index }}{% endfor %}"
        "{% set tmp = 1 %}{{ tmp }}{{ range(2) }}{{ steps[inputs.k].output }}"
        "{{ inputs.x }}"
    )
    assert templates.references(text) == [
        ("steps", "fetch", "outputs", "orders"),
        ("inputs", "x"),
        ("steps", "a", "output", "rows"),
        ("steps",),
        ("inputs", "k"),
    ]


def test_references_of_plain_text_is_empty():
    assert templates.references("just text") == []


def test_parse_reports_the_line_of_a_syntax_error():
    with pytest.raises(TemplateError) as info:
        templates.parse("line one\nline two\n{% for %}")
    assert info.value.line == 3
    assert "line 3" in str(info.value)


def test_render_undefined_name_fails_with_line():
    with pytest.raises(TemplateError) as info:
        templates.render("a\n{{ inputs.nope.deeper }}", make_context())
    assert "nope" in str(info.value)
    assert info.value.line == 2


@pytest.mark.parametrize(
    "template",
    ["{{ inputs.nope }}", "{{ [inputs.nope] }}", "x {{ missing }}", "{{ secrets.NOPE }}"],
)
def test_render_undefined_values_fail(template):
    with pytest.raises(TemplateError):
        templates.render(template, make_context())


def test_is_template():
    assert templates.is_template("{{ a }}")
    assert templates.is_template("x {% if a %}{% endif %}")
    assert not templates.is_template("plain")
    assert not templates.is_template(5)


HOSTILE = [
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ inputs.x.__class__.__bases__ }}",
    "{{ self.__init__.__globals__ }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ dict.mro() }}",
    "{{ range.__globals__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ lipsum(10**9) }}",
    "{{ cycler.__init__ }}",
    "{% include 'etc/passwd' %}",
    "{{ range(10**9) }}",
    "{{ range(1000000000) | list | length }}",
    "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
    "{% set l = range(10000) | list %}{% for a in l %}{% for b in l %}{% for c in l %}"
    "{% endfor %}{% endfor %}{% endfor %}",
    "{{ 'a' * 10**10 }}",
    "{{ [1] * 10**10 }}",
    "{{ 9 ** 99999999 }}",
    "{{ 1.5 ** 1000000 }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s ~ ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}"
    "{% endfor %}{{ ns.s }}",
    "{{ '%999999999d' % 1 }}",
    "{{ '%*d' | format(999999999, 1) }}",
    "{{ 'a'.ljust(999999999) }}",
    "{{ ('a' * 1000000).replace('', 'bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb') }}",
    "{{ [1, 2] | slice(10**9) | list }}",
    "{% set s = 'a' * 2000000 %}{{ [s, s, s, s, s, s, s, s, s, s, s] | join }}",
    "{% set s = 'a' * 1000000 %}{% for i in range(10000) %}{{ s }}{% endfor %}",
    "{% set s = 'a' * 1000000 %}{% set b %}{% for i in range(10000) %}{{ s }}{% endfor %}"
    "{% endset %}{{ b | length }}",
    "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
    "{% macro f(n) %}{% if n %}{{ f(n-1) }}{{ f(n-1) }}{% endif %}{% endmacro %}{{ f(60) }}",
    "{{ " + "(" * 500 + "1" + ")" * 500 + " }}",
    "{{ inputs.__class__ }}",
    "{{ [].append(1) }}",
    # Structures that share their parts grow exponentially when printed or compared.
    "{% set ns = namespace(l=[]) %}{% for i in range(60) %}{% set ns.l = [ns.l, ns.l] %}"
    "{% endfor %}{{ ns.l }}",
    "{% set ns = namespace(a=[], b=[]) %}{% for i in range(60) %}{% set ns.a = [ns.a, ns.a] %}"
    "{% set ns.b = [ns.b, ns.b] %}{% endfor %}{{ ns.a == ns.b }}",
    "{% set ns = namespace(l=[]) %}{% for i in range(60) %}{% set ns.l = ns.l + [ns.l] %}"
    "{% endfor %}{{ ns.l | string }}",
    "{% set ns = namespace(d={}) %}{% for i in range(60) %}{% set ns.d = {'a': ns.d, 'b': ns.d} %}"
    "{% endfor %}{{ ns.d | tojson }}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}{% set ns.l = [ns.l] * 10000 %}"
    "{% endfor %}{{ ns.l == ns.l }}",
    "{% set ns = namespace(l=[1]) %}{% for i in range(60) %}"
    "{% set ns.l = [ns.l] | batch(10000, fill_with=ns.l) | list %}{% endfor %}{{ ns.l }}",
    "{{ [1] | batch(10**9, fill_with=1) | list }}",
]


@pytest.mark.parametrize("template", HOSTILE)
def test_render_hostile_template_fails_fast(template):
    started = time.monotonic()
    with pytest.raises(TemplateError):
        templates.render(template, make_context())
    assert time.monotonic() - started < 2.0


def test_render_limits_are_configurable():
    tight = Limits(max_operations=100)
    with pytest.raises(TemplateError, match="operations"):
        templates.render("{% for i in range(1000) %}{% endfor %}", {}, limits=tight)
    assert templates.render("{% for i in range(10) %}{% endfor %}ok", {}, limits=tight) == "ok"


def test_render_time_limit_stops_a_busy_template():
    slow = Limits(time_limit=0.05, max_operations=10**9)
    started = time.monotonic()
    with pytest.raises(TemplateError, match="longer than"):
        templates.render(
            "{% for a in range(10000) %}{% for b in range(10000) %}{% endfor %}{% endfor %}",
            {},
            limits=slow,
        )
    assert time.monotonic() - started < 1.0


def test_render_legit_large_data_passes():
    rows = [{"id": i, "name": f"n{i}"} for i in range(20000)]
    ctx = make_context(steps={"a": {"output": rows}})
    assert templates.render("{{ steps.a.output }}", ctx) is rows
    ids = templates.render("{{ steps.a.output | map(attribute='id') | list }}", ctx)
    assert ids[-1] == 19999
    assert len(templates.render("{{ steps.a.output | tojson }}", ctx)) > 300_000


def test_template_error_is_invalid_input():
    from linkloom.errors import InvalidInput

    with pytest.raises(InvalidInput):
        templates.render("{{ 1/0 }}", {})


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        (
            "{% for x in items %}{{ loop.index }}/{{ loop.length }}{{ '!' if loop.last }} "
            "{% endfor %}",
            "1/3 2/3 3/3! ",
        ),
        ("{% for x in items if x > 1 %}{{ x }}{% endfor %}", "23"),
        ("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}", "a=1;b=2;"),
        ("{% for x in [] %}x{% else %}empty{% endfor %}", "empty"),
        ("{% for x in tree recursive %}{{ x.n }}({{ loop(x.c) }}){% endfor %}", "a(b())"),
        (
            "{% set t = namespace(v=0) %}{% for x in items %}{% set t.v = t.v + x %}{% endfor %}"
            "{{ t.v }}",
            "6",
        ),
        ("{% macro greet(n) %}hi {{ n }}{% endmacro %}{{ greet('x') }}", "hi x"),
        ("{{ '%05.1f' % 3.14159 }} {{ '%s-%s' | format(1, 2) }}", "003.1 1-2"),
        ("{{ items | map('string') | join('-') }}", "1-2-3"),
        ("{% raw %}{{ kept }}{% endraw %}", "{{ kept }}"),
        ("{{ 7 // 2 }} {{ 7 % 3 }} {{ 2 ** 10 }} {{ 7 / 2 }}", "3 1 1024 3.5"),
    ],
)
def test_render_common_jinja_features_still_work(template, expected):
    ctx = {
        "items": [1, 2, 3],
        "d": {"a": 1, "b": 2},
        "tree": [{"n": "a", "c": [{"n": "b", "c": []}]}],
    }
    assert templates.render(template, ctx) == expected


def test_render_inline_if_without_else_is_none():
    assert templates.render("{{ 1 if false }}", {}) is None
    assert templates.render("[{{ 1 if false }}]", {}) == "[]"


@pytest.mark.parametrize(
    "template", ["{{ x | center(5) }}", "a {{ x | random }}", "{{ x is nosuchtest }}"]
)
def test_parse_rejects_unknown_filters_and_tests(template):
    with pytest.raises(TemplateError, match=r"No (filter|test) named"):
        templates.parse(template)


def test_render_nested_namespaces_print_without_expanding():
    template = (
        "{% set ns = namespace(n=1) %}{% for i in range(60) %}"
        "{% set ns.n = namespace(a=ns.n, b=ns.n) %}{% endfor %}{{ ns.n }}"
    )
    assert templates.render(template, {}) == "<namespace>"


def test_render_assignment_tuples_and_literals_with_context_values():
    template = (
        "{% set a, b = 1, 2 %}{{ a + b }}"
        "{% for k, v in {'x': inputs.x}.items() %}{{ k }}{{ v }}{% endfor %}"
    )
    assert templates.render(template, make_context()) == "3x3"
    assert templates.render("{{ [inputs.x, [inputs.name]] }}", make_context()) == [3, ["Bob"]]


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ steps.fetch.output.items[0] }}", 1),
        ("{{ steps.fetch.output['data'] }}", {"a": 1}),
        ("id={{ run.id }} v={{ run.version }}\n", "id=r1 v=1\n"),
        ("x {{- inputs.name -}} y", "xBoby"),
        ("{{ inputs.flag }}/{{ none }}/{{ steps.fetch.output.data }}", 'true//{"a":1}'),
    ],
)
def test_render_plain_lookups_match_jinja_semantics(template, expected):
    """Plain lookups take a shortcut around Jinja; the results must be the same."""
    assert templates.render(template, make_context()) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{{ inputs.x > 2 }}", True),
        ("inputs.x > 5", False),
        ("inputs.flag and inputs.name == 'Bob'", True),
        ("yes", True),
        (" False ", False),
        ("off", False),
        ("{{ 'no' }}", False),
        ("{{ steps.fetch.outputs.orders }}", True),
        ("{{ [] }}", False),
        ("not .inputs.flag", False),
    ],
)
def test_evaluate_reads_templates_bare_expressions_and_words(text, expected):
    assert templates.evaluate(text, make_context()) is expected


def test_evaluate_undefined_name_is_an_error():
    with pytest.raises(TemplateError):
        templates.evaluate("inputs.nope > 1", make_context())
