"""Hostile input ends in SpecInvalid with a clear problem, within bounded time and memory."""

from __future__ import annotations

import json
import time

import pytest

from linkloom.flows import source
from linkloom.flows.errors import SpecInvalid
from linkloom.flows.loading import check_flow, load_flow


def _codes(text: str | bytes) -> list[str]:
    with pytest.raises(SpecInvalid) as caught:
        load_flow(text, filename="hostile.yaml")
    return [p.code for p in caught.value.problems]


def test_a_5mb_file_is_rejected_by_size_before_parsing():
    text = "id: big\nsteps:\n" + "  - {id: a, type: delay, duration: 1s}\n" * 140_000
    assert len(text.encode()) > 5_000_000
    started = time.perf_counter()
    assert _codes(text) == ["too-large"]
    assert time.perf_counter() - started < 0.5


def test_the_size_limit_message_names_the_limit():
    with pytest.raises(SpecInvalid, match=f"{source.MAX_BYTES:,} bytes"):
        load_flow(b"#" * (source.MAX_BYTES + 1))


@pytest.mark.slow
@pytest.mark.parametrize("shape", ["yaml", "json"])
def test_a_10000_step_chain_loads_without_recursion_limits(shape):
    steps = [{"id": "s0", "type": "transform", "template": 1}] + [
        {
            "id": f"s{i}",
            "type": "transform",
            "depends_on": [f"s{i - 1}"],
            "template": f"{{{{ steps.s{i - 1}.output }}}}",
        }
        for i in range(1, 10_000)
    ]
    data = {"id": "chain", "steps": steps}
    if shape == "json":
        text = json.dumps(data, indent=1)
    else:
        text = "id: chain\nsteps:\n" + "".join(
            f"  - id: {s['id']}\n    type: transform\n    template: '{s['template']}'\n"
            + (f"    depends_on: [{s['depends_on'][0]}]\n" if s.get("depends_on") else "")
            for s in steps
        )
    spec = load_flow(text)
    assert len(spec.steps) == 10_000
    assert spec.steps[-1].depends_on == ["s9998"]


@pytest.mark.slow
def test_a_10000_step_cycle_is_reported_with_a_shortened_path():
    n = 10_000
    text = "id: ring\nsteps:\n" + "".join(
        f"  - {{id: s{i}, type: delay, duration: 1s, depends_on: [s{(i + 1) % n}]}}\n"
        for i in range(n)
    )
    result = check_flow(text)
    (problem,) = result.errors
    assert problem.code == "cycle"
    assert problem.message.startswith("dependency cycle: s0 → s9999 → s9998")
    assert "more …" in problem.message
    assert problem.message.endswith("→ s0")


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 10_000 + "]" * 10_000,
        "[" * 100_000,
        '{"a": ' * 10_000 + "1" + "}" * 10_000,
        "".join(" " * i + f"k{i}:\n" for i in range(200)),
    ],
    ids=["yaml-flow", "json-unclosed", "json-objects", "yaml-block"],
)
def test_deeply_nested_input_stops_at_the_depth_limit(text):
    assert _codes(text) == ["too-deep"]


def test_a_yaml_alias_bomb_stops_at_the_node_limit():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, 10):
        prev, cur = chr(96 + n), chr(97 + n)
        lines.append(f"{cur}: &{cur} [" + ",".join([f"*{prev}"] * 9) + "]")
    started = time.perf_counter()
    assert _codes("\n".join(lines)) == ["too-many-nodes"]
    assert time.perf_counter() - started < 1


def test_non_utf8_bytes_are_reported_at_their_position():
    with pytest.raises(SpecInvalid) as caught:
        load_flow(b"id: x\nname: caf\xe9\n", filename="latin1.yaml")
    (problem,) = caught.value.problems
    assert (problem.code, problem.line, problem.column) == ("encoding", 2, 10)


@pytest.mark.parametrize(
    "text",
    [
        '{"id": "x", "steps": [{"id": "a", "type": "delay", "duration": ' + "9" * 100_000 + "}]}",
        "id: x\nsteps:\n  - {id: a, type: delay, duration: " + "9" * 100_000 + "}\n",
    ],
    ids=["json", "yaml"],
)
def test_a_number_with_100000_digits_is_a_problem_not_a_crash(text):
    assert "number-too-long" in _codes(text)


@pytest.mark.parametrize(
    "text",
    [
        "id: x\nsteps: !!python/object:os.system []\n",
        "id: x\n---\nid: y\n",
        "a: *nowhere\n",
        "a: &x [*x]\n",
        "? [a, b]\n: c\n",
        "id: x\nname: '\x00'\n",
        '{"id": "\\ud800", "steps": []}',
        "\ufeff",
        "   \n\t\n",
        "{{ steps }}",
        "id: x\nsteps:\n  - id: a\n    type: transform\n    template: '"
        + "{{ (" * 400
        + "1"
        + ") }}" * 400
        + "'\n",
    ],
)
def test_odd_yaml_ends_in_spec_invalid(text):
    with pytest.raises(SpecInvalid):
        load_flow(text)


def _transforms(templates: list[str]) -> str:
    return "id: t\nsteps:\n" + "".join(
        f"  - id: s{i}\n    type: transform\n    template: {text!r}\n"
        for i, text in enumerate(templates)
    )


def test_a_huge_template_beyond_the_fast_reader_is_refused_without_parsing():
    text = _transforms(["{% if true %}x{% endif %}" * 2000])
    started = time.perf_counter()
    problems = check_flow(text).errors
    assert time.perf_counter() - started < 1
    assert [p.code for p in problems] == ["template-syntax"]
    assert "may have at most 20,000" in problems[0].message


def test_a_huge_template_of_plain_lookups_is_still_checked():
    text = _transforms(["{{ inputs.nope }} " * 10_000])
    assert [p.code for p in check_flow(text).errors] == ["unknown-input"]


@pytest.mark.slow
def test_many_distinct_jinja_templates_stop_at_the_validation_budget():
    text = _transforms([f"{{% if {i} %}}{'x' * 180}{{% endif %}}" for i in range(3000)])
    result = check_flow(text)
    codes = [p.code for p in result.problems]
    assert result.ok
    assert 0 < codes.count("template-unchecked") < 1000
